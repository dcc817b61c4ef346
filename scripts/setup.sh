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
# The stamp also names the install recipe, so a change to it (bytecode, below) reaches existing .venv folders.
recipe="uv-or-pip; bytecode compiled"
wanted=$( (cat pyproject.toml constraints.txt; echo "$recipe") | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
  echo "mergeflow setup: installing the pinned stack (first time: about a minute with uv, several with pip; torch is large)"
  # uv resolves and downloads in parallel (about 40 s here against pip's ~4 min); it does not read pip's config, so
  # the wheel folder pip is told about (find-links) and the system's certificates are handed over. pip stays the
  # fallback when uv cannot be installed or fails.
  # Bytecode is compiled at install time: this machine's environment sets PYTHONDONTWRITEBYTECODE=1, so without it
  # every process (each DVC stage, each dvc call) compiles torch, transformers, open_clip and dvc from source again;
  # measured on the smoke profile's cold run (32 stages, 2 cores): 577 s without, 216 s with.
  if .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv 2>/dev/null; then
    find_links=()
    for folder in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
      [ -d "$folder" ] && find_links+=(--find-links "$folder")
    done
    UV_NATIVE_TLS=1 .venv/bin/python -m uv pip install --quiet --compile-bytecode --python .venv/bin/python \
      "${find_links[@]}" \
      -c constraints.txt -e ".[dev]" \
      || .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  fi
  echo "$wanted" > "$stamp"
fi
# The project's own modules (an editable install: not in site-packages) are compiled too, for the same reason: every
# stage process imports ~100 of them (measured on this machine: 2.6 s from source, 2.35 s with bytecode, per stage).
# compileall skips what is up to date, and Python ignores a .pyc whose source changed since.
.venv/bin/python -m compileall -q src tasks flows > /dev/null
