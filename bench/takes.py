"""What takes cost: generation time of 3 takes of a clip against 1 take, on the full-size musicgen-melody
architecture (random weights: the real model's speed, not its music), in the same run.

The takes of a clip are rows of the same generate() calls (``MusicRequest.take_seeds``), so a decode
step reads the decoder's weights once for all of them. ``generate_music`` of one clip with 1 take and
with 3 takes (guidance 3, the default), best of --repeats, the two interleaved since the machine's load
varies: wall seconds and the 3-take/1-take ratio (issue 16's target: at most 2x).

Usage: python bench/takes.py [--clip-s 1] [--repeats 2] [--threads N]
"""

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from scoretrack import generate, media, model
from scoretrack.options import GenerationOptions, take_seed
from scoretrack.testing import full_size_config, random_model, tiny_tokenizer

MEDIA = Path(os.environ.get("SCORETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
STYLE = "cinematic strings"
RECORDING = "music_brahms_hungarian5.ogg"


def music_of(mm, audio: np.ndarray, *, clip_s: float, takes: int) -> float:
    """Wall seconds of generate_music for ``takes`` takes of one clip (rows of one call)."""
    request = generate.MusicRequest(STYLE, clip_s, audio, take_seeds=tuple(take_seed(0, t) for t in range(1, takes + 1)))
    start = time.perf_counter()
    generate.generate_music(mm, [request], GenerationOptions(guidance_scale=3.0))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip-s", type=float, default=1.0, help="clip length in seconds (one window)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repetitions; the best is kept")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d')}")
    mm = model.MusicModel(model=random_model(full_size_config()), tokenizer=tiny_tokenizer(), name="full-size random",
                          device=torch.device("cpu"), dtype=torch.float32)
    audio = media.read_audio(MEDIA / RECORDING, sample_rate=mm.sample_rate, channels=1, duration_s=args.clip_s)
    best = {1: np.inf, 3: np.inf}
    with torch.inference_mode():
        music_of(mm, audio, clip_s=0.1, takes=1)  # warm up
        for _ in range(args.repeats):
            for takes in best:
                best[takes] = min(best[takes], music_of(mm, audio, clip_s=args.clip_s, takes=takes))
    print(f"\n{args.clip_s:g} s clip, guidance 3, best of {args.repeats}\n")
    print("| 1 take (s) | 3 takes (s) | 3 takes / 1 take |\n|---|---|---|")
    print(f"| {best[1]:.1f} | {best[3]:.1f} | {best[3] / best[1]:.2f}x |")


if __name__ == "__main__":
    main()
