"""Team-shared remote caches, with real DVC remotes: an S3 API (moto_server on 127.0.0.1) and a shared directory.

A teammate's fresh clone computes nothing of a whole cold run someone else made: the cached outputs are pushed (not only
run-cache records), the uncached ones (timings, metrics, the report) come with the commit, as dvc.lock does; then
`dvc repro --pull` fetches the rest and `dvc repro` is a no-op. With the shared directory, the flow's exchange mode
runs a stage in another clone (a worker), which pushes; the orchestrating clone pulls it from the shared directory
(the run cache, with the outputs), and `dvc repro` there is a no-op."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flowkit import clone, commit, copy_smoke_project, free_port, outcomes, run_flow, start, stop, use_project, wait_http
from pipeline_kit import VENV_BIN, dvc, project_env, ran, run

from mergeflow.profiles import resolve_profile

pytestmark = pytest.mark.pipeline

FIRST = resolve_profile(Path(__file__).resolve().parents[2] / "profiles" / "smoke.yaml")["suite"]["tasks"][0]
STAGE = f"prepare@{FIRST}"  # one real stage of the pipeline: a few seconds
BUCKET = "mergeflow-team-cache"
DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server on a free loopback port with one bucket; stopped by its PID afterwards."""
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    port = free_port()
    proc = start([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)], log,
                 dict(DUMMY, PATH="/usr/bin:/bin"))
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(f"{endpoint}/moto-api/", proc, log, timeout=60)
        import boto3

        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=DUMMY["AWS_ACCESS_KEY_ID"],
                     aws_secret_access_key=DUMMY["AWS_SECRET_ACCESS_KEY"], region_name="us-east-1").create_bucket(
            Bucket=BUCKET)
        yield endpoint
    finally:
        stop(proc)


def _without_aws(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if not k.startswith("AWS_")}


def test_s3_remote_push_of_a_cold_run_then_a_fresh_clone_computes_nothing(tmp_path: Path, s3_endpoint: str) -> None:
    """Issue 18 item 6: the whole smoke pipeline, not one stage; the timing files are uncached outputs committed with
    dvc.lock, so the teammate's clone has them and no stage of theirs is out of date."""
    mine = copy_smoke_project(tmp_path / "mine", git=True)
    env = _without_aws(project_env(mine))
    dvc(mine, "remote", "add", "-d", "team", f"s3://{BUCKET}/dvc", env=env)
    # What `dvc remote modify team endpointurl URL` and `dvc remote modify --local team access_key_id ...` write
    # (flows/README.md shows the commands; one file write here instead of three dvc start-ups). Credentials go to
    # .dvc/config.local, which git ignores, never to the committed .dvc/config.
    with (mine / ".dvc" / "config").open("a") as config:
        config.write(f"    endpointurl = {s3_endpoint}\n")
    (mine / ".dvc" / "config.local").write_text(
        f"['remote \"team\"']\n    access_key_id = {DUMMY['AWS_ACCESS_KEY_ID']}\n"
        f"    secret_access_key = {DUMMY['AWS_SECRET_ACCESS_KEY']}\n")
    assert STAGE in ran(dvc(mine, "repro", env=env))  # a cold run of every stage
    commit(mine, "a cold run of the smoke pipeline")
    tracked = run(["git", "ls-files"], mine).stdout.split()
    assert ".dvc/config" in tracked and ".dvc/config.local" not in tracked and "dvc.lock" in tracked
    assert {"reports/timings/evaluate_static.json", "reports/report.md"} <= set(tracked)  # uncached: in git
    assert "reports/results.parquet" not in tracked  # cached: in the remote
    assert DUMMY["AWS_SECRET_ACCESS_KEY"] not in (mine / ".dvc" / "config").read_text()
    dvc(mine, "push", "--run-cache", env=env)  # the outputs themselves, and the run records

    import boto3

    objects = boto3.client("s3", endpoint_url=s3_endpoint, aws_access_key_id=DUMMY["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=DUMMY["AWS_SECRET_ACCESS_KEY"],
                           region_name="us-east-1").list_objects_v2(Bucket=BUCKET)
    assert objects["KeyCount"] > 0

    # The teammate: a fresh clone, credentials from the environment this time.
    theirs = clone(mine, tmp_path / "theirs")
    their_env = project_env(theirs, **DUMMY)
    assert not (theirs / "artifacts" / "data" / FIRST).exists()
    pulled = dvc(theirs, "repro", "--pull", env=their_env)
    assert ran(pulled) == set(), pulled  # fetched, not recomputed: no stage at all
    assert (theirs / "artifacts" / "data" / FIRST / "train.parquet").exists()
    assert (theirs / "reports" / "results.parquet").read_bytes() == (mine / "reports" / "results.parquet").read_bytes()
    # `repro --pull` says "up to date" even for a missing uncached output; `status` would not, so ask it too
    assert "Data and pipelines are up to date" in dvc(theirs, "status", env=their_env)
    assert ran(dvc(theirs, "repro", env=their_env)) == set()  # and now simply up to date


def test_shared_directory_remote_with_the_flow_exchange_mode(
    flows_pipeline: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared-cache"  # e.g. an NFS mount every teammate and worker sees
    orchestrator = copy_smoke_project(tmp_path / "orchestrator", git=True)
    dvc(orchestrator, "remote", "add", "-d", "shared", str(shared))
    commit(orchestrator, "project with a shared remote")
    worker = clone(orchestrator, tmp_path / "worker")  # another machine's clone

    use_project(worker, monkeypatch)
    monkeypatch.setenv(flows_pipeline.CLONE_ENV, str(worker))  # what the worker machine sets for itself
    state, summary = run_flow(flows_pipeline, orchestrator, targets=[STAGE], exchange=True)
    assert state.is_completed() and outcomes(summary) == {STAGE: "ran"}
    worker_log = (worker / flows_pipeline.DEFAULT_LOG_DIR / f"{STAGE}.log").read_text()
    assert "repro --pull" in worker_log and "push --run-cache" in worker_log
    # The orchestrator ran nothing itself: it restored the stage from the run cache the worker pushed.
    collected = (orchestrator / flows_pipeline.DEFAULT_LOG_DIR / "_collect.log").read_text()
    assert f"Stage '{STAGE}' is cached - skipping run" in collected and "Running stage" not in collected
    assert (orchestrator / "artifacts" / "data" / FIRST / "train.parquet").exists()
    assert ran(dvc(orchestrator, "repro", STAGE)) == set()  # a no-op there
