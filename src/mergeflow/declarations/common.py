"""The declaration form every method shares: a HyperParameter (name, type, default, check, help, the authors' grid)
and a Declaration (name, summary, hyperparameters, settings it refuses), with the checks they use (torch-free)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from mergeflow.errors import MergeflowError

Value = float | int | str | None
GRID_SUFFIX = "_grid"  # params.yaml: ``<name>_grid`` lists candidates chosen on validation (mergeflow.selection)
_KIND_WORDS = {float: "a number", int: "an integer", str: "a string"}


def check_number(name: str, value: object) -> float:
    """A finite real number (bools refused: ``True`` is almost certainly a typo)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise MergeflowError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_fraction(name: str, value: object, *, allow_zero: bool) -> float:
    """A fraction in (0, 1] or, with ``allow_zero``, in [0, 1]."""
    number = check_number(name, value)
    low_ok = number >= 0 if allow_zero else number > 0
    if not (low_ok and number <= 1):
        interval = "[0, 1]" if allow_zero else "(0, 1]"
        raise MergeflowError(f"{name} must be in {interval}, got {value!r}")
    return number


def check_non_negative(name: str, value: object) -> float:
    number = check_number(name, value)
    if number < 0:
        raise MergeflowError(f"{name} must be >= 0, got {value!r}")
    return number


def check_positive(name: str, value: object) -> float:
    number = check_number(name, value)
    if number <= 0:
        raise MergeflowError(f"{name} must be > 0, got {value!r}")
    return number


def check_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MergeflowError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise MergeflowError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    if value not in choices:
        raise MergeflowError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
    return str(value)


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
class Declaration:
    """A method as its users see it: its name, a one-line summary and its hyperparameters. ``refuses`` names
    settings that mean nothing for this method, with the reason given to whoever sets them."""

    name: str
    summary: str
    hyperparameters: tuple[HyperParameter, ...] = ()
    refuses: Mapping[str, str] = field(default_factory=dict)

    def parameter(self, key: str) -> HyperParameter:
        for parameter in self.hyperparameters:
            if parameter.name == key:
                return parameter
        if key in self.refuses:
            raise MergeflowError(f"{self.name}: {self.refuses[key]}")
        known = ", ".join(parameter.name for parameter in self.hyperparameters) or "none"
        raise MergeflowError(f"{self.name} has no hyperparameter {key!r}; its hyperparameters: {known}")

    def defaults(self) -> dict[str, Value]:
        return {parameter.name: parameter.default for parameter in self.hyperparameters}

    def resolve(self, overrides: Mapping[str, object] | None = None, *, none_is_unset: bool = False) -> dict[str, Value]:
        """Every hyperparameter, checked: the declared default unless ``overrides`` gives a value (with
        ``none_is_unset``, a None override means "take the default", as keyword arguments left at None do)."""
        values = self.defaults()
        for key, value in (overrides or {}).items():
            if value is None and none_is_unset:
                continue
            values[key] = self.parameter(key).validate(value)
        return values

    def parse_assignments(self, assignments: Sequence[str]) -> dict[str, Value]:
        """``["k=0.3", "aggregate=sum"]`` (from ``--set``) to checked overrides."""
        overrides: dict[str, Value] = {}
        for assignment in assignments:
            key, separator, text = assignment.partition("=")
            if not separator or not key.strip():
                raise MergeflowError(f"expected key=value, got {assignment!r}")
            overrides[key.strip()] = self.parameter(key.strip()).parse(text)
        return overrides

    def describe(self) -> list[str]:
        """Lines for ``--help``: each hyperparameter with its type, default and help."""
        return [f"  {p.name} ({_KIND_WORDS[p.kind].split()[-1]}, default {p.default!r}): {p.help}" for p in self.hyperparameters]


def check_grids(method: str, grids: Mapping[str, object], fixed: Mapping[str, object]) -> None:
    """Refuse what selection cannot do: a hyperparameter given both as a value and a grid, or two grids at once
    (their product is not searched)."""
    for name in grids:
        if name in fixed:
            raise MergeflowError(f"{method}: give {name} or {name}{GRID_SUFFIX}, not both")
    if len(grids) > 1:
        raise MergeflowError(f"{method}: one grid at a time, got {', '.join(name + GRID_SUFFIX for name in grids)}")


def lookup(kind: str, declarations: Mapping[str, Declaration], name: str) -> Declaration:
    """``declarations[name]``, or one readable error naming the known ones."""
    try:
        return declarations[name]
    except KeyError:
        raise MergeflowError(f"unknown {kind} {name!r}; known: {', '.join(declarations)}") from None
