#!/usr/bin/env bash
# Repeatable demo of scheduling, on loopback only: start `prefect server start --host 127.0.0.1`, create two cron
# deployments of the pipeline flow (one served by `python -m flows.deploy`, one through prefect.yaml and a process
# work pool), trigger a run of each, wait for COMPLETED, show the scheduler's upcoming runs, then stop every process
# this script started by its PID. It works on a scratch copy of the project with the smoke profile as params.yaml,
# so this clone's params.yaml, dvc.lock and artifacts are never touched.
#
#   bash scripts/prefect_demo.sh [TARGET ...]     # default target: prepare@handwritten_digits (a few seconds)
#   KEEP=1 bash scripts/prefect_demo.sh           # keep the scratch folder (server log, flow logs) afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
py=$repo/.venv/bin/python
prefect=$repo/.venv/bin/prefect
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(prepare@handwritten_digits)
params=$("$py" -c 'import json, sys; print(json.dumps({"targets": sys.argv[1:]}))' "${targets[@]}")

work=$(mktemp -d /tmp/mergeflow-prefect-demo.XXXXXX)
pids=()
cleanup() {
  # Each process was started with setsid: its process group is its own, led by the PID recorded here.
  # SIGINT first (Prefect's worker and runner shut down cleanly on it), then SIGTERM, then SIGKILL.
  for signal in INT TERM KILL; do
    for pid in "${pids[@]}"; do kill -"$signal" -- "-$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
      for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    done
  done 2>/dev/null
  echo "== stopped PIDs: ${pids[*]:-none}"
  if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "== kept $work"; fi
}
trap cleanup EXIT

t0=$(date +%s)
stamp() { echo "== [+$(( $(date +%s) - t0 )) s] $*"; }

stamp "scratch project in $work/project (smoke profile)"
proj=$work/project
mkdir -p "$proj"
cp dvc.yaml .dvcignore pyproject.toml prefect.yaml "$proj"/
"$py" -m mergeflow.profiles profiles/smoke.yaml "$proj"/params.yaml   # the overlay resolved into a whole params file
for folder in src tasks flows; do
  cp -r "$folder" "$proj"/
done
find "$proj" -name __pycache__ -prune -exec rm -rf {} +
cd "$proj"
export PATH=$repo/.venv/bin:$PATH PYTHONPATH=$proj/src:$proj
"$py" -m dvc init --no-scm -q

export PREFECT_HOME=$work/prefect-home PREFECT_SERVER_ANALYTICS_ENABLED=false PREFECT_RUNNER_POLL_FREQUENCY=2
port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
setsid "$prefect" server start --host 127.0.0.1 --port "$port" > "$work/server.log" 2>&1 &
pids+=($!)
stamp "prefect server start --host 127.0.0.1 --port $port (PID ${pids[-1]})"
for i in $(seq 120); do
  if "$py" -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1], timeout=2)" \
       "http://127.0.0.1:$port/api/health" 2>/dev/null; then break; fi
  [ "$i" -lt 120 ] || { tail -20 "$work/server.log"; exit 1; }
  sleep 1
done
export PREFECT_API_URL=http://127.0.0.1:$port/api
stamp "server ready: UI at http://127.0.0.1:$port, API at $PREFECT_API_URL"

# --- 1. flow.serve: one process creates the deployment and runs its flow runs ---------------------------------
setsid "$py" -m flows.deploy --name demo-serve --cron "0 2 * * *" --retry-delay 0 "${targets[@]}" \
  > "$work/serve.log" 2>&1 &
pids+=($!)
stamp "python -m flows.deploy --name demo-serve --cron '0 2 * * *' ${targets[*]} (PID ${pids[-1]})"
for i in $(seq 60); do
  "$prefect" deployment inspect mergeflow-pipeline/demo-serve > /dev/null 2>&1 && break
  [ "$i" -lt 60 ] || { tail -20 "$work/serve.log"; exit 1; }
  sleep 1
done
"$prefect" deployment inspect mergeflow-pipeline/demo-serve \
  | grep -E "'(name|entrypoint|cron|timezone)'" | sed 's/^/   /'
stamp "prefect deployment run mergeflow-pipeline/demo-serve --watch"
"$prefect" deployment run mergeflow-pipeline/demo-serve --watch --watch-timeout 600 | tail -3 | sed 's/^/   /'

# --- 2. prefect.yaml + a process work pool + a worker --------------------------------------------------------
"$prefect" work-pool create mergeflow-process --type process > /dev/null
stamp "prefect work-pool create mergeflow-process --type process; prefect --no-prompt deploy --all"
"$prefect" --no-prompt deploy --all > "$work/deploy.log" 2>&1 || { cat "$work/deploy.log"; exit 1; }
setsid "$prefect" worker start --pool mergeflow-process > "$work/worker.log" 2>&1 &
pids+=($!)
stamp "prefect worker start --pool mergeflow-process (PID ${pids[-1]})"
stamp "prefect deployment run mergeflow-pipeline/nightly --params '$params' --watch (same targets: a no-op run)"
"$prefect" deployment run mergeflow-pipeline/nightly --params "$params" --watch --watch-timeout 600 \
  | tail -3 | sed 's/^/   /'

# --- what the server now holds -------------------------------------------------------------------------------
stamp "flow runs (the two triggered runs COMPLETED; the cron schedules queued the upcoming ones as SCHEDULED)"
"$py" - <<'EOF'
from collections import Counter

from prefect.client.orchestration import get_client

with get_client(sync_client=True) as client:
    deployments = {d.id: d.name for d in client.read_deployments()}
    for deployment_id, name in deployments.items():
        runs = [r for r in client.read_flow_runs(limit=200) if r.deployment_id == deployment_id]
        states = Counter(r.state_type.value for r in runs)
        print(f"   mergeflow-pipeline/{name}: {dict(sorted(states.items()))}")
    artifact = client.read_latest_artifacts(limit=10)
    for a in artifact:
        if a.key == "mergeflow-pipeline":
            print("   artifact mergeflow-pipeline (latest):")
            for line in str(a.data).splitlines()[:8]:
                print("     " + line)
EOF
stamp "per-stage logs: $(ls "$proj/.dvc/tmp/flow_logs" | tr '\n' ' ')"
stamp "done"
