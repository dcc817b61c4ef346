"""The merging methods by their results-table names: each declaration (``declarations/merging.py``, torch-free)
bound to its in-memory function, its streaming plan and, for linear methods, its scale parts."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from mergeflow.declarations.common import HyperParameter, Setting
from mergeflow.declarations.common import Value as Value  # re-exported: selection.py grids are of these
from mergeflow.declarations.merging import MERGE_DECLARATIONS, MergeDeclaration, merge_declaration
from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.basic import task_arithmetic, task_arithmetic_plan, weight_averaging, weight_averaging_plan
from mergeflow.merging.cart import cart, cart_parts, cart_plan
from mergeflow.merging.common import StateDict, TaskVectors
from mergeflow.merging.emr import emr_merge, emr_plan
from mergeflow.merging.iso import iso_c, iso_c_plan, iso_cts, iso_cts_plan
from mergeflow.merging.plan import MergePlan
from mergeflow.merging.scaled import ScaleParts, linear_parts
from mergeflow.merging.tall import consensus_ta, consensus_ta_plan, tall_ta, tall_ta_plan, tall_ties, tall_ties_plan
from mergeflow.merging.ties import ties_merge, ties_plan
from mergeflow.merging.tsv import tsv_m, tsv_m_plan
from mergeflow.runtime.device import CPU


@dataclass(frozen=True)
class MergeMethod:
    """A results-table method: its declaration (``declarations/merging.py``: what it returns, ``delta`` = one merged
    task vector or ``bank`` = a MaskBank, and its hyperparameters) bound to its plan (global passes + per-key
    kernel), which ``function`` runs in memory and ``merging.streaming`` on files."""

    declaration: MergeDeclaration
    function: Callable[..., StateDict | MaskBank]
    plan: Callable[..., MergePlan] | None = None  # (KeyVectors, **hyperparameters): the form the streaming runner uses
    # (task vectors, **hyperparameters but scale) -> offset + scale * direction: a scale grid then costs one merge
    scale_parts: ScaleParts | None = None
    # whether ``function`` and ``scale_parts`` take ``device=`` (the SVD methods: their per-key SVDs run there)
    takes_device: bool = False

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


_BINDINGS: dict[str, tuple[Callable[..., StateDict | MaskBank], Callable[..., MergePlan], ScaleParts | None]] = {
    "weight_averaging": (weight_averaging, weight_averaging_plan, None),
    "task_arithmetic": (task_arithmetic, task_arithmetic_plan, linear_parts(task_arithmetic)),
    "ties": (ties_merge, ties_plan, linear_parts(ties_merge)),
    "tall_ta": (tall_ta, tall_ta_plan, None),
    "tall_ties": (tall_ties, tall_ties_plan, None),
    "consensus_ta": (consensus_ta, consensus_ta_plan, linear_parts(consensus_ta)),
    "emr": (emr_merge, emr_plan, None),
    "tsv_m": (tsv_m, tsv_m_plan, linear_parts(tsv_m)),
    "cart": (cart, cart_plan, cart_parts),
    "iso_c": (iso_c, iso_c_plan, linear_parts(iso_c)),
    "iso_cts": (iso_cts, iso_cts_plan, linear_parts(iso_cts)),
}
assert set(_BINDINGS) == set(MERGE_DECLARATIONS), "every declared merging method is bound to its function, and only those"
ON_DEVICE = ("tsv_m", "cart", "iso_c", "iso_cts")  # the SVD methods (merging.spectral)
assert set(ON_DEVICE) <= set(_BINDINGS)
METHODS: dict[str, MergeMethod] = {
    name: MergeMethod(declaration, *_BINDINGS[name], takes_device=name in ON_DEVICE)
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


def check_meaningful(name: str, tasks: int, overrides: Mapping[str, object] | None = None) -> None:
    """Refuse settings that make method ``name`` meaningless for ``tasks`` experts, by its declared rule
    (``Declaration.check_meaningful``): params validation, the API, ``mergeflow merge`` and the merge@ stages call this."""
    merge_declaration(name).check_meaningful(resolve_hyperparameters(name, overrides), tasks)


NO_EFFECT_HINT = "check the hyperparameters (a threshold that selects nothing?) and that the experts differ from the base"


def require_effect(name: str, result: StateDict | MaskBank) -> None:
    """The generic guard behind the declared rules: a merge whose output is theta_0 unchanged is refused, whatever
    made it so. A delta with no nonzero entry; a mask bank in which some task's mask keeps no nonzero entry of the
    shared vector (or its rescaler is 0), so that task's model would be theta_0."""
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
               device: torch.device = CPU) -> StateDict | MaskBank:
    """Merge with method ``name``: a delta to add to theta_0 (``returns == "delta"``) or a MaskBank (``"bank"``).
    An SVD method runs its SVDs on ``device``; the result is on the task vectors' device either way. Degenerate
    settings (:func:`check_meaningful`) and a result equal to theta_0 (:func:`require_effect`) are refused."""
    spec = get_method(name)
    hyperparameters = resolve_hyperparameters(name, overrides)
    if isinstance(task_vectors, Mapping) and task_vectors:  # otherwise the method's own validation says what is wrong
        check_meaningful(name, len(task_vectors), hyperparameters)
    result = spec.function(task_vectors, **hyperparameters, **spec.device_arguments(device))
    require_effect(name, result)
    return result
