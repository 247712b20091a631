#!/usr/bin/env bash
# One command: set up, build the tiny test model and the sample clip, and score the sample.
# Pass --model facebook/musicgen-melody (or a local folder) to use the real weights.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[plot]"
[ -d samples/tiny-musicgen-melody ] || .venv/bin/python -m scoretrack.testing samples/tiny-musicgen-melody
.venv/bin/python samples/make_sample.py samples/sample.mp4
.venv/bin/scoretrack samples/sample.mp4 --style "cinematic strings" --model samples/tiny-musicgen-melody \
    --force --stems --plot --window 10 --stride 6 "$@"
