"""Timelines an editing application opens: the picture, its sound and the dry music takes, the ducking as keys.

One function, :func:`build_timeline`, gathers a scored clip's timeline once, as a small frozen
:class:`Timeline` in whole frames: its rate and length, the picture (or none, for a voice-over), the
original sound, the music takes, the volume keys and the markers. One small writer per format turns
it into its file (:func:`render_timeline` picks it):

- ``otio``: OpenTimelineIO's JSON (the optional extra ``scoretrack[timeline]``), for DaVinci Resolve;
- ``fcp7``: Final Cut Pro 7 XML ("xmeml") written as Premiere Pro writes it, for Premiere and Resolve;
- ``fcpxml``: FCPXML for Final Cut Pro, valid against Apple's DTD of the version it declares;
- ``kdenlive``: a Kdenlive project (MLT XML in Kdenlive's document structure), which MLT's ``melt`` renders.

The XML formats need nothing beyond the standard library. The facts live in ``timelines/facts.py``, each
writer in ``timelines/<kind>.py``: one module per format, since each holds its application's own conventions
(and the tests that prove them).
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from ..errors import BadParameterError, ScoretrackError
from ..media import atomic_output
from .facts import (
    AUDIO_ONLY_RATE,
    Marker,
    Picture,
    Sound,
    Take,
    Timeline,
    build_timeline,
    check_rate,
    envelope_keyframes,
    frame_count,
    frame_fit,
    source_rate,
    timecode_frame,
    timecode_text,
    timeline_rate,
)

__all__ = ["AUDIO_ONLY_RATE", "INSTALL_HINT", "TIMELINE_KINDS", "Marker", "Picture", "Sound", "Take", "Timeline",
           "build_timeline", "check_rate", "check_timeline_support", "envelope_keyframes", "frame_count", "frame_fit",
           "render_timeline", "source_rate", "timecode_frame", "timecode_text", "timeline_rate", "write_timeline"]

TIMELINE_KINDS = {"otio": ".otio", "fcp7": ".xml", "fcpxml": ".fcpxml", "kdenlive": ".kdenlive"}
INSTALL_HINT = "pip install 'scoretrack[timeline]'"


def check_timeline_support(kinds) -> None:
    """Raise before any model work when a timeline kind is unknown or cannot be written here.

    Parameters
    ----------
    kinds : iterable of {"otio", "fcp7", "fcpxml", "kdenlive"}
        The timelines asked for; none is fine.

    Raises
    ------
    BadParameterError
        An unknown kind.
    ScoretrackError
        ``"otio"`` is asked for and OpenTimelineIO is not installed (the message gives the pip command).
    """
    kinds = list(kinds)
    for kind in kinds:
        if kind not in TIMELINE_KINDS:
            raise BadParameterError(f"timeline kind {kind!r} must be one of {', '.join(TIMELINE_KINDS)}")
    if "otio" in kinds:
        try:
            import opentimelineio  # noqa: F401
        except ImportError as error:
            raise ScoretrackError(f"--timeline otio needs OpenTimelineIO: {INSTALL_HINT}") from error


def render_timeline(timeline: Timeline, kind: str) -> bytes:
    """The file's bytes for one timeline kind, by the writer module ``timelines.<kind>``."""
    check_timeline_support([kind])
    return importlib.import_module(f".{kind}", __name__).render(timeline)


def write_timeline(path: str | os.PathLike, timeline: Timeline, *, kind: str, overwrite: bool = False) -> Path:
    """Write one timeline file, through a temporary name renamed into place.

    Parameters
    ----------
    path : str or PathLike
        The file: ``.otio``, ``.xml`` (fcp7), ``.fcpxml`` or ``.kdenlive``, as ``kind`` says.
    timeline : Timeline
        From :func:`build_timeline`.
    kind : {"otio", "fcp7", "fcpxml", "kdenlive"}
    overwrite : bool
        Replace an existing ``path``.

    Raises
    ------
    BadParameterError
        An unknown kind, or an extension that is not the kind's.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    ScoretrackError
        ``kind="otio"`` without OpenTimelineIO (the message gives the pip command).
    """
    check_timeline_support([kind])
    path = Path(path)
    if path.suffix.lower() != TIMELINE_KINDS[kind]:
        raise BadParameterError(f"{path}: a {kind} timeline is written to a {TIMELINE_KINDS[kind]} file")
    document = render_timeline(timeline, kind)
    with atomic_output(path, overwrite=overwrite) as temp:
        temp.write_bytes(document)
    return path
