"""Timelines an editing application opens: the picture, its sound and the dry music with the ducking as keyframes.

Two files, both written through OpenTimelineIO (the optional extra ``scoretrack[timeline]``):

- ``.otio`` (OpenTimelineIO's own JSON), which DaVinci Resolve imports;
- ``.xml`` (Final Cut Pro 7 XML, "xmeml", by the ``fcp_xml`` adapter of ``otio-fcp-adapter``), which
  Premiere Pro and DaVinci Resolve import.

The music's volume follows the ducking envelope as an FCP 7 "Audio Levels" filter whose ``level``
parameter holds keyframes of linear gain (1 = 0 dB, 3.98109 = +12 dB, 0 = silence), placed on whole
frames. The adapter turns a clip's ``metadata["fcp_xml"]`` into the children of its ``<clipitem>``
(and reads them back the same way), so the filter travels there in both files.
"""

from __future__ import annotations

import math
import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from .errors import BadParameterError, ScoretrackError, UnreadableMediaError
from .media import atomic_output, check_input_file, open_input

TIMELINE_KINDS = {"otio": ("otio_json", ".otio"), "fcp7": ("fcp_xml", ".xml")}
INSTALL_HINT = "pip install 'scoretrack[timeline]'"
CHECK_STEP_S = 0.01  # the envelope is checked (and, without a frame rate, keyed) every 10 ms
FLOOR_DB = -96.0  # quieter gains are keyed at -96 dB: silence in every editor
LEVEL_MAX_GAIN = 3.98109  # +12 dB, the top of FCP 7's Audio Levels "level" parameter
NTSC_BASES = (24, 30, 60)  # FCP 7 XML writes other rates only as whole frames per second


def check_timeline_support(kinds) -> None:
    """Raise :class:`ScoretrackError` naming the pip command when a timeline kind cannot be written.

    Call it before any model work, so a missing extra fails at once.

    Parameters
    ----------
    kinds : iterable of {"otio", "fcp7"}
        The timelines asked for; none is fine.

    Raises
    ------
    BadParameterError
        An unknown kind.
    ScoretrackError
        OpenTimelineIO, or the FCP 7 XML adapter for ``"fcp7"``, is not installed.
    """
    kinds = list(kinds)
    for kind in kinds:
        if kind not in TIMELINE_KINDS:
            raise BadParameterError(f"timeline kind {kind!r} must be one of {', '.join(TIMELINE_KINDS)}")
    if not kinds:
        return
    try:
        import opentimelineio as otio
    except ImportError as error:
        raise ScoretrackError(f"writing a timeline needs OpenTimelineIO: {INSTALL_HINT}") from error
    names = otio.adapters.available_adapter_names()
    missing = [kind for kind in kinds if TIMELINE_KINDS[kind][0] not in names]
    if missing:
        raise ScoretrackError(f"--timeline {missing[0]} needs the FCP 7 XML adapter (otio-fcp-adapter): {INSTALL_HINT}")


def timeline_rate(frame_rate: float) -> Fraction:
    """The editing rate for a video's average frame rate.

    The nearest of the whole rates and the NTSC rates 24000/1001, 30000/1001 and 60000/1001: FCP 7 XML
    can express no other (a ``timebase`` integer and an ``ntsc`` flag). A variable-rate video
    (10.505 fps on average) gets the nearest whole rate (11); editors conform such footage anyway.

    Raises
    ------
    BadParameterError
        ``frame_rate`` is not a positive finite number.
    """
    if not (math.isfinite(frame_rate) and frame_rate > 0):
        raise BadParameterError(f"frame_rate={frame_rate} must be a positive number of frames per second")
    candidates = [Fraction(max(1, round(frame_rate)))]
    candidates += [Fraction(base * 1000, 1001) for base in NTSC_BASES]
    return min(candidates, key=lambda rate: abs(float(rate) - frame_rate))


def frame_count(duration_s: float, rate: Fraction) -> int:
    """Whole frames in ``duration_s`` at ``rate``: the nearest, halves rounded up."""
    return int(math.floor(duration_s * rate + 0.5))


def envelope_keyframes(
    gain: np.ndarray, *, sample_rate: int, tolerance_db: float = 0.5, frame_rate: float | None = None
) -> list[tuple[float, float]]:
    """Keyframes, in dB, only where the ducking envelope bends.

    Editors draw straight lines between volume keyframes, in dB or in linear gain (the value FCP 7
    XML stores); which one each uses is not documented, so the keys keep *both* lines within
    ``tolerance_db`` of the envelope at every 10 ms. A greedy fit: from each key, the next is the
    farthest point that keeps every checked point before it inside the band. A flat envelope gives
    two keys.

    With ``frame_rate``, keys fall on whole frames of :func:`timeline_rate` (editors hold them there)
    and hold the envelope's value at their frame. No key on frames can follow a bend sharper than the
    frame grid (a corner of a 12 dB, 100 ms attack at 24 fps): there, and only there, the lines miss
    the envelope by as much as lines through its value at every frame do, for less than a frame
    (about slope x frame / 4, up to 1.3 dB in that example). Everywhere else the tolerance holds.

    Parameters
    ----------
    gain : np.ndarray
        Linear gain per sample, shape ``(samples,)``, >= 0 (``mix.duck_envelope``'s result).
    sample_rate : int
        Rate of ``gain`` in Hz, > 0.
    tolerance_db : float
        Largest departure from the envelope, in dB, > 0.
    frame_rate : float, optional
        The video's frame rate; keys on its frames. None: keys on the 10 ms checking grid.

    Returns
    -------
    list of (time_s, gain_db)
        Increasing times from 0 to the envelope's last sample (with ``frame_rate``, its nearest frame);
        gains floored at -96 dB.

    Raises
    ------
    BadParameterError
        An empty, multi-dimensional, negative or non-finite ``gain``, or a bad rate or tolerance.
    """
    gain = np.asarray(gain)
    if gain.ndim != 1 or gain.size == 0:
        raise BadParameterError(f"gain of shape {gain.shape} must be one value per sample, shape (samples,)")
    if not np.all(np.isfinite(gain)) or np.any(gain < 0):
        raise BadParameterError("gain must be finite and >= 0 (a linear gain per sample)")
    if sample_rate <= 0:
        raise BadParameterError(f"sample_rate={sample_rate} must be a positive number of Hz")
    if not tolerance_db > 0:
        raise BadParameterError(f"tolerance_db={tolerance_db} must be > 0 dB")
    times, level_db = _checked_envelope(gain, sample_rate)
    if frame_rate is None:
        grid, reference = times, level_db
    else:
        rate = timeline_rate(frame_rate)
        grid = np.arange(frame_count(times[-1], rate) + 1) / float(rate)
        reference = np.interp(grid, times, level_db)
    allowance = np.maximum(tolerance_db, _interpolation_error(times, level_db, grid, reference))
    keys = _greedy_keys(times, level_db, allowance, grid, reference)
    return [(float(grid[j]), float(reference[j])) for j in keys]


def _checked_envelope(gain: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Times (every 10 ms, plus the last sample) and the envelope there in dB, floored at -96 dB."""
    last = (gain.size - 1) / sample_rate
    times = np.arange(0.0, last, CHECK_STEP_S)
    times = np.append(times, last) if times.size == 0 or times[-1] < last else times
    values = gain[np.minimum(np.round(times * sample_rate).astype(np.int64), gain.size - 1)].astype(np.float64)
    return times, _to_db(values)


def _interpolation_error(times, level_db, grid, reference) -> np.ndarray:
    """At each checked point, how far straight lines through ``reference`` at ``grid`` stray, in dB and in gain."""
    in_db = np.interp(times, grid, reference)
    in_gain = _to_db(np.interp(times, grid, 10 ** (reference / 20)))
    return np.maximum(np.abs(in_db - level_db), np.abs(in_gain - level_db))


def _to_db(gain):
    return np.maximum(20 * np.log10(np.maximum(gain, 1e-12)), FLOOR_DB)


def _greedy_keys(times, level_db, allowance, grid, reference) -> list[int]:
    """Indices into ``grid`` of the keys: from each key, the farthest grid point whose straight line
    (in dB and in gain) keeps every checked point within its allowance.

    Keys lie on ``reference``, which meets every allowance itself, so the next grid point is always
    reachable and the fit never fails."""
    lower, upper = level_db - allowance, level_db + allowance
    lower_gain, upper_gain = 10 ** (lower / 20), 10 ** (upper / 20)
    keys = [0]
    point = 1  # next checked point after the current key
    while keys[-1] < grid.size - 1:
        key = keys[-1]
        start_t, start_db = grid[key], reference[key]
        start_gain = 10 ** (start_db / 20)
        # slopes from the key that keep each checked point so far inside its band, in dB/s and gain/s
        slope_lo = gain_lo = -np.inf
        slope_hi = gain_hi = np.inf
        best, k = key + 1, point
        for j in range(key + 1, grid.size):
            while k < times.size and times[k] <= grid[j] + 1e-9:
                if times[k] > start_t + 1e-9:
                    span = times[k] - start_t
                    slope_lo = max(slope_lo, (lower[k] - start_db) / span)
                    slope_hi = min(slope_hi, (upper[k] - start_db) / span)
                    gain_lo = max(gain_lo, (lower_gain[k] - start_gain) / span)
                    gain_hi = min(gain_hi, (upper_gain[k] - start_gain) / span)
                k += 1
            if slope_lo > slope_hi + 1e-12 or gain_lo > gain_hi + 1e-12:
                break  # the band has closed: no later grid point can be reached either
            span = grid[j] - start_t
            slope = (reference[j] - start_db) / span
            gain_slope = (10 ** (reference[j] / 20) - start_gain) / span
            if slope_lo - 1e-9 <= slope <= slope_hi + 1e-9 and gain_lo - 1e-12 <= gain_slope <= gain_hi + 1e-12:
                best = j
        keys.append(best)
        point = int(np.searchsorted(times, grid[best] + 1e-9))
    return keys


def write_timeline(
    path: str | os.PathLike,
    *,
    kind: str,
    video: str | os.PathLike,
    duration_s: float,
    frame_rate: float,
    music_stem: str | os.PathLike,
    keyframes: list[tuple[float, float]],
    markers: list[tuple[float, str]],
    original_audio: bool = True,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a timeline: the video's picture, its sound, and the dry music whose volume follows ``keyframes``.

    Tracks: one video track with ``video`` and, when ``original_audio``, an audio track with the same
    file's sound; then an audio track with ``music_stem`` carrying an FCP 7 "Audio Levels" filter whose
    ``level`` keyframes hold the linear gain of each key, in ``metadata["fcp_xml"]`` (the ``.otio``
    holds the same, plus ``metadata["scoretrack"]["volume_keyframes"]`` in seconds and dB). Every clip
    starts at the timeline's frame 0 and lasts the video's duration rounded to whole frames
    (:func:`frame_count`) at :func:`timeline_rate`; the video's source times start at its own start
    timecode when it has one. Keys and markers are rounded to the nearest frame. Media are referenced
    by absolute ``file://`` URL, so the timeline opens wherever those files stay.

    Parameters
    ----------
    path : str or PathLike
        The file to write: ``.otio`` for ``kind="otio"``, ``.xml`` for ``kind="fcp7"``.
    kind : {"otio", "fcp7"}
        OpenTimelineIO JSON, or Final Cut Pro 7 XML (for Premiere Pro and DaVinci Resolve).
    video : str or PathLike
        The original video.
    duration_s : float
        The video's duration in seconds, > 0 (``media.probe(video).duration_s``).
    frame_rate : float
        The video's average frame rate (``media.probe(video).video.frame_rate``).
    music_stem : str or PathLike
        The dry (un-ducked) music, an audio file (WAV, FLAC) as long as the video.
    keyframes : list of (time_s, gain_db)
        Music volume, from :func:`envelope_keyframes` (with ``frame_rate``); at least one.
    markers : list of (time_s, name)
        Timeline markers (window seams, ...), each within ``[0, duration_s]``.
    original_audio : bool
        Include the audio track with the video's own sound.
    name : str, optional
        Timeline (sequence) name; defaults to the video's file name without extension.
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``, written through a temporary file and renamed.

    Raises
    ------
    BadParameterError
        A bad kind, extension, duration, rate, keyframe or marker.
    UnreadableMediaError
        ``video`` or ``music_stem`` is missing or empty, or ``music_stem`` has no audio.
    OutputExistsError
        ``path`` exists and ``overwrite`` is false.
    ScoretrackError
        OpenTimelineIO or its FCP 7 XML adapter is not installed (the message gives the pip command).
    """
    check_timeline_support([kind])
    import opentimelineio as otio

    adapter, suffix = TIMELINE_KINDS[kind]
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise BadParameterError(f"{path}: a {kind} timeline is written to a {suffix} file")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise BadParameterError(f"duration_s={duration_s} must be a positive number of seconds")
    video, music_stem = check_input_file(video).resolve(), check_input_file(music_stem).resolve()
    rate = timeline_rate(frame_rate)
    frames = frame_count(duration_s, rate)
    volume = _frame_keys(keyframes, rate, frames)
    seams = [(_frame_of(time_s, rate, frames, what="marker"), label) for time_s, label in markers]
    timeline = _build_timeline(otio, video=video, timecode=_start_timecode(otio, video, rate), music_stem=music_stem,
                               stem_channels=_channel_count(music_stem), rate=rate, frames=frames, volume=volume,
                               seams=seams, original_audio=original_audio, name=name or video.stem)
    with atomic_output(path, overwrite=overwrite) as temp:
        otio.adapters.write_to_file(timeline, str(temp), adapter_name=adapter)
    return path


def _start_timecode(otio, video: Path, rate: Fraction) -> tuple[int, bool]:
    """The frame number of the video's start timecode and whether it is drop-frame; (0, False) without one.

    Cameras and QuickTime tag it on the video or timecode (``tmcd``) stream, MXF on the container.
    Editors match media by it, so the clips' source times start there."""
    with open_input(video) as container:
        tags = [stream.metadata for stream in container.streams if stream.type in ("video", "data")]
        tags.append(container.metadata)
    timecode = next((tag["timecode"] for tag in tags if "timecode" in tag), None)
    if timecode is None:
        return 0, False
    try:
        return int(otio.opentime.from_timecode(timecode, float(rate)).value), ";" in timecode
    except ValueError:
        return 0, False  # a timecode that does not fit the rate is ignored, as editors do


def _channel_count(audio_file: Path) -> int:
    """Channels of the first audio stream of a file."""
    with open_input(audio_file) as container:
        if not container.streams.audio:
            raise UnreadableMediaError(f"{audio_file}: has no audio stream (the music stem must be audio)")
        return container.streams.audio[0].codec_context.channels


def _build_timeline(otio, *, video: Path, timecode: tuple[int, bool], music_stem: Path, stem_channels: int,
                    rate: Fraction, frames: int, volume, seams, original_audio: bool, name: str):
    """The OpenTimelineIO timeline: every clip from timeline frame 0 for ``frames`` frames, markers on the stack.

    The video's clips start at its timecode in source time; the FCP 7 XML then says ``in`` 0 and
    names the timecode in the file's ``<timecode>``."""

    def at(frame: int):
        return otio.opentime.RationalTime(frame, float(rate))

    def track(label: str, kind, media: Path, metadata=None, start: int = 0, file_metadata=None):
        extent = otio.opentime.TimeRange(at(start), at(frames))
        reference = otio.schema.ExternalReference(target_url=media.as_uri(), available_range=extent)
        reference.name = media.name
        if file_metadata:
            reference.metadata["fcp_xml"] = file_metadata
        clip = otio.schema.Clip(name=media.name, media_reference=reference, source_range=extent,
                                metadata=metadata or {})
        return otio.schema.Track(name=label, kind=kind, children=[clip])

    Video, Audio = otio.schema.TrackKind.Video, otio.schema.TrackKind.Audio
    source_audio = {"sourcetrack": {"mediatype": "audio", "trackindex": "1"}}
    music_metadata = {
        "fcp_xml": {**source_audio, "filter": _audio_levels_filter(volume)},
        "scoretrack": {"volume_keyframes": [{"time_s": float(frame / rate), "gain_db": gain_db}
                                            for frame, gain_db in volume]},
    }
    timeline = otio.schema.Timeline(name=name, global_start_time=at(0))
    start, drop_frame = timecode
    video_file = {"timecode": {"displayformat": "DF"}} if drop_frame else None
    # the adapter guesses a file's media from its extension and would call a .flac stem video
    stem_file = {"media": {"audio": {"channelcount": str(stem_channels)}}}
    timeline.tracks.append(track("Picture", Video, video, start=start, file_metadata=video_file))
    if original_audio:
        timeline.tracks.append(track("Original sound", Audio, video, {"fcp_xml": source_audio}, start, video_file))
    timeline.tracks.append(track("Music (dry, ducking as keyframes)", Audio, music_stem, music_metadata,
                                 file_metadata=stem_file))
    for frame, label in seams:
        marked = otio.opentime.TimeRange(at(frame), at(0))
        timeline.tracks.markers.append(otio.schema.Marker(name=label, marked_range=marked))
    return timeline


def _frame_of(time_s: float, rate: Fraction, frames: int, *, what: str) -> int:
    """The nearest frame to ``time_s``, which must lie on the timeline (half a frame of slack at the end)."""
    frame = frame_count(time_s, rate)
    if not (math.isfinite(time_s) and time_s >= 0 and frame <= frames):
        raise BadParameterError(f"{what} at {time_s} s lies outside the timeline [0, {float(frames / rate):.3f}] s")
    return frame


def _frame_keys(keyframes, rate: Fraction, frames: int) -> list[tuple[int, float]]:
    """Keys on whole frames, one per frame (the last given wins), in time order."""
    if not keyframes:
        raise BadParameterError("keyframes is empty: give at least one (time_s, gain_db) pair")
    keys: dict[int, float] = {}
    for time_s, gain_db in keyframes:
        if not math.isfinite(gain_db):
            raise BadParameterError(f"keyframe gain {gain_db} dB at {time_s} s must be finite")
        keys[_frame_of(time_s, rate, frames, what="keyframe")] = float(gain_db)
    return sorted(keys.items())


def _audio_levels_filter(volume: list[tuple[int, float]]) -> dict:
    """FCP 7's "Audio Levels" filter, as the adapter's ``metadata["fcp_xml"]`` dictionary for a ``<filter>``.

    Its ``level`` parameter holds linear gain from 0 to 3.98109 (+12 dB); ``when`` counts frames from
    the clip's first (the clip starts at the media's first frame, so media and clip frames agree)."""

    def level(gain_db: float) -> str:
        return f"{min(10 ** (gain_db / 20), LEVEL_MAX_GAIN):.6g}"

    return {
        "effect": {
            "name": "Audio Levels",
            "effectid": "audiolevels",
            "effectcategory": "audiolevels",
            "effecttype": "audiolevels",
            "mediatype": "audio",
            "parameter": {
                "parameterid": "level",
                "name": "Level",
                "valuemin": "0",
                "valuemax": f"{LEVEL_MAX_GAIN}",
                "value": level(volume[0][1]),
                "keyframe": [{"when": str(frame), "value": level(gain_db)} for frame, gain_db in volume],
            },
        }
    }
