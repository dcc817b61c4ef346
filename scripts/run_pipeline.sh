#!/usr/bin/env bash
# The main job: set up what is missing, then reproduce the default pipeline offline with DVC.
# Extra arguments go to `dvc repro` (e.g. a stage name, or --dry).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONHASHSEED=0
source .venv/bin/activate
[ -d .git ] || git init -q
[ -d .dvc ] || dvc init -q
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
dvc repro "$@" 2>&1 | tee "$log"
echo
echo "== stage wall times (inside each stage; DVC and Python start-up not included) =="
grep '^\[mergeflow\] stage' "$log" || echo "(no stage ran: everything was up to date)"
echo "== whole 'dvc repro': $(( $(date +%s) - start )) s =="
echo
mergeflow results
