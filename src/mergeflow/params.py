"""params.yaml, validated at load: a wrong type, an unknown key or an unknown task stops with one message naming it."""

from __future__ import annotations

import os
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from mergeflow.data.suites import suite_tasks
from mergeflow.errors import MergeflowError

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class SplitSizes(_Section):
    """Samples per task and split."""

    train: PositiveInt
    val: PositiveInt
    test: PositiveInt


class SuiteParams(_Section):
    """Which offline suite, which of its tasks, and how its splits are drawn."""

    name: str
    tasks: list[str] = Field(min_length=1)
    image_size: Annotated[int, Field(ge=8, le=512)]
    samples: SplitSizes
    seed: NonNegativeInt


class BackboneParams(_Section):
    """An open_clip model name and pretrained tag (null: pretrain it inside the pipeline)."""

    model: str
    pretrained: str | None


class OptimParams(_Section):
    """AdamW with linear warm-up and cosine decay."""

    lr: PositiveFloat
    steps: PositiveInt
    batch_size: PositiveInt
    weight_decay: NonNegativeFloat
    warmup_steps: NonNegativeInt
    seed: NonNegativeInt


class PretrainParams(OptimParams):
    """Contrastive pretraining on the generated caption corpus (used only when ``backbone.pretrained`` is null)."""

    corpus_size: PositiveInt


class EvaluateParams(_Section):
    batch_size: PositiveInt


class Params(_Section):
    """The whole of params.yaml."""

    suite: SuiteParams
    backbone: BackboneParams
    pretrain: PretrainParams
    finetune: dict[str, OptimParams]
    evaluate: EvaluateParams

    @model_validator(mode="after")
    def _tasks_are_known(self) -> Params:
        known = suite_tasks(self.suite.name)
        for task in self.suite.tasks:
            if task not in known:
                raise ValueError(f"suite.tasks: unknown task {task!r} for suite {self.suite.name!r}; known: {', '.join(known)}")
        if len(set(self.suite.tasks)) != len(self.suite.tasks):
            raise ValueError("suite.tasks: a task is listed twice")
        for task in self.finetune:
            if task not in self.suite.tasks:
                raise ValueError(f"finetune.{task}: not a task of suite.tasks ({', '.join(self.suite.tasks)})")
        for task in self.suite.tasks:
            if task not in self.finetune:
                raise ValueError(f"finetune.{task}: missing; every task in suite.tasks needs its fine-tuning block")
        return self


def _describe(error: ValidationError, source: str) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
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
    """Read and validate params.yaml."""
    if not os.path.exists(path):
        raise MergeflowError(f"{path}: not found; run stages from the project root")
    try:
        with open(path, encoding="utf-8") as handle:
            raw = yaml.safe_load(handle)
    except yaml.YAMLError as exc:
        raise MergeflowError(f"{path}: not valid YAML ({exc})") from exc
    return parse_params(raw, str(path))
