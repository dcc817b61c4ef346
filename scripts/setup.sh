#!/usr/bin/env bash
# Create .venv (if missing) and install mergeflow with the pinned stack from constraints.txt.
# Idempotent: a second call returns in a second unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
python_bin=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "mergeflow setup: creating .venv with $($python_bin --version)"
  "$python_bin" -m venv .venv
fi
stamp=.venv/.mergeflow-install-stamp
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "mergeflow setup: installing the pinned stack (first time: several minutes, torch is large)"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  echo "$wanted" > "$stamp"
fi
