#!/usr/bin/env bash
# One command: set up .venv and run the tests (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,plot,moviepy,timeline,ray"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
