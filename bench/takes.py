"""What takes cost: generation time of 3 takes of a clip against 1 take, on the full-size musicgen-melody
architecture (random weights: the real model's speed, not its music), in the same run.

The takes of a clip are rows of the same generate() calls, so a decode step reads the decoder's
weights once for all of them. Rows (best of --repeats, the two sides interleaved, since the machine's
load varies):

1. End to end: ``generate_music`` of one clip with 1 take and with 3 takes (guidance 3, the default),
   with PyTorch's ``F.linear`` and with scoretrack's CPU :class:`~scoretrack.cpu_linear.RowsLinear`
   swapped into the one model: wall seconds and the 3-take/1-take ratio (the target is at most 2x).
2. Per layer: one decode step's product for each of the decoder's weight shapes at 8 rows (1 take: 4
   codebooks, doubled by guidance) and 24 rows (3 takes), both kernels.

Usage: python bench/takes.py [--clip-s 1] [--repeats 2] [--threads N]
"""

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from scoretrack import generate, media, model
from scoretrack.cpu_linear import RowsLinear
from scoretrack.options import GenerationOptions, take_seed
from scoretrack.testing import full_size_config, random_model, tiny_tokenizer

MEDIA = Path(os.environ.get("SCORETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared" / "media"))
STYLE = "cinematic strings"
RECORDING = "music_brahms_hungarian5.ogg"
KERNELS = ("F.linear", "RowsLinear")


def set_kernel(model: torch.nn.Module, kernel: str) -> None:
    """Make every linear layer of the decoder use ``kernel``, sharing the same weight tensors."""
    for parent in [*model.decoder.modules()]:
        for name, child in list(parent.named_children()):
            if kernel == "RowsLinear" and type(child) is torch.nn.Linear:
                setattr(parent, name, RowsLinear(child))
            elif kernel == "F.linear" and isinstance(child, RowsLinear):
                plain = torch.nn.Linear(child.in_features, child.out_features, bias=child.bias is not None,
                                        device="meta")
                plain.weight, plain.bias = child.weight, child.bias
                setattr(parent, name, plain)


def music_of(mm, audio: np.ndarray, *, clip_s: float, takes: int) -> float:
    """Wall seconds of generate_music for ``takes`` takes of one clip (rows of one call)."""
    request = generate.MusicRequest(STYLE, clip_s, audio, take_seeds=tuple(take_seed(0, t) for t in range(1, takes + 1)))
    start = time.perf_counter()
    generate.generate_music(mm, [request], GenerationOptions(guidance_scale=3.0))
    return time.perf_counter() - start


def layer_times(shapes, rows_list, repeats: int = 50) -> dict:
    """Median seconds of one product per (shape, rows, kernel)."""
    times = {}
    for out_features, in_features in shapes:
        layer = torch.nn.Linear(in_features, out_features, bias=False)
        fast = RowsLinear(layer)
        for rows in rows_list:
            x = torch.randn(rows, 1, in_features)
            for kernel, run in (("F.linear", lambda: F.linear(x, layer.weight)), ("RowsLinear", lambda: fast(x))):
                with torch.inference_mode():
                    run()
                    stamps = []
                    for _ in range(repeats):
                        start = time.perf_counter()
                        run()
                        stamps.append(time.perf_counter() - start)
                times[(out_features, in_features), rows, kernel] = float(np.median(stamps))
    return times


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
    network = random_model(full_size_config())
    mm = model.MusicModel(model=network, tokenizer=tiny_tokenizer(), name="full-size random",
                          device=torch.device("cpu"), dtype=torch.float32)
    audio = media.read_audio(MEDIA / RECORDING, sample_rate=mm.sample_rate, channels=1, duration_s=args.clip_s)
    best = {(kernel, takes): np.inf for kernel in KERNELS for takes in (1, 3)}
    with torch.inference_mode():
        for kernel in KERNELS:  # warm up both paths once
            set_kernel(network, kernel)
            music_of(mm, audio, clip_s=0.1, takes=1)
        for _ in range(args.repeats):
            for kernel in KERNELS:
                set_kernel(network, kernel)
                for takes in (1, 3):
                    best[kernel, takes] = min(best[kernel, takes], music_of(mm, audio, clip_s=args.clip_s, takes=takes))
    print(f"\n{args.clip_s:g} s clip, guidance 3, best of {args.repeats}\n")
    print("| kernel | 1 take (s) | 3 takes (s) | 3 takes / 1 take |\n|---|---|---|---|")
    for kernel in KERNELS:
        one, three = best[kernel, 1], best[kernel, 3]
        print(f"| {kernel} | {one:.1f} | {three:.1f} | {three / one:.2f}x |")
    print(f"\nRowsLinear against F.linear: 1 take {best['RowsLinear', 1] / best['F.linear', 1]:.2f}x, "
          f"3 takes {best['RowsLinear', 3] / best['F.linear', 3]:.2f}x")
    decoder = network.decoder.config
    hidden, ffn, vocab = decoder.hidden_size, decoder.ffn_dim, decoder.vocab_size
    shapes = [(hidden, hidden), (ffn, hidden), (hidden, ffn), (vocab, hidden)]
    times = layer_times(shapes, (8, 24))
    print("\n| weight (out x in) | rows | F.linear (ms) | RowsLinear (ms) | ratio |\n|---|---|---|---|---|")
    for shape in shapes:
        for rows in (8, 24):
            plain, fast = times[shape, rows, "F.linear"], times[shape, rows, "RowsLinear"]
            print(f"| {shape[0]} x {shape[1]} | {rows} | {plain * 1e3:.2f} | {fast * 1e3:.2f} | {fast / plain:.2f} |")


if __name__ == "__main__":
    main()
