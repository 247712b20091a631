"""The first window of a process against later windows of the same size (issue 11: no cold-start tax).

Each trial is a fresh process that loads the model (the tiny test model through load_model, or the
full-size architecture with random weights), then times generate_music on one window three times:
the first call, then the best of the next two. The ratio first / later is the cold-start tax.
``one_frame_s`` is the first of two one-frame calls made beforehand in ``--one-frame`` trials: the
process-wide set-up a warm-up at load could pay (what is left in the ratio then is per shape).

Usage: python bench/cold_start.py [--case tiny full] [--trials 3] [--threads N] [--one-frame]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

WINDOW_S = {"tiny": 4.0, "full": 1.0}  # few decode steps for the full-size model on a CPU


def child(case: str, one_frame: bool, folder: str) -> dict:
    import numpy as np
    import torch

    from scoretrack import generate
    from scoretrack.generate import GenerationOptions, MusicRequest
    from scoretrack.model import MusicModel, load_model
    from scoretrack.testing import full_size_config, random_model, tiny_tokenizer

    start = time.perf_counter()
    if case == "tiny":
        mm = load_model(folder, device="cpu")
    else:
        mm = MusicModel(model=random_model(full_size_config()), tokenizer=tiny_tokenizer(), name="full-size random",
                        device=torch.device("cpu"), dtype=torch.float32)
    load_s = time.perf_counter() - start
    one_frame_s = []
    for _ in range(2 if one_frame else 0):
        start = time.perf_counter()
        frame = 1 / mm.frame_rate
        generate.generate_music(mm, [MusicRequest("calm", frame, np.zeros((1, 640), np.float32))],
                                GenerationOptions(window_s=frame, stride_s=frame / 2))
        one_frame_s.append(time.perf_counter() - start)
    window_s = WINDOW_S[case]
    melody = np.random.default_rng(0).standard_normal((1, int(window_s * 32000))).astype(np.float32) * 0.1
    options = GenerationOptions(window_s=window_s, stride_s=window_s / 2)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        generate.generate_music(mm, [MusicRequest("calm piano", window_s, melody)], options)
        times.append(time.perf_counter() - start)
    return {"load_s": load_s, "first_s": times[0], "later_s": min(times[1:]), "one_frame_s": one_frame_s,
            "threads": torch.get_num_threads()}


def run_trial(case: str, one_frame: bool, folder: str, threads: int | None) -> dict:
    command = [sys.executable, __file__, "--child", case, "one-frame" if one_frame else "plain", folder]
    if threads:
        command += ["--threads", str(threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", default=["tiny", "full"], choices=["tiny", "full"])
    parser.add_argument("--trials", type=int, default=3, help="fresh processes per case and setting")
    parser.add_argument("--threads", type=int, help="torch threads in each trial (default: torch's choice)")
    parser.add_argument("--one-frame", action="store_true", help="time two one-frame calls before the windows")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        case, mode, folder = args.child
        print(json.dumps(child(case, mode == "one-frame", folder)))
        return
    from scoretrack.testing import write_tiny_model

    with tempfile.TemporaryDirectory() as folder:
        write_tiny_model(folder)
        for case in args.case:
            ratios = []
            for _ in range(args.trials):
                trial = run_trial(case, args.one_frame, folder, args.threads)
                ratios.append(trial["first_s"] / trial["later_s"])
                print(f"{case}: load {trial['load_s']:.2f} s, one-frame calls "
                      f"{[round(t, 3) for t in trial['one_frame_s']]} s, first window {trial['first_s']:.2f} s, "
                      f"later {trial['later_s']:.2f} s, ratio {ratios[-1]:.2f} ({trial['threads']} threads)", flush=True)
            print(f"{case}: median first/later {statistics.median(ratios):.2f} over {len(ratios)} fresh processes "
                  f"({WINDOW_S[case]} s window)")

if __name__ == "__main__":
    main()
