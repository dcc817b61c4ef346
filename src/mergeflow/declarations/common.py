"""The declaration form every method shares: a HyperParameter (name, type, default, check, help, the authors' grid)
and a Declaration (name, summary, hyperparameters, settings it refuses), with the checks they use (torch-free).

A hyperparameter is one number, integer, string or boolean; with ``many`` it is a non-empty list of them, each
checked (TR-Merging's candidate temperatures and top-K, chosen together on validation by the method itself)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from mergeflow.errors import MergeflowError

Value = float | int | str | None  # one value (bool is an int to the type checker); a grid's candidates are these
Setting = Value | list[Value]  # a resolved hyperparameter: a list only for ``many`` ones
GRID_SUFFIX = "_grid"  # params.yaml: ``<name>_grid`` lists candidates chosen on validation (mergeflow.selection)
_KIND_WORDS = {float: "a number", int: "an integer", str: "a string", bool: "true or false"}
_KIND_NAMES = {float: "number", int: "integer", str: "string", bool: "boolean"}
# A "meaningful when" rule of a declaration: (resolved settings, number of tasks/experts) -> None when the setting
# means something, else the reason it does not (one line, what to change), e.g. a threshold no entry can pass.
Rule = Callable[[Mapping[str, object], int], str | None]


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


def check_dropout(name: str, value: object) -> float:
    """A dropout probability in [0, 1): at 1 every unit is dropped and the layer trains on zeros."""
    number = check_number(name, value)
    if not 0 <= number < 1:
        raise MergeflowError(f"{name} must be in [0, 1), got {value!r}")
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
    """One tunable: its type, default, the check that rejects bad values, and the authors' validation grid. With
    ``many``, the value is a non-empty list of ``kind`` values (the default a tuple, resolved to a fresh list), each
    checked by ``check``."""

    name: str
    kind: type
    default: Value | tuple[Value, ...]
    help: str
    check: Callable[[str, object], object]
    optional: bool = False
    grid: tuple[Value, ...] = ()
    many: bool = False

    def initial(self) -> Setting:
        """The default as a resolved value (a ``many`` default as a new list)."""
        return list(self.default) if isinstance(self.default, tuple) else self.default

    def validate(self, value: object) -> Setting:
        if value is None and self.optional:
            return None
        if not self.many:
            return self._scalar(value)
        if not isinstance(value, list | tuple) or not value:
            raise MergeflowError(f"{self.name} must be a non-empty list of {_KIND_NAMES[self.kind]}s, got {value!r}")
        return [self._scalar(item) for item in value]

    def _scalar(self, value: object) -> Value:
        if self.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, self.kind) or (isinstance(value, bool) and self.kind is not bool):
            raise MergeflowError(f"{self.name} must be {_KIND_WORDS[self.kind]}, got {value!r}")
        self.check(self.name, value)
        return cast(Value, value)  # an instance of kind, one of Value's types

    def parse(self, text: str) -> Setting:
        """A command-line string to a checked value (``none``/``null`` for optional ones; ``a,b,c`` for ``many``)."""
        if self.optional and text.strip().lower() in ("none", "null"):
            return None
        if self.many:
            return self.validate([self._parsed(item, text) for item in text.split(",")])
        return self.validate(self._parsed(text, text))

    def _parsed(self, item: str, text: str) -> Value:
        word = item.strip()
        if self.kind is bool:
            if word.lower() in ("true", "false"):
                return word.lower() == "true"
        else:
            try:
                return cast(Value, self.kind(word))
            except ValueError:
                pass
        raise MergeflowError(f"{self.name} must be {_KIND_WORDS[self.kind]}, got {text!r}")

    def describe(self) -> str:
        """``name (type, default ...): help``, a line of ``--help``."""
        kind = f"list of {_KIND_NAMES[self.kind]}s" if self.many else _KIND_NAMES[self.kind]
        return f"  {self.name} ({kind}, default {self.initial()!r}): {self.help}"


@dataclass(frozen=True)
class Declaration:
    """A method as its users see it: its name, a one-line summary and its hyperparameters. ``refuses`` names
    settings that mean nothing for this method, with the reason given to whoever sets them.

    When the method is meaningful at all is declared too: ``min_tasks`` experts at least (``min_tasks_reason`` says
    why), and every rule in ``meaningful_when`` (settings vs the number of tasks: a threshold above the task count,
    a fraction that rounds to nothing). :meth:`check_meaningful` applies them; params validation, the API, the CLI
    and the stages all call it, so a degenerate configuration is refused by the same rule everywhere."""

    name: str
    summary: str
    hyperparameters: tuple[HyperParameter, ...] = ()
    refuses: Mapping[str, str] = field(default_factory=dict)
    min_tasks: int = 1
    min_tasks_reason: str = ""
    meaningful_when: tuple[Rule, ...] = ()

    def check_meaningful(self, settings: Mapping[str, object], tasks: int) -> None:
        """Refuse, in one line, settings (resolved: defaults filled in) that make the method meaningless for
        ``tasks`` experts."""
        if tasks < self.min_tasks:
            reason = f": {self.min_tasks_reason}" if self.min_tasks_reason else ""
            raise MergeflowError(f"{self.name} needs at least {self.min_tasks} experts, got {tasks}{reason}")
        for rule in self.meaningful_when:
            refusal = rule(settings, tasks)
            if refusal:
                raise MergeflowError(f"{self.name}: {refusal}")

    def parameter(self, key: str) -> HyperParameter:
        for parameter in self.hyperparameters:
            if parameter.name == key:
                return parameter
        if key in self.refuses:
            raise MergeflowError(f"{self.name}: {self.refuses[key]}")
        known = ", ".join(parameter.name for parameter in self.hyperparameters) or "none"
        raise MergeflowError(f"{self.name} has no hyperparameter {key!r}; its hyperparameters: {known}")

    def defaults(self) -> dict[str, Setting]:
        return {parameter.name: parameter.initial() for parameter in self.hyperparameters}

    def resolve(self, overrides: Mapping[str, object] | None = None, *, none_is_unset: bool = False) -> dict[str, Setting]:
        """Every hyperparameter, checked: the declared default unless ``overrides`` gives a value (with
        ``none_is_unset``, a None override means "take the default", as keyword arguments left at None do)."""
        values = self.defaults()
        for key, value in (overrides or {}).items():
            if value is None and none_is_unset:
                continue
            values[key] = self.parameter(key).validate(value)
        return values

    def parse_assignments(self, assignments: Sequence[str]) -> dict[str, Setting]:
        """``["k=0.3", "aggregate=sum"]`` (from ``--set``) to checked overrides."""
        overrides: dict[str, Setting] = {}
        for assignment in assignments:
            key, separator, text = assignment.partition("=")
            if not separator or not key.strip():
                raise MergeflowError(f"expected key=value, got {assignment!r}")
            overrides[key.strip()] = self.parameter(key.strip()).parse(text)
        return overrides

    def describe(self) -> list[str]:
        """Lines for ``--help``: each hyperparameter with its type, default and help."""
        return [parameter.describe() for parameter in self.hyperparameters]


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


@dataclass(frozen=True)
class ServedDeclaration(Declaration):
    """A method that serves the inputs itself (LoRA experts, trained per-input methods): its rows in the results table
    are named by ``method`` and ``router``."""

    method: str = ""
    router: str = ""


class DeclaredMethod:
    """What a serving method bound to its code (a LoRA or per-input registry entry) reads from its declaration,
    written once for both registries (the static merges' ``MergeMethod`` has a declaration of its own kind)."""

    declaration: ServedDeclaration

    @property
    def name(self) -> str:
        return self.declaration.name

    @property
    def method(self) -> str:
        return self.declaration.method

    @property
    def router(self) -> str:
        return self.declaration.router

    @property
    def summary(self) -> str:
        return self.declaration.summary

    @property
    def routes(self) -> bool:
        """Whether the method decides the task itself (its routing accuracy is reported): not task-known, not static."""
        return self.router not in ("oracle", "none")

    def resolve(self, overrides: Mapping[str, object] | None = None) -> dict[str, Setting]:
        return self.declaration.resolve(overrides)
