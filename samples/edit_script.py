"""An editing script: score a folder of clips with one loaded model, then give a moviepy clip its soundtrack.

Usage: python samples/edit_script.py MODEL CLIP...
"""

import sys
from pathlib import Path

import scoretrack
from scoretrack import GenerationOptions, MixOptions, ScoreOptions
from scoretrack.integrations import music_clip, with_soundtrack

model, clips = sys.argv[1], [Path(p) for p in sys.argv[2:]]
scorer = scoretrack.Scorer(model)  # loaded once
options = ScoreOptions(style="warm ambient pads", generation=GenerationOptions(seed=42),
                       mix=MixOptions(depth_db=-15, target_lufs=-16))
for clip in clips:
    try:
        result = scorer.score(clip, options=options, overwrite=True, stems=True)
        print(f"{clip}: {result.output} ({result.loudness_lufs:.1f} LUFS, {result.windows} windows)")
    except scoretrack.ScoretrackError as error:
        print(f"{clip}: skipped: {error}")

from moviepy import VideoFileClip  # noqa: E402  (only the moviepy part needs it)

with VideoFileClip(str(clips[0])) as source:
    opening = source.subclipped(0, min(3, source.duration))
    scored = with_soundtrack(opening, scorer, style="soft piano intro")  # dialogue kept, music ducked under it
    bed = music_clip(opening, scorer, style="soft piano intro")          # the ducked music alone, to composite
    scored.write_videofile("opening.scored.mp4", logger=None)
    print(f"opening.scored.mp4 written; music bed {bed.duration:.2f} s")
