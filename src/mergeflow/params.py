"""params.yaml, validated at load: a wrong type, an unknown key or an unknown task stops with one message naming it."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from mergeflow.data.real_suite import real_suite_kind, real_tasks
from mergeflow.data.sources.glue import GLUE_TASKS, glue_task_of
from mergeflow.data.sources.real_task import RealTask
from mergeflow.data.suites import suite_kind, suite_tasks
from mergeflow.declarations.adaptation import adapt_declaration
from mergeflow.declarations.common import GRID_SUFFIX, Declaration, check_grids
from mergeflow.declarations.dynamic import dynamic_declaration
from mergeflow.declarations.lora import LORA_METHODS as LORA_METHODS  # re-exported: the names once, in declarations/lora.py
from mergeflow.declarations.lora import lora_declaration
from mergeflow.declarations.merging import merge_declaration
from mergeflow.declarations.routing import ROUTER_NAMES
from mergeflow.errors import MergeflowError
from mergeflow.profiles import EXTENDS, read_yaml, resolve_profile
from mergeflow.runtime.spec import AUTOCAST_HELP, DEVICE_HELP, is_autocast_mode, is_device_spec

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Section(BaseModel):
    # allow_inf_nan=False: no NaN or infinity in any float field (``lr: .inf`` passed ``gt=0``); a field that means
    # to allow one says so with ``Field(allow_inf_nan=True)``. Declared hyperparameters refuse them in their checks.
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class SplitSizes(_Section):
    """Samples per task and split."""

    train: PositiveInt
    val: PositiveInt
    test: PositiveInt


class SuiteParams(_Section):
    """Which suite, which of its tasks, and how its splits are drawn.

    ``source: synthetic`` (the default) is one of the offline suites by ``name``; ``source: real`` is a suite of one's
    own (any ``name``) whose tasks are defined in ``datasets`` (:mod:`mergeflow.data.real_suite`: images or text),
    optionally capped per split by ``max_examples``; ``image_size`` and ``samples`` then do not apply (images are
    preprocessed by the backbone's own preprocessing; the splits are the datasets'), a text suite's ``max_tokens`` is
    required (inputs are tokenised by the backbone's tokenizer at prepare), and ``cache_dir`` is the ``datasets`` cache."""

    name: str
    tasks: list[str] = Field(min_length=1)
    image_size: Annotated[int, Field(ge=8, le=512)] | None = None  # vision suites: pixels per side; null for text
    max_tokens: Annotated[int, Field(ge=2, le=512)] | None = None  # text suites: tokens per input; null for vision
    samples: SplitSizes | None = None  # offline suites: generated examples per split (required there)
    seed: NonNegativeInt = 0
    source: Literal["synthetic", "real"] = "synthetic"
    datasets: dict[str, str | dict[str, Any]] | None = None  # real suites: task -> TALL task name | dataset reference
    max_examples: SplitSizes | None = None  # real suites: at most this many rows per split (small runs)
    cache_dir: str | None = None  # real suites: the `datasets` cache of hub ids (default: its own)

    @property
    def kind(self) -> Literal["vision", "text"]:
        """Images or sentences: a real suite's by its datasets' columns, an offline suite's by its registry."""
        return real_suite_kind(self.real_tasks()) if self.source == "real" else suite_kind(self.name)

    def real_tasks(self) -> dict[str, RealTask]:
        """A real suite's task definitions (validated when params.yaml is loaded)."""
        if self.source != "real":
            raise MergeflowError(f"suite {self.name!r} is an offline suite, not a real one (suite.source: real)")
        return real_tasks(self.tasks, self.datasets)


class BackboneParams(_Section):
    """An open_clip model name and pretrained tag (null: pretrain it inside the pipeline), or a text model.

    ``architecture`` says what a text backbone is used as: ``encoder`` (a sentence encoder, mean-pooled, with class
    prototype heads; a vision suite's CLIP image tower) or ``sequence_classifier`` (a Hugging Face
    ``AutoModelForSequenceClassification`` body such as roberta-base or gpt2, each task scored by its own head:
    ``heads``) or ``causal_lm`` (a Hugging Face ``AutoModelForCausalLM`` such as Qwen2.5: each GLUE task's prompt,
    classified by the likelihood of its one-token label words, ``mergeflow.language.causal_lm``). ``frozen_in_merging``: regular expressions (full match) of encoder keys left out of every task vector,
    so every merge keeps the pretrained values there (AdaRank's RoBERTa / GPT-2 setting: the embeddings)."""

    model: str
    pretrained: str | None
    architecture: Literal["encoder", "sequence_classifier", "causal_lm"] = "encoder"
    frozen_in_merging: list[str] = Field(default_factory=list)  # regexes of keys left out of every task vector


class OptimParams(_Section):
    """AdamW with linear warm-up and cosine decay."""

    lr: PositiveFloat
    steps: PositiveInt
    batch_size: PositiveInt
    weight_decay: NonNegativeFloat
    warmup_steps: NonNegativeInt
    seed: NonNegativeInt


class HeadsParams(_Section):
    """Where a sequence classifier's task heads come from (``backbone.architecture: sequence_classifier``).

    ``checkpoints``: task -> a sequence-classifier folder or hub id whose head (``classifier.*``, ``score.*``) is the
    task's head, usually the same source as its brought expert (``finetune.<task>.checkpoint``). Every other task gets
    a linear probe: a fresh head trained on the pretrained body's frozen features with the ``probe`` recipe, which the
    body is then fine-tuned against (a frozen head, as the vision experts' zero-shot heads)."""

    checkpoints: dict[str, str] = Field(default_factory=dict)
    probe: OptimParams | None = None


class FinetuneParams(_Section):
    """One task's ``finetune.<task>`` block: the fine-tuning recipe, or ``checkpoint``, an expert brought instead of
    trained (a TALL-masks / open_clip ``.pt`` state dict, a ``.safetensors`` file, a Hugging Face CLIP folder or hub
    id; tasks/finetune.py converts it to the image tower's layout). With ``checkpoint`` the recipe keys may be left out."""

    lr: PositiveFloat | None = None
    steps: PositiveInt | None = None
    batch_size: PositiveInt | None = None
    weight_decay: NonNegativeFloat | None = None
    warmup_steps: NonNegativeInt | None = None
    seed: NonNegativeInt | None = None
    checkpoint: str | None = None

    @model_validator(mode="after")
    def _recipe_or_checkpoint(self) -> FinetuneParams:
        if self.checkpoint is not None and not self.checkpoint.strip():
            raise _KeyedError("checkpoint", "must be a path or hub id, or left out")
        if self.checkpoint is None:
            for key in OptimParams.model_fields:
                if getattr(self, key) is None:
                    raise _KeyedError(key, "missing (required unless `checkpoint` brings the expert)")
        return self

    def optim(self) -> dict[str, Any]:
        """The recipe as OptimConfig's keyword arguments (a block without ``checkpoint``)."""
        if self.checkpoint is not None:
            raise MergeflowError(f"this task's expert is brought ({self.checkpoint}), not trained")
        return {key: getattr(self, key) for key in OptimParams.model_fields}


class PretrainParams(OptimParams):
    """Contrastive pretraining on the generated caption corpus (used only when ``backbone.pretrained`` is null)."""

    corpus_size: PositiveInt


class EvaluateParams(_Section):
    batch_size: PositiveInt


HyperValue = float | int | str | None


class _KeyedError(ValueError):
    """A validation error deeper than pydantic's location: ``subkey`` is appended to it in the message."""

    def __init__(self, subkey: str, message: str) -> None:
        super().__init__(message)
        self.subkey = subkey


class MethodSettings(_Section):
    """One merging method's block: fixed hyperparameters, and ``<name>_grid`` lists chosen on validation (per task
    for TALL's ``lam``, one value for all tasks otherwise: ``mergeflow.selection``)."""

    hyperparameters: dict[str, HyperValue]
    grids: dict[str, list[HyperValue]]


class MergeParams(_Section):
    """``merge:``: ``methods`` (the merge@ stages, each writing its artifact and test accuracy) and one block per method, named as in the registry.

    Block values are checked by the merging registry's own HyperParameter checks, so params.yaml and
    ``--set key=value`` accept exactly the same values. A key left out takes the registry default.
    """

    methods: list[str] = Field(min_length=1)
    settings: dict[str, MethodSettings]

    @model_validator(mode="before")
    @classmethod
    def _blocks(cls, raw: object) -> object:
        if not isinstance(raw, dict):
            return raw
        settings = {str(name): _method_settings(str(name), block) for name, block in raw.items() if name != "methods"}
        return {**({"methods": raw["methods"]} if "methods" in raw else {}), "settings": settings}

    @model_validator(mode="after")
    def _methods_have_blocks(self) -> MergeParams:
        if len(set(self.methods)) != len(self.methods):
            raise _KeyedError("methods", "a method is listed twice")
        for name in self.methods:
            if name not in self.settings:
                _check_method_name(name, "methods")
                raise _KeyedError(name, "missing; every method in merge.methods needs its block ({} for no hyperparameters)")
        return self

    def method(self, name: str) -> MethodSettings:
        if name not in self.methods:
            raise MergeflowError(f"{name!r} is not in merge.methods ({', '.join(self.methods)})")
        return self.settings[name]


def _check_method_name(name: str, subkey: str) -> None:
    try:
        merge_declaration(name)
    except MergeflowError as exc:
        raise _KeyedError(subkey, str(exc)) from None


def _method_settings(name: str, block: object) -> dict[str, Any]:
    """Split a block into fixed values and ``<name>_grid`` lists, each value checked by the method's declaration."""
    _check_method_name(name, name)
    if block is None:
        block = {}
    if not isinstance(block, dict):
        raise _KeyedError(name, f"expected a mapping of hyperparameters ({{}} for none), got {block!r}")
    fixed: dict[str, Any] = {}
    grids: dict[str, list[Any]] = {}
    for key, value in block.items():
        key = str(key)
        target = key.removesuffix(GRID_SUFFIX) if key.endswith(GRID_SUFFIX) else None
        try:
            if target is None:
                fixed[key] = merge_declaration(name).parameter(key).validate(value)
                continue
            if not isinstance(value, list) or not value:
                raise MergeflowError(f"must be a non-empty list of candidate {target} values, got {value!r}")
            grids[target] = [merge_declaration(name).parameter(target).validate(item) for item in value]
            if len(set(grids[target])) != len(grids[target]):
                raise MergeflowError(f"has duplicate values: {value!r}")
        except MergeflowError as exc:
            raise _KeyedError(f"{name}.{key}", str(exc).removeprefix(f"{target or key} ")) from None
    for target in grids:
        if target in fixed:
            raise _KeyedError(f"{name}.{target}", f"give {target} or {target}{GRID_SUFFIX}, not both")
    try:
        check_grids(name, grids, fixed)
    except MergeflowError as exc:
        raise _KeyedError(name, str(exc).removeprefix(f"{name}: ")) from None
    return {"hyperparameters": fixed, "grids": grids}


class RejectParams(_Section):
    """The reject option: inputs farther from every task than the held-in ``quantile`` go to ``fallback``."""

    quantile: Annotated[float, Field(gt=0, lt=1)]
    fallback: str


class RoutingAnalysisParams(_Section):
    """The sweeps of the MAD analyses (Tables 6, F1, F2, F7, 5 of the paper)."""

    samples: list[Annotated[int, Field(ge=2)]] = Field(min_length=1)
    seeds: list[NonNegativeInt] = Field(min_length=1)
    eps: list[PositiveFloat] = Field(min_length=1)
    seen_tasks: list[str] = Field(min_length=1)


class RouteParams(_Section):
    """``route:``: task-unknown serving (MAD). Features of ``feature_model`` for ``samples`` training inputs per task
    (drawn with ``seed``) fit every router in ``routers``; ``methods`` (mask banks) are served through each router;
    ``static`` single models are the router=none baselines."""

    feature_models: list[str] = Field(min_length=1)
    feature_model: str
    normalize: bool
    samples: Annotated[int, Field(ge=2)]  # a covariance (and MAD's spread) of one sample is degenerate
    eps: PositiveFloat
    seed: NonNegativeInt
    routers: list[str] = Field(min_length=1)
    methods: list[str] = Field(min_length=1)
    static: list[str] = Field(min_length=1)
    batch_size: PositiveInt
    reject: RejectParams
    analysis: RoutingAnalysisParams

    @model_validator(mode="after")
    def _names_are_known(self) -> RouteParams:
        for name in self.routers:
            if name not in ROUTER_NAMES:
                raise _KeyedError("routers", f"unknown router {name!r}; known: {', '.join(ROUTER_NAMES)}")
        if self.feature_model not in self.feature_models:
            raise _KeyedError("feature_model", f"{self.feature_model!r} must be one of route.feature_models ({', '.join(self.feature_models)})")
        for field in ("routers", "methods", "static", "feature_models"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                raise _KeyedError(field, "a name is listed twice")
        return self


def _declared_blocks(raw: object, fields: tuple[str, ...], lookup: Callable[[str], Declaration]) -> object:
    """Split a section into its own ``fields`` and per-method blocks (every other key): each block is checked by the
    method's declaration and keeps only what it sets (the declaration holds the defaults); ``methods`` must name
    declared methods, each with its block (``{}`` for the defaults: DVC tracks the block as the stage's param)."""
    if not isinstance(raw, dict):
        return raw
    blocks: dict[str, dict[str, Any]] = {}
    for name, block in raw.items():
        if name in fields or name == "blocks":
            continue
        try:
            block = {} if block is None else block
            if not isinstance(block, dict):
                raise MergeflowError(f"expected a mapping of hyperparameters ({{}} for the defaults), got {block!r}")
            lookup(str(name)).resolve(block)
        except MergeflowError as exc:
            raise _KeyedError(str(name), str(exc)) from None
        blocks[str(name)] = dict(block)
    for name in raw.get("methods", []) or []:
        try:
            lookup(str(name))
        except MergeflowError as exc:
            raise _KeyedError("methods", str(exc)) from None
        if name not in blocks:
            raise _KeyedError(str(name), "missing; every listed method needs its block ({} for the declared defaults)")
    return {key: raw[key] for key in fields if key in raw} | {"blocks": blocks}


class AdaptationAnalysisParams(_Section):
    """The report's AdaRank analyses: the lambda-only / masks-only ablation and the amount of test data."""

    ablation: list[Literal["adarank_ta", "adarank_cart", "adarank_tsv_m", "adarank_iso_cts"]]
    data_fractions: list[Annotated[float, Field(gt=0, le=1)]]
    data_method: Literal["adarank_ta", "adarank_cart", "adarank_tsv_m", "adarank_iso_cts"]


class AdaptParams(_Section):
    """``adapt:``: test-time adaptation (AdaMerging, AdaRank) by entropy minimisation on unlabelled test batches.

    Each method in ``methods`` is an adapt@METHOD stage writing one merged model; the final step is reported."""

    methods: list[str]
    steps: NonNegativeInt
    lr: PositiveFloat
    batch_size: PositiveInt
    data_fraction: Annotated[float, Field(gt=0, le=1)]
    seed: NonNegativeInt
    learn: Literal["both", "lambda", "masks"]
    analysis: AdaptationAnalysisParams
    blocks: dict[str, dict[str, Any]]  # per method: what params.yaml sets (declarations/adaptation.py holds the rest)

    @model_validator(mode="before")
    @classmethod
    def _split_blocks(cls, raw: object) -> object:
        fields = ("methods", "steps", "lr", "batch_size", "data_fraction", "seed", "learn", "analysis")
        return _declared_blocks(raw, fields, adapt_declaration)

    def settings(self, method: str) -> dict[str, Any]:
        """Every hyperparameter of ``method`` (declared defaults filled in; unset optional values left out), as
        build_adaptive's keyword arguments."""
        if method not in self.methods:
            raise MergeflowError(f"{method!r} is not in adapt.methods ({', '.join(self.methods)})")
        resolved = adapt_declaration(method).resolve(self.blocks.get(method, {}))
        return {key: value for key, value in resolved.items() if value is not None}


class LoraAdapterParams(_Section):
    """peft LoRA on the image encoder: rank, alpha (scaling alpha / rank), dropout and the adapted module names."""

    rank: PositiveInt
    alpha: PositiveFloat
    dropout: Annotated[float, Field(ge=0, lt=1)]
    targets: list[str] = Field(min_length=1)


class LoraParams(_Section):
    """``lora:``: LoRA experts (finetune_lora@TASK) and the per-input methods served over them (serve_lora@METHOD);
    their results carry the suite name ``<suite.name>-lora``. A method's block lists only what differs from its
    declaration (src/mergeflow/declarations/lora.py)."""

    adapter: LoraAdapterParams
    train: OptimParams
    methods: list[str]  # may be empty: a backbone without LoRA-served layers (GPT-2's Conv1D MLPs) runs none
    checkpoints: dict[str, str] = Field(default_factory=dict)  # task -> peft adapter folder brought instead of trained
    batch_size: PositiveInt
    blocks: dict[str, dict[str, Any]]  # per method: what params.yaml sets (declarations/lora.py holds the rest)

    @model_validator(mode="before")
    @classmethod
    def _split_blocks(cls, raw: object) -> object:
        return _declared_blocks(raw, ("adapter", "train", "methods", "batch_size", "checkpoints"), lora_declaration)

    def settings(self, method: str) -> dict[str, Any]:
        """Every hyperparameter of ``method``, declared defaults filled in (whether or not it is in lora.methods:
        the stages check that)."""
        return lora_declaration(method).resolve(self.blocks.get(method, {}))


class DynamicParams(_Section):
    """``dynamic:``: trained per-input methods (serve_dynamic@METHOD: WEMoE, MoW-Merging), served task-unknown.

    A method's block lists only what differs from its declaration (src/mergeflow/declarations/dynamic.py)."""

    methods: list[str]
    batch_size: PositiveInt
    blocks: dict[str, dict[str, Any]]

    @model_validator(mode="before")
    @classmethod
    def _split_blocks(cls, raw: object) -> object:
        return _declared_blocks(raw, ("methods", "batch_size"), dynamic_declaration)

    def block(self, method: str) -> dict[str, Any]:
        """What params.yaml sets for ``method`` (the rest is the declared default)."""
        return dict(self.blocks.get(method, {}))


class RuntimeParams(_Section):
    """``runtime:``: where the model-running stages run and in which precision (src/mergeflow/runtime/).

    ``device`` (auto | cpu | cuda | cuda:N) is an execution choice like the thread count, not a DVC param: on the CPU
    every result is bit-identical whichever of auto and cpu is set. ``autocast`` (none | bf16 | fp16) changes the
    numbers, so every stage that runs a model forward lists ``runtime.autocast`` as a DVC param."""

    device: str = "auto"
    autocast: str = "none"

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not is_device_spec(value):
            raise ValueError(DEVICE_HELP)
        return value

    @field_validator("autocast")
    @classmethod
    def _autocast(cls, value: str) -> str:
        if not is_autocast_mode(value):
            raise ValueError(AUTOCAST_HELP)
        return value


class Params(_Section):
    """The whole of params.yaml."""

    suite: SuiteParams
    backbone: BackboneParams
    pretrain: PretrainParams
    finetune: dict[str, FinetuneParams]
    merge: MergeParams
    evaluate: EvaluateParams
    route: RouteParams
    adapt: AdaptParams
    lora: LoraParams
    dynamic: DynamicParams = DynamicParams(methods=[], batch_size=128, blocks={})
    runtime: RuntimeParams = RuntimeParams()
    heads: HeadsParams = HeadsParams()

    @model_validator(mode="after")
    def _tasks_are_known(self) -> Params:
        if self.suite.source == "real":
            try:
                self.suite.real_tasks()
            except MergeflowError as exc:
                raise ValueError(str(exc)) from None
            if len(set(self.suite.tasks)) != len(self.suite.tasks):
                raise ValueError("suite.tasks: a task is listed twice")
            text = self.suite.kind == "text"
            if text and self.suite.max_tokens is None:
                raise ValueError("suite.max_tokens: required for a real text suite (tokens per input, e.g. 128)")
            unused = "max_tokens" if not text else "image_size"
            if getattr(self.suite, unused) is not None:
                raise ValueError(f"suite.{unused}: does not apply to a real {self.suite.kind} suite; set it to null")
            return self._blocks_and_routes()
        for key in ("datasets", "max_examples", "cache_dir"):
            if getattr(self.suite, key) is not None:
                raise ValueError(f"suite.{key}: applies to real suites only (suite.source: real)")
        if self.suite.samples is None:
            raise ValueError("suite.samples: required for an offline suite (examples per split: train, val, test)")
        known = suite_tasks(self.suite.name)
        sized = "max_tokens" if suite_kind(self.suite.name) == "text" else "image_size"
        if getattr(self.suite, sized) is None:
            raise ValueError(f"suite.{sized}: required for the {suite_kind(self.suite.name)} suite {self.suite.name!r}")
        for task in self.suite.tasks:
            if task not in known:
                raise ValueError(f"suite.tasks: unknown task {task!r} for suite {self.suite.name!r}; known: {', '.join(known)}")
        if len(set(self.suite.tasks)) != len(self.suite.tasks):
            raise ValueError("suite.tasks: a task is listed twice")
        return self._blocks_and_routes()

    def _heads_have_a_source(self) -> None:
        """A sequence classifier's every task has a head: a checkpoint's, or a probe trained by the recipe. A causal
        LM's heads are its label words', so every task must be a GLUE task (its prompt and words are known)."""
        heads = self.heads
        if self.backbone.architecture == "causal_lm":
            self._causal_lm_tasks()
        if self.backbone.architecture != "sequence_classifier":
            if heads.checkpoints or heads.probe is not None:
                raise ValueError("heads: applies to backbone.architecture: sequence_classifier only; leave it out")
            return
        if self.suite.kind != "text":
            raise ValueError("backbone.architecture: sequence_classifier is a text backbone; a vision suite uses encoder")
        for task, source in heads.checkpoints.items():
            if task not in self.suite.tasks:
                raise ValueError(f"heads.checkpoints.{task}: not a task of suite.tasks ({', '.join(self.suite.tasks)})")
            if not source.strip():
                raise ValueError(f"heads.checkpoints.{task}: must be a model folder or hub id")
        headless = [task for task in self.suite.tasks if task not in heads.checkpoints]
        if headless and heads.probe is None:
            raise ValueError(f"heads: {', '.join(headless)} have no head checkpoint (heads.checkpoints.<task>) and there is "
                             "no heads.probe recipe to train one")

    def _causal_lm_tasks(self) -> None:
        if self.suite.source != "real" or self.suite.kind != "text":
            raise ValueError("backbone.architecture: causal_lm reads real text tasks (suite.source: real, GLUE tasks)")
        if self.backbone.pretrained is None:
            raise ValueError("backbone.pretrained: a causal LM's folder or hub id (e.g. Qwen/Qwen2.5-0.5B-Instruct)")
        for task, definition in self.suite.real_tasks().items():
            if glue_task_of(definition) is None:
                raise ValueError(f"suite.datasets.{task}: a causal LM classifies by a task's prompt and label words, "
                                 f"known for the GLUE tasks ({', '.join(GLUE_TASKS)}, or a local copy: "
                                 "{task: NAME, kind: disk, path: ...}); this definition is not one")
        brought = [task for task, block in self.finetune.items() if block.checkpoint is not None]
        if brought:
            raise ValueError(f"finetune.{brought[0]}.checkpoint: a causal LM's full experts are trained here; "
                             "bringing them is not supported")

    def _blocks_and_routes(self) -> Params:
        for task in self.finetune:
            if task not in self.suite.tasks:
                raise ValueError(f"finetune.{task}: not a task of suite.tasks ({', '.join(self.suite.tasks)})")
        for task in self.suite.tasks:
            if task not in self.finetune:
                raise ValueError(f"finetune.{task}: missing; every task in suite.tasks needs its fine-tuning block")
        self._heads_have_a_source()
        for task in self.lora.checkpoints:
            if task not in self.suite.tasks:
                raise ValueError(f"lora.checkpoints.{task}: not a task of suite.tasks ({', '.join(self.suite.tasks)})")
        self._route_names_are_merged()
        self._merges_are_meaningful()
        self._sizes_fit_the_data()
        too_many = [k for k in self.lora.settings("tr")["top_k"] if k > len(self.suite.tasks)]
        if too_many:
            raise ValueError(f"lora.tr.top_k: {too_many} exceed the {len(self.suite.tasks)} tasks of suite.tasks")
        return self

    def _route_names_are_merged(self) -> None:
        """Routing serves what merge@ stages write: mask banks routed, single models as features and baselines."""
        route = self.route
        for field, names, kind in (
            ("methods", route.methods, "bank"),
            ("static", route.static, "delta"),
            ("feature_models", route.feature_models, "delta"),
            ("reject.fallback", [route.reject.fallback], "delta"),
        ):
            for name in names:
                if field == "static" and name in self.adapt.methods:
                    continue  # an adapted model is one static model too (adapt@ writes it)
                if name not in self.merge.methods:
                    raise ValueError(f"route.{field}: {name!r} is not in merge.methods ({', '.join(self.merge.methods)})"
                                     + (" or adapt.methods" if field == "static" else ""))
                if merge_declaration(name).returns != kind:
                    wanted = "a mask-bank method (tall_ta, tall_ties, emr)" if kind == "bank" else "a single-model method"
                    raise ValueError(f"route.{field}: {name!r} is not {wanted}")
        if route.reject.fallback not in route.static:
            raise ValueError(f"route.reject.fallback: {route.reject.fallback!r} must also be in route.static (its predictions serve rejected inputs)")
        unknown = [task for task in route.analysis.seen_tasks if task not in self.suite.tasks]
        if unknown:
            raise ValueError(f"route.analysis.seen_tasks: {unknown} not in suite.tasks")
        if len(route.analysis.seen_tasks) >= len(self.suite.tasks):
            raise ValueError("route.analysis.seen_tasks: leave at least one task unseen (the unseen-task analysis needs one)")


    def _merges_are_meaningful(self) -> None:
        """Every merge@ stage's settings (each grid candidate too) against its method's declared "meaningful when"
        rule for the suite's task count (``Declaration.check_meaningful``): the stage would refuse them anyway."""
        tasks = len(self.suite.tasks)
        for name in self.merge.methods:
            settings = self.merge.settings[name]
            candidates = [dict(settings.hyperparameters)]
            for grid_name, grid in settings.grids.items():
                candidates = [{**settings.hyperparameters, grid_name: value} for value in grid]
            for candidate in candidates:
                declaration = merge_declaration(name)
                try:
                    declaration.check_meaningful(declaration.resolve(candidate), tasks)
                except MergeflowError as exc:
                    raise ValueError(f"merge.{name}: {str(exc).removeprefix(f'{name}: ')} (suite.tasks has {tasks})") from None

    def _sizes_fit_the_data(self) -> None:
        """Sizes drawn from a split must fit in it: calibration samples from the training split, a batch of
        unlabelled inputs from the adaptation pool (ceil(data_fraction * test) inputs per task). A real suite's sizes
        are its datasets' (suite.samples unset): they are known when prepare@ has read them, not here."""
        if self.suite.samples is None:
            return
        train = self.suite.samples.train
        if self.route.samples > train:
            raise ValueError(f"route.samples: {self.route.samples} calibration samples per task, but suite.samples.train "
                             f"draws only {train} training inputs per task")
        larger = [count for count in self.route.analysis.samples if count > train]
        if larger:
            raise ValueError(f"route.analysis.samples: {larger} exceed the {train} training inputs per task (suite.samples.train)")
        pool = max(1, math.ceil(self.adapt.data_fraction * self.suite.samples.test))
        if self.adapt.methods and self.adapt.batch_size > pool:
            raise ValueError(f"adapt.batch_size: {self.adapt.batch_size} inputs per batch, but the adaptation pool holds "
                             f"{pool} per task (adapt.data_fraction {self.adapt.data_fraction} of suite.samples.test "
                             f"{self.suite.samples.test})")


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        keyed = item.get("ctx", {}).get("error")
        if isinstance(keyed, _KeyedError):
            key, message = ".".join(part for part in (key, keyed.subkey) if part), str(keyed)
            lines.append(f"{source}: {key}: {message}")
            continue
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against params.yaml's documented keys)"
        elif "input" in item and item["type"] not in ("missing",) and not isinstance(item["input"], dict):
            message = f"{message} (got {item['input']!r})"
        lines.append(f"{source}: {key + ': ' if key else ''}{message}")
    return "\n".join(lines)


def parse_params(raw: object, source: str = "params.yaml") -> Params:
    """Validate an already-parsed params mapping."""
    if not isinstance(raw, dict):
        raise MergeflowError(f"{source}: expected a mapping of sections at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        raise MergeflowError(_describe(exc, source)) from None


def load_params(path: str | os.PathLike[str] = "params.yaml") -> Params:
    """Read and validate params.yaml, or a profile (``--params profiles/backbone.yaml``): an overlay is resolved first."""
    if not os.path.exists(path):
        raise MergeflowError(f"{path}: not found; run stages from the project root")
    raw = read_yaml(path, "params file")  # a directory, unreadable, not UTF-8, not YAML, a key twice: one line
    if isinstance(raw, dict) and EXTENDS in raw:
        raw = resolve_profile(path)
    return parse_params(raw, str(path))
