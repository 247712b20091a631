#!/usr/bin/env bash
# Create .venv and install scoretrack with the extras named in $1 (e.g. "test,plot").
# torch==2.13.0 first: on CPU-only machines that takes the CPU wheel instead of GBs of CUDA builds.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[${1:-plot}]"
