"""``runtime.device`` and ``runtime.autocast`` (src/mergeflow/runtime/): the spec grammar, resolve_device, the autocast
context, the params section, what DVC tracks, and every wired stage kind run through the same code with the device
passed explicitly.

On the CPU the explicit ``device=cpu`` run must give bit-identical tensors to the default path (which is itself
bit-identical to the code before devices existed). The ``cuda`` cases run the same code on a GPU and compare with the
CPU within a tolerance; they are skipped where torch sees no GPU.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from adaptation.adaptation_toy import C_PROJ, IN_PROJ, toy_base, toy_task_vectors

from mergeflow.adaptation.components import decompose_tsv_m
from mergeflow.adaptation.loop import adapt
from mergeflow.adaptation.model import adarank
from mergeflow.dynamic.methods import FitInputs, get_dynamic_method
from mergeflow.errors import MergeflowError
from mergeflow.evaluation.accuracy import predict
from mergeflow.lora.adapters import LoraSpec, add_lora, lora_factors, lora_state
from mergeflow.lora.bank import FactorBank, stack_factors
from mergeflow.lora.mixed_encoder import MixedEncoder
from mergeflow.lora.policies import DawinPolicy, TrPolicy, serve
from mergeflow.merging.common import add_to_base
from mergeflow.merging.registry import get_method, run_method
from mergeflow.models.backbone import create_clip, preprocess_config
from mergeflow.models.classifier import ImageClassifier
from mergeflow.params import load_params, parse_params
from mergeflow.routing.features import extract_features
from mergeflow.routing.routers import fit_router
from mergeflow.routing.served import Preprocess, RoutedClassifier, StaticClassifier
from mergeflow.runtime.device import CPU, autocast_context, grad_scaler, resolve_autocast, resolve_device, to_cpu
from mergeflow.selection import merge_selecting
from mergeflow.training.finetune import finetune_encoder
from mergeflow.training.loop import OptimConfig

GPU = torch.cuda.is_available()
needs_gpu = pytest.mark.skipif(not GPU, reason="torch sees no CUDA GPU here: the CUDA path is checked on CPU only")
no_gpu = pytest.mark.skipif(GPU, reason="a CUDA GPU is visible")
DEVICES = [pytest.param(CPU, id="cpu"), pytest.param(torch.device("cuda"), id="cuda", marks=needs_gpu)]


def _same(expected: torch.Tensor, got: torch.Tensor, device: torch.device, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Bit-identical on the CPU; within the tolerance on a GPU (other kernels, TF32 convolutions). Either way on the CPU."""
    assert got.device.type == "cpu"
    if device.type == "cpu":
        assert got.dtype == expected.dtype and torch.equal(got, expected)
    else:
        torch.testing.assert_close(got, expected, atol=atol, rtol=rtol)


def _same_classes(expected: torch.Tensor, got: torch.Tensor, device: torch.device) -> None:
    """Class predictions: identical on the CPU; on a GPU a near-tie may flip, so most must agree."""
    assert got.device.type == "cpu"
    if device.type == "cpu":
        assert torch.equal(got, expected)
    else:
        assert float((got == expected).float().mean()) >= 0.75


def _same_dicts(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], device: torch.device, **tolerance: float) -> None:
    assert list(got) == list(expected)
    for key in expected:
        _same(expected[key], got[key], device, **tolerance)


# -- the spec, resolve_device and autocast ---------------------------------------------------------------------------


def test_cpu_and_auto_resolve_to_the_cpu_without_a_gpu() -> None:
    assert resolve_device("cpu") == CPU
    assert resolve_device("auto") == (torch.device("cuda", torch.cuda.current_device()) if GPU else CPU)


@no_gpu
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_cuda_without_a_visible_gpu_is_one_error_saying_what_to_do(spec: str) -> None:
    with pytest.raises(MergeflowError, match=r"torch sees no CUDA GPU.*set runtime\.device to auto .* or cpu") as error:
        resolve_device(spec)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("spec", ["gpu", "CPU", "cuda:", "cuda:-1", "cuda:0:1", " cpu", "", 0, None])
def test_anything_else_is_refused(spec: object) -> None:
    with pytest.raises(MergeflowError, match=r"device must be one of auto, cpu, cuda, cuda:N"):
        resolve_device(spec)  # type: ignore[arg-type]


def test_the_cuda_branches_with_a_pretended_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Which GPU each spec names, checked on any machine (nothing is allocated)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda", 1)
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == CPU
    with pytest.raises(MergeflowError, match=r"torch sees 2 CUDA GPU\(s\) \(cuda:0 to cuda:1\)"):
        resolve_device("cuda:2")


def test_autocast_none_enters_no_context_and_bf16_runs_in_bfloat16() -> None:
    a, b = torch.randn(8, 8, generator=torch.Generator().manual_seed(0)), torch.randn(8, 8)
    with autocast_context("none", CPU):
        assert not torch.is_autocast_enabled("cpu")
        plain = a @ b
    assert plain.dtype == torch.float32 and torch.equal(plain, a @ b)
    with autocast_context("bf16", CPU):
        assert (a @ b).dtype == torch.bfloat16
    assert grad_scaler("none", CPU) is None and grad_scaler("bf16", CPU) is None


def test_fp16_autocast_is_cuda_only_and_other_modes_are_refused() -> None:
    with pytest.raises(MergeflowError, match=r"autocast fp16 runs on a CUDA device only.*bf16 .* or none"):
        resolve_autocast("fp16", CPU)
    with pytest.raises(MergeflowError, match="autocast fp16"):
        autocast_context("fp16", CPU)
    with pytest.raises(MergeflowError, match=r"autocast must be one of none, bf16, fp16, got 'fp8'"):
        autocast_context("fp8", CPU)
    assert resolve_autocast("bf16", CPU) == "bf16"


def test_to_cpu_gives_contiguous_cpu_tensors_and_keeps_cpu_ones() -> None:
    matrix = torch.randn(3, 4)
    moved = to_cpu({"t": matrix.T, "m": matrix})
    assert moved["t"].is_contiguous() and torch.equal(moved["t"], matrix.T)
    assert moved["m"] is matrix


# -- params and DVC --------------------------------------------------------------------------------------------------


def test_the_runtime_section_defaults_to_auto_without_autocast(root: Path) -> None:
    params = load_params(root / "params.yaml")
    assert (params.runtime.device, params.runtime.autocast) == ("auto", "none")
    raw = yaml.safe_load((root / "params.yaml").read_text())
    del raw["runtime"]
    assert parse_params(raw).runtime.device == "auto"  # a params file from before the section still loads
    raw["runtime"] = {"device": "cuda:1", "autocast": "bf16"}
    assert parse_params(raw).runtime.device == "cuda:1"  # valid anywhere; visibility is checked when a stage starts


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        ({"device": "gpu"}, r"runtime\.device: must be one of auto, cpu, cuda, cuda:N \(N a GPU index\) \(got 'gpu'\)"),
        ({"device": "cuda:x"}, r"runtime\.device: must be one of"),
        ({"device": 0}, r"runtime\.device: Input should be a valid string"),
        ({"autocast": "fp8"}, r"runtime\.autocast: must be one of none, bf16, fp16 \(got 'fp8'\)"),
        ({"autocast": True}, r"runtime\.autocast: Input should be a valid string"),
        ({"threads": 4}, r"runtime\.threads: unknown key"),
    ],
)
def test_a_bad_runtime_key_is_one_message_naming_it(root: Path, runtime: dict, expected: str) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["runtime"] = {**raw["runtime"], **runtime}
    with pytest.raises(MergeflowError, match=expected) as error:
        parse_params(raw)
    assert len(str(error.value).splitlines()) == 1


def test_dvc_tracks_autocast_for_the_model_stages_and_never_the_device(root: Path) -> None:
    """runtime.device is an execution choice (like the thread count); runtime.autocast changes numbers, so every stage
    that resolves the runtime (imports tasks/_runtime.py: test_dvc_deps keeps the deps equal to the imports) lists it."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    using = set()
    for name, stage in stages.items():
        body = stage.get("do", stage)
        params = body.get("params", [])
        assert not any(str(p) in ("runtime", "runtime.device") for p in params), name
        if "tasks/_runtime.py" in body["deps"]:
            using.add(name)
        assert ("runtime.autocast" in params) == (name in using), name
    assert {"finetune", "finetune_lora", "merge", "features", "evaluate_routed", "evaluate_static", "adapt", "serve_lora",
            "serve_dynamic"} <= using
    assert "heads" in using  # a sequence classifier's probe heads are trained on the runtime's device
    assert not {"prepare", "calibrate", "results", "report"} & using


@pytest.mark.parametrize(
    ("runtime", "expected"),
    [
        pytest.param({"device": "cuda"}, "torch sees no CUDA GPU", marks=no_gpu, id="cuda"),
        pytest.param({"device": "cpu", "autocast": "fp16"}, "autocast fp16 runs on a CUDA device only", id="fp16-on-cpu"),
    ],
)
def test_a_stage_refuses_an_unusable_runtime_before_reading_anything(root: Path, tmp_path: Path, runtime: dict, expected: str) -> None:
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["runtime"] = {**raw["runtime"], **runtime}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    done = subprocess.run([sys.executable, "-m", "tasks.evaluate_pretrained", "--params", str(tmp_path / "params.yaml")],
                          cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "stage evaluate_pretrained failed" in done.stderr and expected in done.stderr


# -- every wired stage kind, through the same code ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tower() -> tuple[torch.nn.Module, Preprocess, list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """A real tiny open_clip image tower (random weights), its preprocessing, two heads, uint8 images and labels."""
    torch.manual_seed(0)
    clip = create_clip("mf-vit-tiny")
    size, mean, std = preprocess_config(clip)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (12, 32, 32, 3), generator=generator).to(torch.uint8)
    labels = torch.randint(0, 3, (12,), generator=generator)
    width = clip.visual.output_dim
    heads = [F.normalize(torch.randn(classes, width, generator=generator), dim=-1) for classes in (3, 4)]
    return clip.visual.eval(), Preprocess(size, tuple(mean), tuple(std)), heads, images, labels


def _classifier(tower, encoder: torch.nn.Module | None = None) -> ImageClassifier:  # type: ignore[no-untyped-def]
    visual, preprocess, heads, _, _ = tower
    return ImageClassifier(copy.deepcopy(encoder or visual), heads[0], preprocess.image_size, preprocess.mean, preprocess.std)


def _task_vectors(visual: torch.nn.Module, seed: int = 2) -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return {task: {key: 0.05 * torch.randn(value.shape, generator=generator) for key, value in visual.state_dict().items()
                   if value.is_floating_point()} for task in ("a", "b")}


@pytest.mark.parametrize("device", DEVICES)
def test_evaluation_and_feature_extraction(tower, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    images = tower[3]
    reference = _classifier(tower)
    expected_classes, expected_features = predict(reference, images, 5), extract_features(reference.features, images, 5)
    on_device = _classifier(tower)
    _same_classes(expected_classes, predict(on_device, images, 5, device, "none"), device)
    _same(expected_features, extract_features(on_device.features, images, 5, device=device, autocast="none"), device, atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("device", DEVICES)
def test_fine_tuning(tower, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    _, _, _, images, labels = tower
    config = OptimConfig(lr=1e-3, steps=2, batch_size=4, weight_decay=0.1, warmup_steps=1, seed=0)
    reference, on_device = _classifier(tower), _classifier(tower)
    expected = finetune_encoder(reference, images, labels, config)
    got = finetune_encoder(on_device, images, labels, config, device=device, autocast="none")
    if device.type == "cpu":
        assert got == expected
    else:
        assert got == pytest.approx(expected, abs=1e-2)
    _same_dicts(reference.encoder.state_dict(), to_cpu(on_device.encoder.state_dict()), device, atol=1e-3, rtol=1e-3)


def test_bf16_autocast_changes_fine_tuning_only_a_little(tower) -> None:  # type: ignore[no-untyped-def]
    """The autocast path itself, on the CPU: bf16 forward passes train to nearby (not identical) losses."""
    _, _, _, images, labels = tower
    config = OptimConfig(lr=1e-3, steps=2, batch_size=4, weight_decay=0.1, warmup_steps=1, seed=0)
    plain = finetune_encoder(_classifier(tower), images, labels, config)
    mixed = finetune_encoder(_classifier(tower), images, labels, config, autocast="bf16")
    assert mixed != plain and mixed == pytest.approx(plain, abs=0.1)


@needs_gpu
@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_autocast_fine_tuning_on_cuda(tower, mode: str) -> None:  # type: ignore[no-untyped-def]
    """fp16 goes through the gradient scaler; both stay near the float32 CPU losses."""
    _, _, _, images, labels = tower
    config = OptimConfig(lr=1e-3, steps=2, batch_size=4, weight_decay=0.1, warmup_steps=1, seed=0)
    plain = finetune_encoder(_classifier(tower), images, labels, config)
    mixed = finetune_encoder(_classifier(tower), images, labels, config, device=torch.device("cuda"), autocast=mode)
    assert mixed == pytest.approx(plain, abs=0.1)


@pytest.mark.parametrize("device", DEVICES)
def test_routed_and_static_serving(tower, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    visual, preprocess, heads, images, _ = tower
    base = {key: value.detach().clone() for key, value in visual.state_dict().items()}
    vectors = _task_vectors(visual)
    averaged = add_to_base(base, {key: (vectors["a"][key] + vectors["b"][key]) / 2 for key in vectors["a"]})
    with torch.no_grad():
        features = [visual(preprocess(images[offset::2])) for offset in range(2)]
    router = fit_router("mad", ["a", "b"], [f.double() for f in features], 1e-3)
    tasks = torch.tensor([0, 1] * 6)

    def routed(**runtime: object) -> RoutedClassifier:
        return RoutedClassifier(copy.deepcopy(visual), averaged, lambda t: add_to_base(base, vectors["ab"[t]]), heads, ["a", "b"],
                                router, preprocess, **runtime)  # type: ignore[arg-type]

    expected, got = routed().predict(images), routed(device=device, autocast="none").predict(images)
    _same_classes(expected.tasks, got.tasks, device)
    _same_classes(expected.classes, got.classes, device)
    oracle = routed(device=device).predict(images, tasks)
    _same_classes(routed().predict(images, tasks).classes, oracle.classes, device)
    static = StaticClassifier(copy.deepcopy(visual), averaged, heads, preprocess).predict(images, tasks)
    moved = StaticClassifier(copy.deepcopy(visual), averaged, heads, preprocess, device=device).predict(images, tasks)
    assert torch.equal(moved.tasks, static.tasks)
    _same_classes(static.classes, moved.classes, device)


ADAPT_HEADS = [torch.randn((5, 3), generator=torch.Generator().manual_seed(50 + index)) for index in range(3)]


def _toy_forward(state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    hidden = torch.tanh(x @ state[IN_PROJ].T)[:, :8] + state["visual.transformer.resblocks.0.mlp.c_fc.bias"]
    return (hidden @ state[C_PROJ].T) @ state["visual.proj"]


def _toy_batches(step: int, task: int) -> torch.Tensor:
    return torch.randn((6, 4), generator=torch.Generator().manual_seed(1000 * step + task))


@pytest.mark.parametrize("device", DEVICES)
def test_adaptation(device: torch.device) -> None:
    decomposition = decompose_tsv_m(toy_base(), toy_task_vectors())
    expected = adapt(adarank(decomposition, prior=0.3), _toy_forward, ADAPT_HEADS, _toy_batches, 3, lr=1e-2)
    got = adapt(adarank(decomposition, prior=0.3), _toy_forward, ADAPT_HEADS, _toy_batches, 3, lr=1e-2, device=device, autocast="none")
    assert got.losses == (expected.losses if device.type == "cpu" else pytest.approx(expected.losses, abs=1e-4))
    _same_dicts(expected.state, got.state, device, atol=1e-4)
    _same(expected.coefficients, got.coefficients, device)
    assert got.kept_ranks == expected.kept_ranks


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["tsv_m", "cart", "iso_c", "iso_cts"])
def test_the_svd_merges_run_their_svds_on_the_device(tower, device: torch.device, method: str) -> None:  # type: ignore[no-untyped-def]
    vectors = _task_vectors(tower[0])
    assert get_method(method).takes_device
    expected = run_method(method, vectors)
    assert isinstance(expected, dict)
    got = run_method(method, vectors, device=device)
    assert isinstance(got, dict)
    _same_dicts(expected, got, device, atol=1e-5, rtol=1e-4)
    assert all(value.is_contiguous() for value in got.values())

    def score(candidate: object, task: str) -> float:
        assert isinstance(candidate, dict)
        return float(sum(value.double().sum() for value in candidate.values())) * (1.0 if task == "a" else -0.5)

    selected, _ = merge_selecting(method, vectors, {}, {"scale": [0.5, 1.0]}, score)
    on_device, _ = merge_selecting(method, vectors, {}, {"scale": [0.5, 1.0]}, score, device=device)
    assert isinstance(selected, dict) and isinstance(on_device, dict)
    _same_dicts(selected, on_device, device, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_element_wise_merges_ignore_the_device(tower, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    vectors = _task_vectors(tower[0])
    assert not get_method("ties").takes_device
    expected = run_method("ties", vectors)
    got = run_method("ties", vectors, device=device)
    assert isinstance(expected, dict) and isinstance(got, dict)
    assert all(torch.equal(expected[key], got[key]) for key in expected)  # computed on the CPU either way


def _lora_bank() -> FactorBank:
    spec, factors = LoraSpec(rank=4, alpha=8.0, dropout=0.0), []
    for expert in range(2):
        torch.manual_seed(0)
        module = add_lora(create_clip("mf-vit-tiny").visual.eval(), spec).eval()
        generator = torch.Generator().manual_seed(10 + expert)
        with torch.no_grad():
            for name, parameter in module.named_parameters():
                if ".lora_" in name:
                    parameter.copy_(0.05 * torch.randn(parameter.shape, generator=generator))
        factors.append(lora_factors(lora_state(module)))
    return stack_factors(["a", "b"], factors, [spec.scaling] * 2)


@pytest.mark.parametrize("device", DEVICES)
def test_lora_serving(tower, device: torch.device) -> None:  # type: ignore[no-untyped-def]
    visual, preprocess, heads, images, _ = tower
    bank, pixels, tasks = _lora_bank(), preprocess(images), torch.tensor([0, 1] * 6)
    rows = torch.rand(12, 2, generator=torch.Generator().manual_seed(3))
    reference, on_device = MixedEncoder(visual, bank), MixedEncoder(visual, bank, device=device, autocast="none")
    with torch.no_grad():
        _same(reference(pixels, rows), on_device(pixels, rows), device, atol=1e-2, rtol=1e-2)
        expected_samples, samples = ([extract_features(lambda batch, e=encoder: e(preprocess(batch), torch.zeros(len(batch), 2)),
                                                       images[offset::2], 4) for offset in range(2)]
                                     for encoder in (reference, on_device))
        expected = serve(TrPolicy(reference, expected_samples, 0.1, 1), heads, pixels, tasks)
        got = serve(TrPolicy(on_device, samples, 0.1, 1), heads, pixels, tasks)
        _same_classes(expected[0], got[0], device)
        _same_classes(expected[1], got[1], device)
        expected = serve(DawinPolicy(reference, heads), heads, pixels, tasks)
        got = serve(DawinPolicy(on_device, heads), heads, pixels, tasks)
        _same_classes(expected[0], got[0], device)
        _same(expected[1], got[1], device, atol=1e-3, rtol=1e-3)


def _fit_inputs(tower, **runtime: object) -> FitInputs:  # type: ignore[no-untyped-def]
    visual, preprocess, heads, images, _ = tower
    base = {key: value.detach().clone() for key, value in visual.state_dict().items()}
    vectors = _task_vectors(visual)
    pixels = preprocess(images)
    rule = add_to_base(base, {key: 0.3 * (vectors["a"][key] + vectors["b"][key]) for key in vectors["a"]})
    return FitInputs(copy.deepcopy(visual), base, vectors, heads, lambda seed: [pixels[:6], pixels[6:]],
                     lambda split, samples, seed: [pixels[:6], pixels[6:]], lambda name: rule, 4, **runtime)  # type: ignore[arg-type]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("method", "settings"), [("wemoe", {"steps": 2, "batch_size": 3}),
                                                  ("mow_merging", {"epochs": 2, "hidden": 8, "samples": 6, "sublayers": 2})])
def test_dynamic_methods(tower, device: torch.device, method: str, settings: dict) -> None:  # type: ignore[no-untyped-def]
    spec = get_dynamic_method(method)
    hyperparameters = spec.resolve(settings)
    pixels = tower[1](tower[3])
    torch.manual_seed(0)
    reference = spec.fit(_fit_inputs(tower), hyperparameters)
    torch.manual_seed(0)
    fitted = spec.fit(_fit_inputs(tower, device=device, autocast="none"), hyperparameters)
    _same_dicts(reference.learned, fitted.learned, device, atol=1e-3, rtol=1e-3)
    with torch.no_grad():
        expected, got = reference.serve(pixels), fitted.serve(pixels)
    _same(expected[0], got[0], device, atol=1e-2, rtol=1e-2)
    if expected[1] is not None:
        assert got[1] is not None
        _same(expected[1], got[1], device, atol=1e-3, rtol=1e-3)
    assert fitted.nbytes == reference.nbytes
