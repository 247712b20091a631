#!/usr/bin/env bash
# One command: set up .venv, build the tiny test model and the sample clip, and score the sample.
# Extra arguments go to scoretrack, e.g. --model facebook/musicgen-melody for the real weights.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "plot,timeline,moviepy"
[ -d samples/tiny-musicgen-melody ] || .venv/bin/python -m scoretrack.testing samples/tiny-musicgen-melody
[ -f samples/sample.mp4 ] || .venv/bin/python samples/make_sample.py samples/sample.mp4
.venv/bin/scoretrack samples/sample.mp4 --style "cinematic strings" --model samples/tiny-musicgen-melody \
    --force --stems --plot "$@"
