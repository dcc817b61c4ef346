#!/usr/bin/env bash
# The test job: set up what is missing, lint and type-check (ruff, mypy), then run the test suite (extra arguments go to
# pytest; the 25 slowest tests are listed at the end, to see where CI time goes).
# One pytest-xdist worker per core (at most 4), whole files per worker (tests in a file share fixtures and run in
# order); MERGEFLOW_TEST_WORKERS=0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cores=$(nproc 2>/dev/null || echo 2)
workers=${MERGEFLOW_TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
# style and types first: one line per problem, and a failure stops before the (longer) tests
.venv/bin/ruff check src tasks flows
.venv/bin/mypy
exec .venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder --durations=25 "$@"
