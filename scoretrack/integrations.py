"""scoretrack for scripts built on moviepy: give a clip a generated soundtrack.

moviepy is used only at this edge; scoretrack's own I/O is PyAV (see README, "Why PyAV").
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .pipeline import ScoreOptions, Scorer


def with_soundtrack(clip, scorer: Scorer, *, style: str | None = None, options: ScoreOptions | None = None):
    """Return a copy of a moviepy ``VideoClip`` whose audio is scored by ``scorer``.

    The clip is rendered once to a temporary file (moviepy cannot hand frames to PyAV directly),
    scored, and the scored soundtrack is attached to the original clip object's copy, so the
    picture in the script's later edits is the script's own.
    """
    from moviepy import AudioFileClip

    options = options or ScoreOptions()
    if style is not None:
        from dataclasses import replace

        options = replace(options, style=style)
    folder = Path(tempfile.mkdtemp(prefix="scoretrack-moviepy-"))
    source = folder / "clip.mp4"
    clip.write_videofile(str(source), codec="libx264", audio_codec="aac", logger=None)
    result = scorer.score(source, output=folder / "clip.scored.mp4", options=options, stems=True)
    return clip.with_audio(AudioFileClip(str(result.stems)))
