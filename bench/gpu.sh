#!/usr/bin/env bash
# The CUDA rows of issue 24 in one short run (about 5 minutes on one H100), for a session that has a GPU.
# 1. the decode loop on the GPU: the codes of the CUDA-graph step equal the eager step's (tiny model, float32),
#    and the CUDA-graph path keeps its codes when a batch is halved after an out-of-memory error;
# 2. the full-size musicgen-melody architecture (random weights), bfloat16, guidance 3: scoretrack against
#    plain generate() in the same run: one 10 s clip (real-time factor), then 16 clips x 3 takes (aggregate);
#    and the decode step early and late in a window.
# Usage: bench/gpu.sh [PYTHON]   (from anywhere; writes nothing but its output)
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
PY=${1:-${PY:-python}}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$PY" - <<'PYTHON'
import tempfile, numpy as np, torch
from scoretrack import decode, generate, sampling
from scoretrack.generate import GenerationOptions, MusicRequest
from scoretrack.model import load_model
from scoretrack.testing import write_tiny_model

folder = write_tiny_model(tempfile.mkdtemp() + "/tiny")
mm = load_model(str(folder), device="cuda", dtype="float32")
options = GenerationOptions(window_s=3.0, stride_s=2.0)
with torch.inference_mode():
    cond = decode.conditioning(mm, ["calm piano"] * 2, [np.eye(12, dtype=np.float32)[np.arange(235) % 12]] * 2,
                               guided=True)
    keys = sampling.row_keys(torch.tensor([1, 2], device="cuda"), torch.tensor([0, 0], device="cuda"))
    graph = decode.generate_window(mm, cond, None, 150, options, keys, graphs=True)
    eager = decode.generate_window(mm, cond, None, 150, options, keys, graphs=False)
print("graph codes == eager codes:", np.array_equal(graph, eager), f"({(graph != eager).mean():.4f} differ)")
cpu = load_model(str(folder), device="cpu")
request = [MusicRequest("calm piano", 5.0, None, seed=3)]
a, b = (generate.generate_music(m, request, options)[0] for m in (mm, cpu))
print("cuda float32 music vs cpu: max abs difference", float(np.abs(a - b).max()))
PYTHON
"$PY" bench/generation.py --device cuda --sections plain positions --rows 1 --clip-s 10 --repeats 2 --steps 20
"$PY" bench/generation.py --device cuda --sections plain --rows 16 --takes 3 --clip-s 10 --repeats 1
