"""suite.source: real in params.yaml (torch-free checks, one error naming the key), finetune.<task>.checkpoint, the
split manifest, the backbone's preprocessing of a real split, and brought experts (TALL layout, HF folder, the refused
pickle)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

from mergeflow.errors import MergeflowError
from mergeflow.params import load_params, parse_params
from mergeflow.profiles import resolve_profile

ROOT = Path(__file__).resolve().parents[2]


def _tiny_real() -> dict:
    return resolve_profile(ROOT / "profiles" / "tiny_real.yaml")


def test_the_tiny_real_profile_validates_and_the_synthetic_default_is_unchanged() -> None:
    params = parse_params(_tiny_real())
    assert params.suite.source == "real" and params.suite.kind == "vision"
    tasks = params.suite.real_tasks()
    assert tasks["shapes"].reference.kind == "image_folder" and tasks["shapes"].templates[1] == "a {} shape."
    assert tasks["colors"].templates == ("a photo of the color {}.",)
    assert params.finetune["shapes"].checkpoint and params.finetune["colors"].optim()["steps"] == 2
    default = load_params(ROOT / "params.yaml")
    assert default.suite.source == "synthetic" and default.suite.datasets is None and default.suite.kind == "vision"


def test_a_tall_task_name_gives_its_public_reference_and_templates() -> None:
    raw = _tiny_real()
    raw["suite"]["datasets"]["shapes"] = "mnist"
    task = parse_params(raw).suite.real_tasks()["shapes"]
    assert task.name == "shapes" and task.reference.id == "ylecun/mnist" and task.class_names is not None


@pytest.mark.parametrize(("change", "message"), [
    (lambda s: s["datasets"].pop("colors"), "suite.datasets: no entry for ['colors']"),
    (lambda s: s["datasets"].update(extra="mnist"), "suite.datasets.extra: not a task of suite.tasks"),
    (lambda s: s["datasets"].update(colors="no_such_task"), "suite.datasets.colors: unknown published task 'no_such_task'"),
    (lambda s: s["datasets"]["colors"].update(kind="nope"), "suite.datasets.colors: dataset reference: unknown kind"),
    (lambda s: s["datasets"]["colors"].pop("image_column"), "suite.datasets.colors: dataset reference (disk): name exactly one input"),
    (lambda s: s["datasets"]["shapes"].update(templates=["no slot"]), "suite.datasets.shapes: task 'shapes': every template"),
    (lambda s: s["datasets"]["shapes"].update(colour="x"), "suite.datasets.shapes: dataset reference: unknown key(s) 'colour'"),
    (lambda s: s.update(max_examples={"train": 0, "val": 1, "test": 1}), "suite.max_examples.train"),
])
def test_a_wrong_real_suite_is_one_error_naming_the_key(change, message) -> None:
    raw = _tiny_real()
    change(raw["suite"])
    with pytest.raises(MergeflowError) as caught:
        parse_params(raw)
    assert message in str(caught.value)


def test_offline_suites_refuse_real_keys_and_need_samples() -> None:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["suite"]["datasets"] = {"handwritten_digits": "mnist"}
    with pytest.raises(MergeflowError, match="suite.datasets: applies to real suites only"):
        parse_params(raw)
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    del raw["suite"]["samples"]
    with pytest.raises(MergeflowError, match="suite.samples: required for an offline suite"):
        parse_params(raw)


def test_a_finetune_block_is_a_recipe_or_a_checkpoint() -> None:
    raw = _tiny_real()
    raw["finetune"]["colors"] = {"lr": 0.1}
    with pytest.raises(MergeflowError, match="finetune.colors.steps: missing"):
        parse_params(raw)
    with pytest.raises(MergeflowError, match="brought"):
        parse_params(_tiny_real()).finetune["shapes"].optim()


def test_a_manifest_round_trips(tmp_path: Path) -> None:
    from mergeflow.data.real_manifest import SplitManifest, is_manifest, read_manifest, write_manifest

    manifest = SplitManifest("t", "val", {"kind": "image_folder", "path": "x"}, "train", [3, 1, 2], "sha256:ab", ["a", "b"],
                             ["a {}."], "carved", None)
    write_manifest(tmp_path / "val.parquet", manifest)
    assert is_manifest(tmp_path / "val.parquet") and read_manifest(tmp_path / "val.parquet") == manifest


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, torch.Tensor]]:
    sys.path.insert(0, str(Path(__file__).parent))
    from tiny_real_kit import write_hf_clip, write_image_folder

    root = tmp_path_factory.mktemp("kit")
    write_image_folder(root / "shapes", {"train": 20, "test": 4})
    return root, write_hf_clip(root / "clip")


def test_a_real_split_is_decoded_with_open_clips_own_preprocessing(kit: tuple[Path, dict[str, torch.Tensor]]) -> None:
    import numpy as np
    import open_clip
    from PIL import Image

    from mergeflow.data.real_images import load_manifest_images
    from mergeflow.data.real_manifest import SplitManifest
    from mergeflow.models.backbone import register_builtin_configs

    root, _ = kit
    manifest = SplitManifest("shapes", "test", {"kind": "image_folder", "path": str(root / "shapes")}, "test", [2, 0], "h",
                             ["circle", "square"], ["{}"])
    images, labels = load_manifest_images(manifest, "mf-clip-tiny-quickgelu")
    assert images.shape == (2, 32, 32, 3) and images.dtype == torch.uint8 and labels.tolist() == [1, 0]
    register_builtin_configs()
    _, _, preprocess = open_clip.create_model_and_transforms("mf-clip-tiny-quickgelu")
    first = sorted((root / "shapes" / "test" / "square").iterdir())[0]  # row 2 of the ImageFolder (circle/000, circle/002, square/001, ...)
    expected = preprocess(Image.open(first).convert("RGB"))  # open_clip's preprocess, normalised
    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(3, 1, 1)
    ours = (images[0].permute(2, 0, 1).float() / 255 - mean) / std
    assert np.allclose(ours.numpy(), expected.numpy(), atol=1e-6)


def test_brought_experts_in_every_format_fit_the_base_and_a_pickle_is_refused(kit, tmp_path: Path) -> None:
    from tiny_real_kit import write_tall_expert

    from mergeflow.checkpoints.experts import load_brought_expert

    root, vision = kit
    base = {key.removeprefix("visual."): value for key, value in vision.items()}
    write_tall_expert(tmp_path / "nonlinear_finetuned.pt", vision, seed=3)
    tall = load_brought_expert(str(tmp_path / "nonlinear_finetuned.pt"), base, "finetune.x.checkpoint")
    assert set(tall) == set(base) and not torch.equal(tall["conv1.weight"], base["conv1.weight"])
    hf = load_brought_expert(f"hf:{root / 'clip'}", base, "finetune.x.checkpoint")
    assert all(torch.equal(hf[key], base[key]) for key in base)
    torch.save(torch.nn.Linear(2, 2), tmp_path / "module.pt")
    with pytest.raises(MergeflowError, match="mergeflow convert-checkpoint .* --trust-pickle"):
        load_brought_expert(str(tmp_path / "module.pt"), base, "finetune.x.checkpoint")
    smaller = {key: value for key, value in base.items() if key != "proj"} | {"proj": torch.zeros(3, 3)}
    with pytest.raises(MergeflowError, match="another architecture"):
        load_brought_expert(str(tmp_path / "nonlinear_finetuned.pt"), smaller, "finetune.x.checkpoint")
