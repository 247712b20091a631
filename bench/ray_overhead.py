"""Per-clip overhead of the Ray executor against the local loop, on the same clips, tiny model.

Both score N1 and then N2 copies of a short real clip (batches of 2, 4 s windows) with every output
redone; the per-clip cost is the slope (T(N2) - T(N1)) / (N2 - N1), so the fixed costs (actor start,
model load) fall out and are reported apart. One actor with all of this machine's CPUs against the
local loop with the same threads; runs interleaved, best of REPEATS. Also times a local Ray start.
Usage: python bench/ray_overhead.py [CLIP] (default: grid_bbaf2n_speech.mpg in SCORETRACK_MEDIA)
"""

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import ray

from scoretrack.executors import LocalExecutor
from scoretrack.options import GenerationOptions, ScoreOptions
from scoretrack.pipeline import Scorer, score_many
from scoretrack.plan import ClipRequest
from scoretrack.ray_executor import LOCAL_OBJECT_STORE_BYTES, RayExecutor
from scoretrack.testing import write_tiny_model

MEDIA = Path(os.environ.get("SCORETRACK_MEDIA", Path(__file__).resolve().parents[2] / "shared/media"))
CLIP = Path(sys.argv[1] if len(sys.argv) > 1 else MEDIA / "grid_bbaf2n_speech.mpg")
N1, N2, REPEATS = 2, 8, 3
OPTIONS = ScoreOptions(generation=GenerationOptions(window_s=4, stride_s=2.5, batch_size=2))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="rayb", dir="/tmp"))
    model = str(write_tiny_model(folder / "model"))
    clips = []
    for i in range(N2):
        clips.append(folder / f"clip{i}{CLIP.suffix}")
        shutil.copy(CLIP, clips[-1])
    scorer = Scorer(model)
    local = LocalExecutor(scorer)
    remote = RayExecutor(model=model, device="cpu", actors=1)

    def score(executor, n):
        results = score_many([ClipRequest(p, options=OPTIONS) for p in clips[:n]], model=model, executor=executor,
                             overwrite=True)
        assert all(r.status == "ok" for r in results), [r.error for r in results]

    starts = []
    for _ in range(2):
        starts.append(timed(lambda: ray.init(address="local", include_dashboard=False, log_to_driver=False,
                                             object_store_memory=LOCAL_OBJECT_STORE_BYTES)))
        ray.shutdown()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
    times = {key: [] for key in ("local", "ray")}
    for _ in range(REPEATS):
        for key, executor in (("local", local), ("ray", remote)):
            times[key].append((timed(lambda: score(executor, N1)), timed(lambda: score(executor, N2))))
    ray.shutdown()
    shutil.rmtree(folder, ignore_errors=True)

    print(f"clip {CLIP.name}, batches of 2, N1={N1}, N2={N2}, best of {REPEATS}, interleaved")
    print(f"local Ray start (ray.init): {min(starts):.2f} s")
    slope = {}
    for key, runs in times.items():
        t1, t2 = min(r[0] for r in runs), min(r[1] for r in runs)
        slope[key] = (t2 - t1) / (N2 - N1)
        fixed = t1 - N1 * slope[key]
        print(f"{key:5}: {N1} clips {t1:6.2f} s, {N2} clips {t2:6.2f} s, per clip {slope[key]:.3f} s, fixed {fixed:6.2f} s")
    print(f"Ray per-clip overhead: {slope['ray'] - slope['local']:+.3f} s ({slope['ray'] / slope['local']:.2f}x the local loop)")


if __name__ == "__main__":
    main()
