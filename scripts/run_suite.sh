#!/usr/bin/env bash
# Run the same DVC pipeline (dvc.yaml, tasks/, src/) on another suite's profile, in its own workspace runs/NAME/,
# then copy its results and report to reports/suites/NAME/. Usage: ./scripts/run_suite.sh profiles/text6.yaml
# The workspace keeps its DVC cache between runs, so a rerun only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 1 ] || [ ! -f "$1" ]; then
  echo "usage: $0 PROFILE.yaml   (e.g. profiles/text6.yaml; its base with the profile's changes becomes params.yaml in runs/NAME/)" >&2
  exit 2
fi
profile=$1
name=$(basename "$profile" .yaml)
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
work=runs/$name
mkdir -p "$work"
# The stage graph and code are copied, never edited: the suite runs exactly what the default pipeline runs.
rm -rf "$work/tasks" "$work/src"
cp -r tasks src "$work/"
find "$work" -name __pycache__ -prune -exec rm -rf {} +
cp dvc.yaml "$work/dvc.yaml"
# The profile (an overlay: `extends:` params.yaml or another profile, only the keys it changes) is resolved into a whole
# params file; a whole params file would be copied as it is.
.venv/bin/python -m mergeflow.profiles "$profile" "$work/params.yaml"
root=$(pwd)
if [ ! -d "$work/.dvc" ]; then
  (cd "$work" && "$root/.venv/bin/dvc" init --no-scm -q)
fi
# DVC's command with its state files written atomically (src/mergeflow/dvc_cli.py), after resetting a lock table that a
# killed dvc left empty (src/mergeflow/dvc_rwlock.py), as scripts/run_pipeline.sh runs it
(cd "$work" && export PYTHONPATH="$root/$work/src:$root/$work" PATH="$root/.venv/bin:$PATH" &&
  "$root/.venv/bin/python" -m mergeflow.dvc_rwlock && "$root/.venv/bin/python" -m mergeflow.dvc_cli repro)
mkdir -p "reports/suites/$name"
cp "$work/reports/report.md" "$work/reports/results.csv" "$work/reports/metrics.json" "reports/suites/$name/"
rm -rf "reports/suites/$name/figures" && cp -r "$work/reports/figures" "reports/suites/$name/figures"
# the wall-clock timings (seconds per input, per adaptation step) live apart from results.csv
rm -rf "reports/suites/$name/timings" && cp -r "$work/reports/timings" "reports/suites/$name/timings"
echo "suite $name: reports/suites/$name/report.md"
