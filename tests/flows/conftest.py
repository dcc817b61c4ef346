"""Fixtures of the flow tests: one Prefect server for the session (its own PREFECT_HOME in a temporary folder).

Why a real server rather than Prefect's ephemeral mode: each process that runs a flow without one starts its own
temporary API (7-15 s on this machine); `prefect server start` is ready in about 10 s once, after which every flow
run, in this process or in a subprocess, talks to it in milliseconds. The deployment test needs one anyway.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline_kit import ROOT, VENV_BIN, free_port, start, stop, wait_http  # noqa: E402

if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start `prefect server start --host 127.0.0.1` on a free port; stop it by its PID at the end of the session."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    settings = {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # no telemetry attempts from an offline machine
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    env = dict(os.environ, **settings)
    env.pop("PREFECT_API_URL")
    log = home / "server.log"
    proc = start([str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], log, env)
    saved = {key: os.environ.get(key) for key in settings}
    try:
        wait_http(f"{url}/health", proc, log)
        os.environ.update(settings)  # for subprocesses (CLI runs, served deployments, Dask workers)
        from prefect.settings import (
            PREFECT_API_URL,
            PREFECT_HOME,
            PREFECT_SERVER_ANALYTICS_ENABLED,
            temporary_settings,
        )

        with temporary_settings(
            updates={PREFECT_API_URL: url, PREFECT_HOME: str(home), PREFECT_SERVER_ANALYTICS_ENABLED: False}
        ):
            yield url
            from prefect.events.worker import EventsWorker
            from prefect.logging.handlers import APILogWorker

            # Send the last log lines and events while the server still listens.
            APILogWorker.drain_all(timeout=10)
            EventsWorker.drain_all(timeout=10)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop(proc)


@pytest.fixture(scope="session")
def flows_pipeline(prefect_api: str) -> ModuleType:
    """flows.pipeline, imported only once the server is up (importing Prefect reads its settings)."""
    return importlib.import_module("flows.pipeline")
