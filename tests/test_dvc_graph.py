"""dvc.yaml and the stage modules agree: every stage's module exists and declares the paths tasks/_paths.py writes."""

from __future__ import annotations

from pathlib import Path

import yaml

from tasks import _paths


def _stages(root: Path) -> dict:
    return yaml.safe_load((root / "dvc.yaml").read_text())["stages"]


def test_every_stage_runs_a_module_of_tasks(root: Path) -> None:
    for name, stage in _stages(root).items():
        body = stage.get("do", stage)
        module = body["cmd"].split()[2]
        assert module.startswith("tasks."), name
        assert (root / (module.replace(".", "/") + ".py")).exists(), name


def test_declared_outputs_match_the_paths_stages_write(root: Path) -> None:
    stages = _stages(root)
    item = "${item}"
    assert stages["finetune"]["do"]["outs"] == [str(_paths.expert_path(item)), str(_paths.task_vector_path(item))]
    assert stages["pretrain"]["outs"] == [str(_paths.BASE_MODEL)]
    assert stages["heads"]["outs"] == [str(_paths.HEADS)]
    assert str(_paths.split_path(item, "train")) in stages["finetune"]["do"]["deps"]
    assert str(_paths.head_path(item)) in stages["finetune"]["do"]["deps"]
    assert stages["merge"]["do"]["outs"] == [str(_paths.merged_path(item)), str(_paths.merged_part_path(item))]
    assert str(_paths.RESULT_PARTS) in stages["results"]["deps"]


def test_per_task_params_keep_reruns_narrow(root: Path) -> None:
    stages = _stages(root)
    assert "finetune.${item}" in stages["finetune"]["do"]["params"]
    assert "finetune" not in stages["finetune"]["do"]["params"]
    assert stages["merge"]["foreach"] == "${merge.methods}"
    assert "merge.${item}" in stages["merge"]["do"]["params"]
    assert not any(p == "merge" or p.startswith("merge.") for p in stages["merge"]["do"]["params"] if p != "merge.${item}")


def test_routing_stages_declare_their_paths_and_narrow_params(root: Path) -> None:
    stages = _stages(root)
    item = "${item}"
    assert stages["features"]["do"]["outs"] == [str(_paths.features_path(item))]
    assert stages["calibrate"]["outs"] == [str(_paths.router_path(item).parent)]
    assert stages["evaluate_routed"]["do"]["outs"] == [str(_paths.routed_part_path(item)), str(_paths.predictions_path(item))]
    assert stages["evaluate_static"]["outs"] == [str(_paths.static_part_path(item).parent),
                                                 str(_paths.static_predictions_path(item).parent)]
    assert stages["analyze_routing"]["outs"] == [str(_paths.ROUTING_ANALYSIS)]
    report_outs = [next(iter(out)) if isinstance(out, dict) else out for out in stages["report"]["outs"]]
    assert report_outs == [str(_paths.REPORT), str(_paths.FIGURES)]
    # N and eps reach calibration, never the cached features nor the static baselines.
    for knob in ("route.samples", "route.eps"):
        assert knob in stages["calibrate"]["params"]
        assert knob not in stages["features"]["do"]["params"] and knob not in stages["evaluate_static"]["params"]
        assert knob not in stages["evaluate_routed"]["do"]["params"]  # it sees them through the router files
    assert "artifacts/routers" in stages["evaluate_routed"]["do"]["deps"]
