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
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
# two workers (the CI machine's cores), a test file per worker at a time: module fixtures are made once
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${SCORETRACK_TEST_WORKERS:-2}" --dist loadfile "$@"
