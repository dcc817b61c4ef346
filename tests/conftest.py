"""Shared fixtures: the repository root, and quiet offline settings for every test. Under pytest-xdist
(scripts/run_tests.sh runs one worker more than the cores, at most 4) each worker gets its share of the cores, and
the slowest files are handed out first so that the workers finish together."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Cold runs of the real pipeline on the smoke profiles: minutes each, so they start first (in this order) and the
# short tests fill the other workers meanwhile: test_pipeline.py builds the session's shared cold run, test_chaos.py
# its own killed and resumed one (compared with the shared one at its end), then the text and the tiny real
# profile's cold runs. The next two work on copies of the shared run: a worker that takes one early waits for that
# run, and one that takes it behind another file starts it about when the run is done. Then every other file with
# `pipeline` tests, then the rest.
SLOWEST_FIRST = ("tests/test_pipeline.py", "tests/flows/test_chaos.py", "tests/text/test_text_pipeline.py",
                 "tests/real/test_tiny_real_pipeline.py", "tests/test_pipeline_incremental.py",
                 "tests/test_pipeline_remote.py")


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never reach a model hub: a download attempt fails at once instead of hanging."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def root() -> Path:
    return ROOT


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONHASHSEED", "0")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers > 1:  # read by torch when the test modules import it, after this hook
        threads = str(max(1, (os.cpu_count() or 1) // workers))
        os.environ.setdefault("OMP_NUM_THREADS", threads)
        os.environ.setdefault("MKL_NUM_THREADS", threads)


def _start_rank(item: pytest.Item) -> int:
    path = item.nodeid.split("::")[0]
    if path in SLOWEST_FIRST:
        return SLOWEST_FIRST.index(path)
    return len(SLOWEST_FIRST) + (0 if item.get_closest_marker("pipeline") else 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slowest files first (a stable sort: the order of tests within a file, which some rely on, is kept)."""
    items.sort(key=_start_rank)
