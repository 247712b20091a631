#!/usr/bin/env bash
# One command: set up a virtual environment (CPU torch from this machine's disk) and run the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test,plot,moviepy]"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
