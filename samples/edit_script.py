"""An editing script: score a folder of clips with one loaded model, then one moviepy clip.

Usage: python samples/edit_script.py MODEL CLIP...
"""

import sys
from pathlib import Path

import scoretrack
from scoretrack import GenerationOptions, MixOptions, ScoreOptions
from scoretrack.integrations import with_soundtrack

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

from moviepy import ColorClip  # noqa: E402  (only the moviepy part needs it)

title = ColorClip(size=(320, 240), color=(10, 10, 40), duration=3).with_fps(24)
with_soundtrack(title, scorer, style="soft piano intro").write_videofile("title.scored.mp4", logger=None)
