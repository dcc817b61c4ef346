"""The merging methods by their results-table names, with typed, validated hyperparameters for ``--set key=value``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, cast

from mergeflow.errors import MergeflowError
from mergeflow.merging.bank import MaskBank
from mergeflow.merging.basic import task_arithmetic, task_arithmetic_plan, weight_averaging, weight_averaging_plan
from mergeflow.merging.cart import cart, cart_parts, cart_plan
from mergeflow.merging.common import (
    StateDict,
    TaskVectors,
    check_choice,
    check_fraction,
    check_non_negative,
    check_non_negative_int,
    check_number,
)
from mergeflow.merging.emr import emr_merge, emr_plan
from mergeflow.merging.iso import iso_c, iso_c_plan, iso_cts, iso_cts_plan
from mergeflow.merging.plan import MergePlan
from mergeflow.merging.scaled import ScaleParts, linear_parts
from mergeflow.merging.tall import consensus_ta, consensus_ta_plan, tall_ta, tall_ta_plan, tall_ties, tall_ties_plan
from mergeflow.merging.ties import AGGREGATES, ties_merge, ties_plan
from mergeflow.merging.tsv import tsv_m, tsv_m_plan

Value = float | int | str | None
_KIND_WORDS = {float: "a number", int: "an integer", str: "a string"}


@dataclass(frozen=True)
class HyperParameter:
    """One tunable: its type, default, the check that rejects bad values, and the authors' validation grid."""

    name: str
    kind: type
    default: Value
    help: str
    check: Callable[[str, object], object]
    optional: bool = False
    grid: tuple[Value, ...] = ()

    def validate(self, value: object) -> Value:
        if value is None and self.optional:
            return None
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or isinstance(value, bool):
            raise MergeflowError(f"{self.name} must be {_KIND_WORDS[self.kind]}, got {value!r}")
        self.check(self.name, value)
        return cast(Value, value)  # an instance of kind, one of Value's types

    def parse(self, text: str) -> Value:
        """A command-line string to a checked value (``none``/``null`` for optional ones)."""
        if self.optional and text.strip().lower() in ("none", "null"):
            return None
        try:
            value: Value = self.kind(text.strip())
        except ValueError:
            raise MergeflowError(f"{self.name} must be {_KIND_WORDS[self.kind]}, got {text!r}") from None
        return self.validate(value)


@dataclass(frozen=True)
class MergeMethod:
    """A results-table method: what it returns (``delta``: one merged task vector; ``bank``: a MaskBank), and its
    plan (global passes + per-key kernel), which ``function`` runs in memory and ``merging.streaming`` on files."""

    name: str
    function: Callable[..., StateDict | MaskBank]
    returns: Literal["delta", "bank"]
    summary: str
    hyperparameters: tuple[HyperParameter, ...] = field(default=())
    plan: Callable[..., MergePlan] | None = None  # (KeyVectors, **hyperparameters): the form the streaming runner uses
    # (task vectors, **hyperparameters but scale) -> offset + scale * direction: a scale grid then costs one merge
    scale_parts: ScaleParts | None = None

    def defaults(self) -> dict[str, Value]:
        return {parameter.name: parameter.default for parameter in self.hyperparameters}


def _in_choices(choices: Sequence[str]) -> Callable[[str, object], object]:
    return partial(check_choice, choices=choices)


_TA_SCALE_GRID = tuple(round(0.1 * step, 1) for step in range(1, 11))
_SVD_SCALE_GRID = tuple(round(0.1 * step, 1) for step in range(1, 31))


def _scale(default: float, help_text: str, grid: tuple[Value, ...]) -> HyperParameter:
    return HyperParameter("scale", float, default, help_text, check_number, grid=grid)


def _keep_fraction(default: float) -> HyperParameter:
    return HyperParameter("k", float, default, "TIES keep fraction per task, in (0, 1]; 1 = no trim",
                          partial(check_fraction, allow_zero=False))


def _aggregate(default: str) -> HyperParameter:
    return HyperParameter("aggregate", str, default, "TIES disjoint merge: mean (dis-mean) or sum (dis-sum)", _in_choices(AGGREGATES))


_LAM = HyperParameter("lam", float, 0.4, "TALL lambda in m_t = |tau_t| > lam * |tau_MTL - tau_t| (>= 0)", check_non_negative,
                      grid=(0.2, 0.3, 0.4, 0.5, 0.6))

METHODS: dict[str, MergeMethod] = {
    method.name: method
    for method in (
        MergeMethod("weight_averaging", weight_averaging, "delta", "mean of the experts' weights", plan=weight_averaging_plan),
        MergeMethod("task_arithmetic", task_arithmetic, "delta", "theta_0 + scale * sum of task vectors",
                    (_scale(0.3, "coefficient of the task-vector sum", _TA_SCALE_GRID),), task_arithmetic_plan,
                    linear_parts(task_arithmetic)),
        MergeMethod("ties", ties_merge, "delta", "TIES: trim, elect sign, disjoint merge",
                    (_keep_fraction(0.2), _aggregate("mean"), _scale(1.0, "coefficient of the TIES vector", _TA_SCALE_GRID)), ties_plan,
                    linear_parts(ties_merge)),
        MergeMethod("tall_ta", tall_ta, "bank", "TALL masks over the task-arithmetic sum", (_LAM,), tall_ta_plan),
        MergeMethod("tall_ties", tall_ties, "bank", "TALL masks over the TIES dis-sum vector",
                    (_LAM, _keep_fraction(0.2), _aggregate("sum")), tall_ties_plan),
        MergeMethod("consensus_ta", consensus_ta, "delta", "TA sum restricted to entries >= min_agreement TALL masks share",
                    (_LAM, HyperParameter("min_agreement", int, 2, "tasks whose TALL mask must keep an entry (>= 0)",
                                          check_non_negative_int),
                     _scale(0.3, "coefficient of the consensus vector", _TA_SCALE_GRID)), consensus_ta_plan,
                    linear_parts(consensus_ta)),
        MergeMethod("emr", emr_merge, "bank", "EMR: unified vector, per-task masks and rescalers (no hyperparameters)", plan=emr_plan),
        MergeMethod("tsv_m", tsv_m, "delta", "Task Singular Vectors merge",
                    (_scale(1.0, "coefficient of the TSV-M delta", _SVD_SCALE_GRID),
                     HyperParameter("rank", float, None, "per-task rank fraction of r; none = int(r/T), the authors' rule",
                                    partial(check_fraction, allow_zero=False), optional=True)), tsv_m_plan,
                    linear_parts(tsv_m)),
        MergeMethod("cart", cart, "delta", "centred task vectors, low-rank, added to the average",
                    (_scale(2.0, "lambda multiplying the sum of low-rank centred task vectors", ()),
                     HyperParameter("rank", float, 0.12, "rank fraction of r kept per centred task vector, in [0, 1]",
                                    partial(check_fraction, allow_zero=True))), cart_plan, cart_parts),
        MergeMethod("iso_c", iso_c, "delta", "isotropic merge: flattened spectrum of the task-vector sum",
                    (_scale(1.0, "coefficient of the Iso-C delta", _SVD_SCALE_GRID),), iso_c_plan, linear_parts(iso_c)),
        MergeMethod("iso_cts", iso_cts, "delta", "isotropic merge in common and task-specific subspaces",
                    (_scale(1.0, "coefficient of the Iso-CTS delta", _SVD_SCALE_GRID),
                     HyperParameter("common", float, 0.8, "common-space fraction of r, in [0, 1]; 1 = Iso-C",
                                    partial(check_fraction, allow_zero=True))), iso_cts_plan, linear_parts(iso_cts)),
    )
}


def method_names() -> list[str]:
    return list(METHODS)


def get_method(name: str) -> MergeMethod:
    try:
        return METHODS[name]
    except KeyError:
        raise MergeflowError(f"unknown merging method {name!r}; known methods: {', '.join(METHODS)}") from None


def _parameter(method: MergeMethod, key: str) -> HyperParameter:
    for parameter in method.hyperparameters:
        if parameter.name == key:
            return parameter
    known = ", ".join(parameter.name for parameter in method.hyperparameters) or "none"
    raise MergeflowError(f"{method.name} has no hyperparameter {key!r}; its hyperparameters: {known}")


def resolve_hyperparameters(name: str, overrides: Mapping[str, object] | None = None) -> dict[str, Value]:
    """The defaults of method ``name`` updated with ``overrides``, every value type-checked and range-checked."""
    method = get_method(name)
    values = method.defaults()
    for key, value in (overrides or {}).items():
        values[key] = _parameter(method, key).validate(value)
    return values


def parse_assignments(name: str, assignments: Sequence[str]) -> dict[str, Value]:
    """``["k=0.3", "aggregate=sum"]`` (from ``--set``) to checked overrides for method ``name``."""
    method = get_method(name)
    overrides: dict[str, Value] = {}
    for assignment in assignments:
        key, separator, text = assignment.partition("=")
        if not separator or not key.strip():
            raise MergeflowError(f"expected key=value, got {assignment!r}")
        overrides[key.strip()] = _parameter(method, key.strip()).parse(text)
    return overrides


def run_method(name: str, task_vectors: TaskVectors, overrides: Mapping[str, object] | None = None) -> StateDict | MaskBank:
    """Merge with method ``name``: a delta to add to theta_0 (``returns == "delta"``) or a MaskBank (``"bank"``)."""
    return get_method(name).function(task_vectors, **resolve_hyperparameters(name, overrides))
