"""scoretrack for scripts built on moviepy: give a clip a generated soundtrack, as moviepy users expect.

Only the clip's audio is read (in blocks small enough to avoid moviepy 2.2.1's corrupted long reads);
no picture is rendered and no file is written. The soundtrack comes from
:meth:`scoretrack.Scorer.soundtrack`, the same function the file pipeline uses.
"""

from __future__ import annotations

import numpy as np

from .options import ScoreOptions
from .pipeline import Scorer, Soundtrack, with_style

READ_BLOCK = 50_000  # samples per moviepy read; moviepy 2.2.1 corrupts single reads over 100,000


def read_clip_audio(clip) -> tuple[np.ndarray | None, int]:
    """A moviepy clip's audio (or an audio clip's samples) as float32 ``(channels, samples)`` at its own
    rate, and that rate.

    Returns ``(None, 0)`` for a clip without audio.
    """
    from moviepy import AudioClip

    audio = clip if isinstance(clip, AudioClip) else clip.audio
    if audio is None:
        return None, 0
    rate = int(audio.fps)
    total = int(round(clip.duration * rate))
    blocks = []
    for start in range(0, total, READ_BLOCK):
        times = np.arange(start, min(total, start + READ_BLOCK)) / rate
        block = np.asarray(audio.get_frame(times), dtype=np.float32)
        blocks.append(block.reshape(len(times), -1).T)
    return np.concatenate(blocks, axis=1), rate


def soundtrack_of(clip, scorer: Scorer, *, style: str | None = None, options: ScoreOptions | None = None) -> Soundtrack:
    """The :class:`Soundtrack` of a moviepy clip (its own audio is the melody and the speech to duck under)."""
    audio, rate = read_clip_audio(clip)
    return scorer.soundtrack(audio, rate or 48000, duration_s=clip.duration, options=with_style(options, style))


def with_soundtrack(clip, scorer: Scorer, *, style: str | None = None, options: ScoreOptions | None = None):
    """A copy of ``clip`` whose audio is the soundtrack's mix (in ``mix`` mode: dialogue plus ducked music).

    Works on a ``VideoFileClip``, a subclip, a ``CompositeVideoClip`` and a clip without audio. An audio
    clip (``AudioFileClip``...) has no audio of its own to replace: it gives the mix itself, an
    ``AudioArrayClip`` of the clip's length (a voice-over with its music under it).
    """
    from moviepy import AudioArrayClip, AudioClip

    track = soundtrack_of(clip, scorer, style=style, options=options)
    mix = AudioArrayClip(track.mix.T, fps=track.sample_rate)
    return mix if isinstance(clip, AudioClip) else clip.with_audio(mix)


def music_clip(clip, scorer: Scorer, *, style: str | None = None, options: ScoreOptions | None = None):
    """The ducked music alone, as a moviepy ``AudioArrayClip`` of the clip's length, for scripts that composite."""
    from moviepy import AudioArrayClip

    track = soundtrack_of(clip, scorer, style=style, options=options)
    return AudioArrayClip(track.ducked.T, fps=track.sample_rate)
