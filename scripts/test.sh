#!/usr/bin/env bash
# One command: set up .venv and run the tests (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,plot,moviepy,timeline,ray"
# Debian packages the tests use: MLT's melt renders the Kdenlive timelines; chromium opens the review page
# (driven by Playwright, whose own browser download is not used); Blender 3.4 runs the add-on (its modal
# operator in a window under Xvfb)
need() {  # need COMMAND PACKAGE WHAT-SKIPS-WITHOUT-IT
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"
    else
        echo "scripts/test.sh: $1 is missing and this is not root: $3 will be skipped" \
             "(install it with: sudo apt-get install $2)" >&2
    fi
}
need melt melt "the Kdenlive render tests"
need chromium chromium "the review page tests"
need blender blender "the add-on's Blender 3.4 tests"
need xvfb-run xvfb "the add-on's modal operator test"
# Blender 4.5 as PyPI's bpy module (Python 3.11 only); not made where SCORETRACK_BPY_PYTHON names the Python
# to use (the add-on tests take that one first)
if [ -z "${SCORETRACK_BPY_PYTHON:-}" ] && [ ! -x .venv-bpy/bin/python ] && command -v python3.11 >/dev/null; then
    python3.11 -m venv .venv-bpy && .venv-bpy/bin/pip install -q "bpy==4.5.*" \
        || { echo "scripts/test.sh: bpy 4.5 could not be installed: the add-on's Blender 4.5 tests will be skipped" >&2
             rm -rf .venv-bpy; }
fi
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# two workers (the CI machine's cores), a test file per worker at a time: module fixtures are made once
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${SCORETRACK_TEST_WORKERS:-2}" --dist loadfile "$@"
