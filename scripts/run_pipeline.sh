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
# One pipeline run per workspace: the same flock as the Prefect flow's (flows/workspace_lock.py), so this command and a
# flow refuse each other instead of writing the same outputs at once. The kernel drops it when its holders exit
# (kill -9 included); fd 9 is inherited by dvc and its stages, so it is held until the last of them ends.
mkdir -p .dvc/tmp
exec 9>>.dvc/tmp/mergeflow-flow.lock
if ! flock -n 9; then
  echo "run_pipeline.sh: a pipeline run is already going in $(pwd) ($(head -c 200 .dvc/tmp/mergeflow-flow.lock | tr -d '\n' || true)); wait for it to finish, then run this again" >&2
  exit 2
fi
printf 'pid %s, started %s (scripts/run_pipeline.sh)\n' "$$" "$(date '+%Y-%m-%d %H:%M:%S')" > .dvc/tmp/mergeflow-flow.lock
# A dvc killed with kill -9 while it rewrote its stage lock table leaves it empty, and DVC then refuses every run
# (src/mergeflow/dvc_rwlock.py): with the workspace lock held no run of ours is live, so an empty table is reset.
if [ -e .dvc/tmp/rwlock ] && [ ! -s .dvc/tmp/rwlock ]; then
  python -m mergeflow.dvc_rwlock
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$(date +%s)
# DVC's own command, with dvc.lock and its lock table written atomically: a kill -9 never leaves them cut
# (src/mergeflow/dvc_cli.py)
python -m mergeflow.dvc_cli repro "$@" 2>&1 | tee "$log"
echo
echo "== stage wall times (inside each stage; DVC and Python start-up not included) =="
grep '^\[mergeflow\] stage' "$log" || echo "(no stage ran: everything was up to date)"
echo "== whole 'dvc repro': $(( $(date +%s) - start )) s =="
echo
mergeflow results
