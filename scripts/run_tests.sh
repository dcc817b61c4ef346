#!/usr/bin/env bash
# The test job: set up what is missing, lint and type-check (ruff, mypy), then run the test suite (extra arguments go to
# pytest; the 25 slowest tests are listed at the end, to see where CI time goes).
# pytest-xdist workers: one more than the cores (at most 4), since the pipeline tests' processes wait on the disk and
# on each other part of the time. The tests' wall time in fresh clones on this project's 2-core machine (2026-12-03;
# the machine's own speed moved by a quarter between these runs): 2 workers 1,165 s; 3 workers 930 s and 1,150 s;
# 4 workers 1,139 s. Whole files per worker (tests in a file share fixtures and run in order);
# MERGEFLOW_TEST_WORKERS=0 runs everything in this process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
cores=$(nproc 2>/dev/null || echo 2)
workers=${MERGEFLOW_TEST_WORKERS:-$(( cores < 3 ? cores + 1 : 4 ))}
# style first: one line per problem, and a failure stops before anything longer
.venv/bin/ruff check src tasks flows tests benchmarks scripts
# mypy takes over a minute from a fresh clone, on one core, so it runs beside the tests (whose pipelines leave a core
# idle now and then); its report is printed when it ends, and a type error fails the job once the tests are done
mypy_log=$(mktemp)
trap 'rm -f "$mypy_log" "$mypy_log.rc"' EXIT
( rc=0; .venv/bin/mypy >"$mypy_log" 2>&1 || rc=$?; echo "$rc" >"$mypy_log.rc"; echo; echo "mypy: $(tail -n 1 "$mypy_log")"
  [ "$rc" = 0 ] || cat "$mypy_log" ) &
tests=0
.venv/bin/python -m pytest -n "$workers" --dist loadfile --no-loadscope-reorder --durations=25 "$@" || tests=$?
wait
if [ "$(cat "$mypy_log.rc")" != 0 ]; then
  echo "mergeflow tests: mypy found type errors (listed above)" >&2
  exit 1
fi
exit "$tests"
