"""The moviepy adapter against the array API on the same audio (issue target: at most 1.5x).

Times `with_soundtrack(VideoFileClip)` and `Scorer.soundtrack(array)` on the same clip, model and
settings, best of 3, interleaved. Usage: python bench/moviepy_adapter.py MODEL_DIR [CLIP]
"""

import sys
import time
from pathlib import Path

from moviepy import VideoFileClip

from scoretrack import Scorer
from scoretrack.integrations import read_clip_audio, with_soundtrack
from scoretrack.options import GenerationOptions, ScoreOptions

MODEL = sys.argv[1]
CLIP = Path(sys.argv[2] if len(sys.argv) > 2 else Path(__file__).resolve().parents[2] / "shared/media/his_girl_friday_dialogue.mp4")
OPTIONS = ScoreOptions(style="calm piano", generation=GenerationOptions(window_s=4.0, stride_s=2.5))


def main() -> None:
    scorer = Scorer(MODEL)
    with VideoFileClip(str(CLIP)) as clip:
        audio, rate = read_clip_audio(clip)
        scorer.soundtrack(audio, rate, options=OPTIONS)  # warm up
        adapter, array = [], []
        for _ in range(3):
            start = time.perf_counter()
            with_soundtrack(clip, scorer, options=OPTIONS)
            adapter.append(time.perf_counter() - start)
            start = time.perf_counter()
            scorer.soundtrack(audio, rate, options=OPTIONS)
            array.append(time.perf_counter() - start)
    print(f"clip: {CLIP.name} ({clip.duration:.2f} s)")
    print(f"Scorer.soundtrack(array): {min(array):.3f} s")
    print(f"with_soundtrack(VideoFileClip): {min(adapter):.3f} s  ratio {min(adapter) / min(array):.2f}x (target 1.5x)")


if __name__ == "__main__":
    main()
