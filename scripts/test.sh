#!/usr/bin/env bash
# One command: set up .venv and run the tests (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,plot,moviepy,timeline,ray"
# the Kdenlive timelines are proven by rendering them with MLT's melt (Debian's package)
if ! command -v melt >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq melt
    else
        echo "scripts/test.sh: melt is missing and this is not root: the Kdenlive render tests will be skipped" \
             "(install it with: sudo apt-get install melt)" >&2
    fi
fi
# the Blender add-on is tested in Debian's Blender 3.4 (its modal operator in a window under Xvfb) and in
# Blender 4.5 (PyPI's bpy module, Python 3.11 only)
if ! command -v blender >/dev/null || ! command -v xvfb-run >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq blender xvfb
    else
        echo "scripts/test.sh: blender or xvfb is missing and this is not root: the add-on's Blender 3.4 tests" \
             "will be skipped (install them with: sudo apt-get install blender xvfb)" >&2
    fi
fi
if [ ! -x .venv-bpy/bin/python ] && command -v python3.11 >/dev/null; then
    python3.11 -m venv .venv-bpy && .venv-bpy/bin/pip install -q "bpy==4.5.*" \
        || { echo "scripts/test.sh: bpy 4.5 could not be installed: the add-on's Blender 4.5 tests will be skipped" >&2
             rm -rf .venv-bpy; }
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# two workers (the CI machine's cores), a test file per worker at a time: module fixtures are made once
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${SCORETRACK_TEST_WORKERS:-2}" --dist loadfile "$@"
