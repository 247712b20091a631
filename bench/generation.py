"""Generation speed and memory of the full-size musicgen-melody architecture (random weights: the
real model's speed and memory, not its music).

Reports, per dtype and guidance setting: seconds per decode step, seconds per generated audio second,
decode steps per audio second of a long clip (target at most 1.02 x 50), the share of time spent
prefilling a continuation prompt, peak memory, and the step time over the memory-bandwidth floor
(decoder weight bytes read per step / copy bandwidth measured in the same run).

Usage: python bench/generation.py [--dtypes float32 bfloat16] [--steps 8] [--prompt-s 12] [--device cpu]
"""

import argparse
import resource
import time

import numpy as np
import torch

from scoretrack import generate
from scoretrack.generate import GenerationOptions, MusicModel
from scoretrack.testing import full_size_config, random_model, tiny_tokenizer


def copy_bandwidth(device: torch.device) -> float:
    """Bytes per second of a large tensor copy (read + write counted)."""
    data = torch.empty(256 * 2**20 // 4, dtype=torch.float32, device=device)
    target = torch.empty_like(data)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        target.copy_(data)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return 2 * data.numel() * 4 / best


def timed_window(mm: MusicModel, prompt_frames: int, new_frames: int, guidance: float):
    """Time one window: prefill (prompt + conditioning) and each decode step, via the step callback."""
    stamps = []
    options = GenerationOptions(guidance_scale=guidance)
    prompt = np.random.default_rng(0).integers(0, 2048, size=(1, 4, prompt_frames)) if prompt_frames else None
    melody = np.zeros((235, 12), np.float32)
    melody[:, 0] = 1
    start = time.perf_counter()
    generate._run_generate(mm, ["cinematic strings"], [melody], prompt, prompt_frames + new_frames, options, 0,
                           lambda _: stamps.append(time.perf_counter()))
    steps = np.diff(stamps)
    return stamps[0] - start, float(np.median(steps)), len(stamps)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=8, help="decode steps timed per setting")
    parser.add_argument("--prompt-s", type=float, default=12.0, help="continuation prompt length (window - stride)")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = generate.pick_device(args.device)
    bandwidth = copy_bandwidth(device)
    plan = generate.plan_windows(600.0, window_s=30, stride_s=18, frame_rate=50, sample_rate=32000)
    steps_per_s = sum(w.frames - w.prompt + 3 for w in plan) / 600.0
    print(f"device {device}; copy bandwidth {bandwidth / 1e9:.1f} GB/s")
    print(f"decode steps per audio second over a 10 min clip: {steps_per_s:.2f} = {steps_per_s / 50:.4f} x 50")
    print("| dtype | guidance | s/step | s per audio s | prefill share of a window | peak RSS GB | step / bandwidth floor |")
    print("|---|---|---|---|---|---|---|")
    torch.manual_seed(0)
    model = random_model(full_size_config())
    for dtype_name in args.dtypes:
        dtype = getattr(torch, dtype_name)
        mm = MusicModel(model=model.to(device=device, dtype=dtype), tokenizer=tiny_tokenizer(), name="full-size random",
                        device=device, dtype=dtype)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.decoder.parameters())
        print(f"{dtype_name}: decoder weights {weight_bytes / 1e9:.2f} GB read per step")
        for guidance in (3.0, 1.0):
            prefill, step, _ = timed_window(mm, int(args.prompt_s * 50), args.steps, guidance)
            window_steps = 900 + 3  # a continuation window generates stride (18 s) of new frames
            share = prefill / (prefill + window_steps * step)
            floor = weight_bytes / bandwidth  # every decoder weight is read once per step
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
            print(f"| {dtype_name} | {guidance} | {step:.3f} | {step * steps_per_s:.1f} | {share:.1%} | {rss:.1f} | {step / floor:.1f}x |")


if __name__ == "__main__":
    main()
