"""The merging methods by their results-table names: each declaration (``declarations/merging.py``, torch-free)
bound to its in-memory function, its streaming plan and, for linear methods, its scale parts."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from mergeflow.declarations.common import HyperParameter, Setting
from mergeflow.declarations.common import Value as Value  # re-exported: selection.py grids are of these
from mergeflow.declarations.merging import MERGE_DECLARATIONS, MergeDeclaration, merge_declaration
from mergeflow.errors import MergeflowError

if TYPE_CHECKING:  # the method modules are imported when a method is first used, not with the registry
    import torch

    from mergeflow.merging.bank import MaskBank
    from mergeflow.merging.common import StateDict, TaskVectors
    from mergeflow.merging.plan import MergePlan
    from mergeflow.merging.scaled import ScaleParts


@dataclass(frozen=True)
class Binding:
    """Where a method's code lives: ``module``'s ``function`` (in memory) and ``plan`` (streaming), and its scale
    parts: ``"linear"`` (``scaled.linear_parts(function)``), the name of a function of ``module``, or None."""

    module: str
    function: str
    plan: str
    scale_parts: str | None = None

    def load(self, name: str) -> Callable[..., object]:
        return getattr(importlib.import_module(self.module), name)


@dataclass(frozen=True)
class MergeMethod:
    """A results-table method: its declaration (``declarations/merging.py``: what it returns, ``delta`` = one merged
    task vector or ``bank`` = a MaskBank, and its hyperparameters) bound to its plan (global passes + per-key
    kernel), which ``function`` runs in memory and ``merging.streaming`` on files. The method's module is imported
    on first use of ``function``, ``plan`` or ``scale_parts`` (so ``merge ties`` does not import the SVD methods)."""

    declaration: MergeDeclaration
    binding: Binding
    # whether ``function`` and ``scale_parts`` take ``device=`` (the SVD methods: their per-key SVDs run there)
    takes_device: bool = False

    @property
    def function(self) -> Callable[..., StateDict | MaskBank]:
        return self.binding.load(self.binding.function)  # type: ignore[return-value]

    @property
    def plan(self) -> Callable[..., MergePlan]:
        """(KeyVectors, **hyperparameters): the form the streaming runner uses."""
        return self.binding.load(self.binding.plan)  # type: ignore[return-value]

    @property
    def scale_parts(self) -> ScaleParts | None:
        """(task vectors, **hyperparameters but scale) -> offset + scale * direction: a scale grid then costs one merge."""
        if self.binding.scale_parts is None:
            return None
        if self.binding.scale_parts == "linear":
            from mergeflow.merging.scaled import linear_parts

            return linear_parts(self.function)  # type: ignore[arg-type]
        return self.binding.load(self.binding.scale_parts)  # type: ignore[return-value]

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def returns(self) -> Literal["delta", "bank"]:
        return self.declaration.returns

    @property
    def summary(self) -> str:
        return self.declaration.summary

    @property
    def hyperparameters(self) -> tuple[HyperParameter, ...]:
        return self.declaration.hyperparameters

    def defaults(self) -> dict[str, Setting]:
        return self.declaration.defaults()

    def device_arguments(self, device: torch.device) -> dict[str, torch.device]:
        """``{"device": device}`` for a method whose SVDs can run on a device; nothing for the element-wise ones,
        which stay on the task vectors' device (the CPU)."""
        return {"device": device} if self.takes_device else {}


def _bind(module: str, function: str, scale_parts: str | None = None) -> Binding:
    return Binding(f"mergeflow.merging.{module}", function, f"{function.removesuffix('_merge')}_plan", scale_parts)


_BINDINGS: dict[str, Binding] = {
    "weight_averaging": _bind("basic", "weight_averaging"),
    "task_arithmetic": _bind("basic", "task_arithmetic", "linear"),
    "ties": _bind("ties", "ties_merge", "linear"),
    "tall_ta": _bind("tall", "tall_ta"),
    "tall_ties": _bind("tall", "tall_ties"),
    "consensus_ta": _bind("tall", "consensus_ta", "linear"),
    "emr": _bind("emr", "emr_merge"),
    "tsv_m": _bind("tsv", "tsv_m", "linear"),
    "cart": _bind("cart", "cart", "cart_parts"),
    "iso_c": _bind("iso", "iso_c", "linear"),
    "iso_cts": _bind("iso", "iso_cts", "linear"),
}
assert set(_BINDINGS) == set(MERGE_DECLARATIONS), "every declared merging method is bound to its function, and only those"
ON_DEVICE = ("tsv_m", "cart", "iso_c", "iso_cts")  # the SVD methods (merging.spectral)
assert set(ON_DEVICE) <= set(_BINDINGS)
METHODS: dict[str, MergeMethod] = {
    name: MergeMethod(declaration, _BINDINGS[name], takes_device=name in ON_DEVICE)
    for name, declaration in MERGE_DECLARATIONS.items()
}


def lazy_modules() -> set[str]:
    """Every module the registry may import when a method is used: tests/test_dvc_deps.py adds these to the import
    closure of whatever imports the registry, so DVC reruns a merge stage when its method's module changes."""
    return {binding.module for binding in _BINDINGS.values()}


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> MergeMethod:
    return METHODS[merge_declaration(name).name]


def resolve_hyperparameters(name: str, overrides: Mapping[str, object] | None = None) -> dict[str, Setting]:
    """The defaults of method ``name`` updated with ``overrides``, every value type-checked and range-checked."""
    return merge_declaration(name).resolve(overrides)


def parse_assignments(name: str, assignments: Sequence[str]) -> dict[str, Setting]:
    """``["k=0.3", "aggregate=sum"]`` (from ``--set``) to checked overrides for method ``name``."""
    return merge_declaration(name).parse_assignments(assignments)


def check_meaningful(name: str, tasks: int, overrides: Mapping[str, object] | None = None) -> None:
    """Refuse settings that make method ``name`` meaningless for ``tasks`` experts, by its declared rule
    (``Declaration.check_meaningful``): params validation, the API, ``mergeflow merge`` and the merge@ stages call this."""
    merge_declaration(name).check_meaningful(resolve_hyperparameters(name, overrides), tasks)


NO_EFFECT_HINT = "check the hyperparameters (a threshold that selects nothing?) and that the experts differ from the base"


def require_effect(name: str, result: StateDict | MaskBank) -> None:
    """The generic guard behind the declared rules: a merge whose output is theta_0 unchanged is refused, whatever
    made it so. A delta with no nonzero entry; a mask bank in which some task's mask keeps no nonzero entry of the
    shared vector (or its rescaler is 0), so that task's model would be theta_0."""
    from mergeflow.merging.bank import MaskBank

    if isinstance(result, MaskBank):
        unchanged = [task for task, masks in result.masks.items()
                     if result.rescalers.get(task, 1.0) == 0
                     or not any(bool((mask & (result.merged[key] != 0)).any()) for key, mask in masks.items())]
        if unchanged:
            raise MergeflowError(f"{name}: the model of task(s) {', '.join(unchanged)} would be theta_0 unchanged (the mask "
                                 f"keeps no nonzero entry of the shared vector); {NO_EFFECT_HINT}")
    elif not any(bool(value.any()) for value in result.values()):
        raise MergeflowError(f"{name}: the merged model would be theta_0 unchanged (every entry of the merged task vector "
                             f"is zero); {NO_EFFECT_HINT}")


def run_method(name: str, task_vectors: TaskVectors, overrides: Mapping[str, object] | None = None, *,
               device: torch.device | None = None) -> StateDict | MaskBank:
    """Merge with method ``name``: a delta to add to theta_0 (``returns == "delta"``) or a MaskBank (``"bank"``).
    An SVD method runs its SVDs on ``device``; the result is on the task vectors' device either way. Degenerate
    settings (:func:`check_meaningful`) and a result equal to theta_0 (:func:`require_effect`) are refused."""
    from mergeflow.runtime.device import CPU

    spec = get_method(name)
    hyperparameters = resolve_hyperparameters(name, overrides)
    if isinstance(task_vectors, Mapping) and task_vectors:  # otherwise the method's own validation says what is wrong
        check_meaningful(name, len(task_vectors), hyperparameters)
    result = spec.function(task_vectors, **hyperparameters, **spec.device_arguments(CPU if device is None else device))
    require_effect(name, result)
    return result
