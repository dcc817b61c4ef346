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
  echo "mergeflow setup: installing the pinned stack (first time: about a minute with uv, several with pip; torch is large)"
  # uv resolves and downloads in parallel (about 40 s here against pip's ~4 min); it does not read pip's config, so
  # the wheel folder pip is told about (find-links) and the system's certificates are handed over. pip stays the
  # fallback when uv cannot be installed or fails.
  if .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt uv 2>/dev/null; then
    find_links=()
    for folder in $(.venv/bin/python -m pip config get global.find-links 2>/dev/null || true); do
      [ -d "$folder" ] && find_links+=(--find-links "$folder")
    done
    UV_NATIVE_TLS=1 .venv/bin/python -m uv pip install --quiet --python .venv/bin/python "${find_links[@]}" \
      -c constraints.txt -e ".[dev]" \
      || .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  else
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  fi
  echo "$wanted" > "$stamp"
fi
