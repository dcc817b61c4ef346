"""The real DVC pipeline on the smoke profile: it runs, a teammate's clone of a pushed run computes nothing, a rerun
is a no-op, a flipped byte in an output is noticed and rebuilt, one task's change reruns only its chain, one merging
method's change reruns only that method (and what reads it), a routing hyperparameter reruns only calibration and what
follows, and a forced rerun of a fine-tuning stage reproduces the same expert bit for bit. (A second cold run, killed
and resumed, must give the same bytes: tests/flows/test_chaos.py.)

The cold run is the session's shared one (pipeline_kit.shared_cold_run: built once, also the chaos test's
reference); the tests here work on a copy of it."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
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
    stale_stages,
    start,
    stop,
    wait_http,
)

from mergeflow.evaluation.timings import TIMING_METRICS, read_timings

pytestmark = pytest.mark.pipeline

BUCKET = "mergeflow-team-cache"
DUMMY = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def cold_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    return shared_cold_run(tmp_path_factory)


@pytest.fixture(scope="module")
def project(cold_run: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This file's working copy of the cold run: the tests below change its params and rerun."""
    return copy_of(cold_run[0], tmp_path_factory.mktemp("pipeline") / "project")


def test_cold_run_builds_every_stage_and_the_results_table(cold_run: tuple[Path, str], project: Path) -> None:
    output = cold_run[1]
    params = yaml.safe_load((project / "params.yaml").read_text())
    tasks, methods, route = params["suite"]["tasks"], params["merge"]["methods"], params["route"]
    expected = {"pretrain", "heads", "evaluate_pretrained", "evaluate_finetuned", "results", "analyze_routing", "report"}
    expected |= {"base_features", "regime", "calibrate", "evaluate_static"}
    for task in tasks:
        expected |= {f"prepare@{task}", f"finetune@{task}"}
    expected |= {f"merge@{method}" for method in methods}
    expected |= {f"features@{m}" for m in route["feature_models"]} | {f"evaluate_routed@{m}" for m in route["methods"]}
    expected |= {f"adapt@{m}" for m in params["adapt"]["methods"]} | {"analyze_adaptation"}
    expected |= {f"finetune_lora@{t}" for t in tasks}
    expected |= {f"serve_lora@{m}" for m in params["lora"]["methods"]}
    expected |= {f"serve_dynamic@{m}" for m in params["dynamic"]["methods"]}
    assert params["dynamic"]["methods"] == ["wemoe", "mow_merging"]  # the smoke run covers both
    assert ran(output) == expected
    full_table = pd.read_parquet(project / "reports" / "results.parquet")
    assert list(full_table.columns) == ["suite", "method", "router", "task", "metric", "value"]
    assert set(full_table["suite"]) == {"vision8", "vision8-lora"}
    lora = full_table[full_table["suite"] == "vision8-lora"]
    lora_rows = set(zip(lora["method"], lora["router"], lora["metric"]))
    named = {("finetuned", "oracle"), ("task_arithmetic", "none"), ("tr_merging", "tr"), ("twin_merging", "twin"),
             ("dawin", "dawin"), ("finetuned", "mad")}
    assert {(m, r) for m, r, _ in lora_rows} == named
    assert {(m, r) for m, r, metric in lora_rows if metric == "routing_accuracy"} == named - {("finetuned", "oracle"), ("task_arithmetic", "none")}
    assert lora[lora["metric"].isin(["accuracy", "routing_accuracy"])]["value"].between(0, 1).all()
    assert re.search(r"\(temperature, top_k\) = \(", output)  # TR's validation choice is printed
    dynamic = full_table[full_table["router"].isin(["wemoe", "mow"])]
    assert set(zip(dynamic["method"], dynamic["router"], dynamic["metric"])) == {
        ("wemoe", "wemoe", metric) for metric in ("accuracy", "peak_memory_bytes")
    } | {("mow_merging", "mow", metric) for metric in ("accuracy", "peak_memory_bytes", "routing_accuracy")}
    # wall-clock figures live only in the uncached timing files (reports/timings), never in the cached results
    assert not set(full_table["metric"]) & set(TIMING_METRICS)
    timings = read_timings((project / "reports" / "timings").glob("*.json"))
    assert set(timings["metric"]) == set(TIMING_METRICS) and (timings["value"] > 0).all()
    report = (project / "reports" / "report.md").read_text()
    assert "wemoe (task-unknown, per-input weights)" in report and "| MoW-Merging" in report
    table = full_table[full_table["suite"] == "vision8"]
    accuracy = table[table["metric"] == "accuracy"]
    rows = set(zip(accuracy["method"], accuracy["router"], accuracy["task"]))
    known = {(m, "oracle", t) for m in ("pretrained", "finetuned", *methods) for t in tasks}  # adapted: router none
    unknown = {(m, r, t) for m in route["methods"] for r in route["routers"] for t in tasks}
    unknown |= {(m, "none", t) for m in route["static"] for t in tasks}
    unknown |= {(m, r, t) for m, r in (("wemoe", "wemoe"), ("mow_merging", "mow")) for t in tasks}
    assert rows == known | unknown
    assert table[table["metric"].isin(["accuracy", "routing_accuracy"])]["value"].between(0, 1).all()
    memory = table[table["metric"] == "peak_memory_bytes"]
    assert set(memory["task"]) == {"all"} and (memory["value"] > 0).all()
    # peak memory for every (bank, router), static and per-input model; seconds per input where serving ran end to
    # end: the static models, MAD (the other routers are scored by one shared pass, routing/shared_pass.py) and the
    # per-input methods; seconds per step for each adaptation
    per_model = len(route["static"]) + len(params["dynamic"]["methods"])
    assert len(memory) == len(route["methods"]) * len(route["routers"]) + per_model
    served = len(route["methods"]) * ("mad" in route["routers"])
    seconds = timings[(timings["suite"] == "vision8") & (timings["metric"] == "seconds_per_input")]
    assert len(seconds) == served + per_model and set(seconds["task"]) == {"all"}
    assert set(timings[timings["metric"] == "median_seconds_per_step"]["method"]) == set(params["adapt"]["methods"])
    assert len(timings[timings["suite"] == "vision8-lora"]) == len(params["lora"]["methods"])
    assert re.search(r"tall_ta \w+: lam = 0\.[26] \(validation", output)  # the per-task lambda is printed
    assert re.search(r"ties scale = (0\.6|1\.0) for every task \(mean validation", output)  # the shared scale too
    assert (project / "reports" / "metrics.json").exists() and (project / "reports" / "results.csv").exists()
    report = (project / "reports" / "report.md").read_text()
    assert "Table 2 shape" in report and "figures/routing_confusion.png" in report
    assert "Table 6 shape" in report and "figures/ranks_adarank_ta.png" in report
    assert re.search(r"adapt@adarank_ta: 2 steps, entropy [\d.]+ -> [\d.]+", output)
    assert (project / "reports" / "figures" / "bhattacharyya.png").read_bytes()[:4] == b"\x89PNG"
    assert "TR-Merging's temperature and top-K" in report and "Serving cost of the task-unknown methods" in report
    assert "# Regime" in report and "# Paper vs this benchmark" in report
    assert re.search(r"task identity from base features \(logistic regression\), test +[\d.]+ ", output)  # regime printed


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


def test_the_pipelines_merge_equals_the_api_and_the_cli(project: Path, tmp_path: Path) -> None:
    """merge@ties' stored model is what ``mergeflow.merge`` and ``mergeflow merge`` give on the pipeline's own
    base and experts with the hyperparameters the stage recorded (its validation-chosen scale included)."""
    import torch

    import mergeflow as mf
    from mergeflow.cli import main
    from mergeflow.merging_io import load_merged
    from mergeflow.statedict.subdict import visual_state_dict

    artifacts = project / "artifacts"
    stored, meta = load_merged(artifacts / "merged" / "ties.safetensors")
    settings = {**meta["info"]["hyperparameters"], **meta["info"]["selected"]}
    assert set(settings) == {"k", "aggregate", "scale"}
    tasks = meta["info"]["tasks"]
    base = visual_state_dict(mf.load_checkpoint(artifacts / "base" / "clip.safetensors"))
    experts = {task: mf.load_checkpoint(artifacts / "experts" / f"{task}.safetensors") for task in tasks}
    api = mf.merge("ties", base, experts, **settings)
    mf.save_checkpoint(base, tmp_path / "base_visual.safetensors")
    argv = ["merge", "--method", "ties", "--base", str(tmp_path / "base_visual.safetensors"), "--out", str(tmp_path / "cli_ties.safetensors")]
    argv += [f"--expert={task}={artifacts / 'experts' / task}.safetensors" for task in tasks]
    argv += [f"--set={key}={value}" for key, value in settings.items()]
    assert main(argv) == 0
    cli = mf.load_checkpoint(tmp_path / "cli_ties.safetensors")
    assert isinstance(stored, dict) and set(stored) == set(api) == set(cli)
    for key in stored:
        assert torch.equal(stored[key], api[key]) and torch.equal(stored[key], cli[key]), key


def test_second_run_is_a_no_op(project: Path) -> None:
    assert ran(dvc(project, "repro")) == set()


def test_a_flipped_byte_in_an_output_is_noticed_and_rebuilt(project: Path) -> None:
    """Issue 18 item 5: one bit of an expert's weights (past the safetensors header: the file still loads) changed
    in the workspace; `dvc status` names the stage, and `dvc repro` restores the recorded bytes (from the run cache:
    the stage's deps and params are unchanged, so DVC checks out the output it recorded for them instead of
    rerunning) and nothing downstream reruns. (A flip that keeps the file's mtime and size is not noticed: DVC
    trusts its state database for unchanged files.)"""
    task = yaml.safe_load((project / "params.yaml").read_text())["suite"]["tasks"][0]
    expert = project / "artifacts" / "experts" / f"{task}.safetensors"
    original = expert.read_bytes()
    flipped = bytearray(original)
    flipped[len(flipped) // 2] ^= 0x01
    expert.write_bytes(bytes(flipped))
    assert f"finetune@{task}" in stale_stages(project)
    output = dvc(project, "repro")
    assert f"Stage 'finetune@{task}' is cached - skipping run, checking out outputs" in output, output[-3000:]
    assert ran(output) == set(), output[-3000:]
    assert expert.read_bytes() == original
    assert stale_stages(project) == set()


def test_one_merge_hyperparameter_reruns_only_that_method(project: Path) -> None:
    """tall_ta's λ grid: its merge and its routed evaluation rerun (and what collects results), nothing else. (tall_ta
    rather than ties: ties is also the smoke profile's feature model, static baseline and MoW's rule, so changing it
    reruns most of the graph, WEMoE's training included — minutes of CI for the same point.)"""
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    assert "tall_ta" in params["merge"]["methods"] and len(params["merge"]["methods"]) > 1
    params["merge"]["tall_ta"]["lam_grid"] = [0.4, 0.6]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    executed = ran(dvc(project, "repro"))
    assert {"merge@tall_ta", "evaluate_routed@tall_ta", "report"} <= executed
    # evaluate_static and analyze_routing read the models route.* names out of the whole artifacts/merged folder (DVC
    # cannot list a folder's files from a params list), so any merge's new output reruns them: a known
    # over-invalidation, named in README's pipeline notes; every other merge and everything upstream stays
    folder_readers = {"evaluate_static", "analyze_routing"}
    assert executed <= {"merge@tall_ta", "evaluate_routed@tall_ta", "results", "regime", "report"} | folder_readers
    assert not any(stage.startswith(("merge@", "finetune@", "adapt@", "serve_")) and stage != "merge@tall_ta" for stage in executed)


def test_a_routing_hyperparameter_reruns_only_calibration_and_what_follows(project: Path) -> None:
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["route"]["eps"] = 1e-3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    executed = ran(dvc(project, "repro"))
    calibration = {"calibrate"}
    routed = {f"evaluate_routed@{m}" for m in params["route"]["methods"]}
    assert calibration | routed | {"analyze_routing"} <= executed <= calibration | routed | {"analyze_routing", "results", "regime", "report"}


def test_a_tr_merging_hyperparameter_reruns_only_tr(project: Path) -> None:
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    params["lora"]["tr"]["temperatures"] = [0.1, 1.0]
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    part = project / "reports" / "parts" / "lora" / "tr.parquet"
    before = _md5(part)
    executed = ran(dvc(project, "repro"))
    # the report always follows (its timings changed); the results table and the regime only if TR's accuracy rows
    # did (timings are no longer in the parts, so an unchanged selection leaves the part byte-identical)
    downstream = {"results", "regime"} if _md5(part) != before else set()
    assert executed == {"serve_lora@tr", "report"} | downstream


def test_one_learning_rate_reruns_only_that_expert_chain(project: Path) -> None:
    params_path = project / "params.yaml"
    params = yaml.safe_load(params_path.read_text())
    changed, untouched = params["suite"]["tasks"][0], params["suite"]["tasks"][1]
    untouched_expert = _md5(project / "artifacts" / "experts" / f"{untouched}.safetensors")
    params["finetune"][changed]["lr"] *= 3
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    # Reproduce the chain's ends only; the merges downstream (every merge reads every task vector) are checked
    # by `dvc status` instead of rerun, which keeps this test fast.
    executed = ran(dvc(project, "repro", f"finetune@{changed}", "evaluate_finetuned"))
    assert executed == {f"finetune@{changed}", "evaluate_finetuned"}
    assert _md5(project / "artifacts" / "experts" / f"{untouched}.safetensors") == untouched_expert
    readers = {f"merge@{method}" for method in params["merge"]["methods"]}  # what reads the task vectors directly
    readers |= {f"adapt@{method}" for method in params["adapt"]["methods"]} | {"analyze_adaptation"}
    readers |= {f"serve_dynamic@{method}" for method in params["dynamic"]["methods"]}  # WEMoE/MoW mix task vectors per input
    assert readers <= stale_stages(project) <= readers | {"results"}


def test_forced_rerun_reproduces_the_expert_exactly(project: Path) -> None:
    task = yaml.safe_load((project / "params.yaml").read_text())["suite"]["tasks"][1]
    expert = project / "artifacts" / "experts" / f"{task}.safetensors"
    before = _md5(expert)
    assert ran(dvc(project, "repro", "--force", "--single-item", f"finetune@{task}")) == {f"finetune@{task}"}
    assert _md5(expert) == before
