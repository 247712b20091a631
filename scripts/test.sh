#!/usr/bin/env bash
# One command: set up .venv and run the tests (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "test,plot,moviepy,timeline,ray"
# Debian packages the tests use: MLT's melt renders the Kdenlive timelines; chromium opens the review page
# (driven by Playwright, whose own browser download is not used)
need() {  # need COMMAND WHAT-SKIPS-WITHOUT-IT
    command -v "$1" >/dev/null && return
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1"
    else
        echo "scripts/test.sh: $1 is missing and this is not root: $2 will be skipped" \
             "(install it with: sudo apt-get install $1)" >&2
    fi
}
need melt "the Kdenlive render tests"
need chromium "the review page tests"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# two workers (the CI machine's cores), a test file per worker at a time: module fixtures are made once
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${SCORETRACK_TEST_WORKERS:-2}" --dist loadfile "$@"
