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


def run_method(name: str, task_vectors: TaskVectors, overrides: Mapping[str, object] | None = None, *,
               device: torch.device | None = None) -> StateDict | MaskBank:
    """Merge with method ``name``: a delta to add to theta_0 (``returns == "delta"``) or a MaskBank (``"bank"``).
    An SVD method runs its SVDs on ``device``; the result is on the task vectors' device either way."""
    from mergeflow.runtime.device import CPU

    spec = get_method(name)
    on_device = spec.device_arguments(CPU if device is None else device)
    return spec.function(task_vectors, **resolve_hyperparameters(name, overrides), **on_device)
