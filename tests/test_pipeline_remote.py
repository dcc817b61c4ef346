"""Issue 18 item 6 on the real DVC pipeline: the smoke profile's cold run pushed to an S3 remote (moto), then a
teammate's fresh git clone runs ``dvc repro --pull`` and computes nothing. The cold run is the session's shared one
(pipeline_kit.shared_cold_run), which tests/test_pipeline.py builds: this file is handed out right after the cold-run files
(tests/conftest.py), and waits for that run if it is not done yet."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from pipeline_kit import (
    VENV_BIN,
    clone,
    commit,
    copy_of,
    dvc,
    free_port,
    project_env,
    ran,
    run,
    shared_cold_run,
    start,
    stop,
    wait_http,
)

pytestmark = pytest.mark.pipeline

BUCKET = "mergeflow-team-cache"
DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return shared_cold_run(tmp_path_factory)


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


def test_s3_remote_push_of_a_cold_run_then_a_fresh_clone_computes_nothing(
        cold_run: tuple[Path, str], tmp_path: Path, s3_endpoint: str) -> None:
    """Issue 18 item 6: the whole smoke pipeline, not one stage; the timing files are uncached outputs committed with
    dvc.lock, so the teammate's clone has them and no stage of theirs is out of date."""
    mine = copy_of(cold_run[0], tmp_path / "mine")
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
    assert ran(dvc(mine, "repro", env=env)) == set()  # the copy of the cold run is up to date
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
    first = yaml.safe_load((mine / "params.yaml").read_text())["suite"]["tasks"][0]
    theirs = clone(mine, tmp_path / "theirs")
    their_env = project_env(theirs, **DUMMY)
    assert not (theirs / "artifacts" / "data" / first).exists()
    pulled = dvc(theirs, "repro", "--pull", env=their_env)
    assert ran(pulled) == set(), pulled  # fetched, not recomputed: no stage at all
    assert (theirs / "artifacts" / "data" / first / "train.parquet").exists()
    assert (theirs / "reports" / "results.parquet").read_bytes() == (mine / "reports" / "results.parquet").read_bytes()
    # `repro --pull` says "up to date" even for a missing uncached output; `status` would not, so ask it too
    assert "Data and pipelines are up to date" in dvc(theirs, "status", env=their_env)
    assert ran(dvc(theirs, "repro", env=their_env)) == set()  # and now simply up to date
