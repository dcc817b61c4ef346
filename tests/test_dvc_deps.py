"""Each stage's code dependencies in dvc.yaml cover what the stage imports, and name nothing it does not.

"What it imports" is the static import closure of its ``tasks.<stage>`` module inside this repository: every import
statement in every reached module, including those inside functions (a lazy import still runs), excluding
``if TYPE_CHECKING:`` blocks (they never run), plus the packages a dotted import passes through (Python runs their
``__init__``), plus the modules the merging registry imports by name on first use. A code dependency (a path under src/ or tasks/) that contains none of those files is too wide: editing
it would rerun the stage for nothing.

The grain is the subpackage: a stage names ``src/mergeflow/<subpackage>`` when it imports anything inside it, and the
top-level modules (``src/mergeflow/*.py``, ``tasks/*.py``) one by one. Listing every file cost more than it saved: DVC
rewrites the whole ``dvc.lock`` with a round-trip YAML parser after every stage, and with 3,317 dependency entries
that took 2.5 s per stage (1.7 s parsing, 0.9 s dumping), 160 s of a cold default run; at this grain the lock holds
half as many.

One module is imported by every stage and is no dependency of any: ``mergeflow.stage_server``, which decides how a
stage's interpreter starts (a warm fork instead of a fresh ``python -m``), never what the stage computes, like the
interpreter and DVC themselves. A cold default run through it gave every cached output the bytes plain processes gave
(2026-12-06), and tests/test_stage_server.py holds it to a plain process's behaviour. As a dependency, each edit to
it would rerun every stage for identical bytes.
"""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = Path("src/mergeflow/stage_server.py")


def _module_files() -> dict[str, Path]:
    """Dotted module name -> file, for src/mergeflow and tasks/."""
    names: dict[str, Path] = {}
    for base, root in ((ROOT / "src", ROOT / "src" / "mergeflow"), (ROOT, ROOT / "tasks")):
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The known modules ``name`` imports at run time (relative imports resolved, TYPE_CHECKING blocks skipped)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    pending: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        candidates: list[str] = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = (".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                    if node.level else (node.module or ""))
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for candidate in candidates:
            pieces = candidate.split(".")
            found.update(".".join(pieces[:i]) for i in range(1, len(pieces) + 1) if ".".join(pieces[:i]) in known)
        pending.extend(ast.iter_child_nodes(node))
    found.discard(name)
    return found | _lazy_imports(name)


def _lazy_imports(name: str) -> set[str]:
    """Modules ``name`` imports by name at run time (``importlib``), which no import statement shows: the merging
    registry imports a method's module on first use, and says which ones it may (``lazy_modules``)."""
    if name != "mergeflow.merging.registry":
        return set()
    from mergeflow.merging.registry import lazy_modules

    return lazy_modules()


def import_closure(module: str) -> set[Path]:
    """The files of every module ``module`` reaches at run time, its own included."""
    known = _module_files()
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        pending.extend(_imports(name, known[name], known))
    return {known[name].relative_to(ROOT) for name in seen}


def stage_code(root: Path = ROOT) -> dict[str, tuple[str, list[str]]]:
    """stage -> (its module, its code dependencies as written in dvc.yaml)."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    result = {}
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split()[2]
        result[name] = (module, [dep for dep in body.get("deps", []) if dep.startswith(("src/", "tasks/"))])
    return result


def _covered(path: Path, deps: list[str]) -> bool:
    return any(str(path) == dep or str(path).startswith(dep.rstrip("/") + "/") for dep in deps)


def test_every_stage_depends_on_what_it_imports_and_nothing_else() -> None:
    problems = []
    for stage, (module, deps) in stage_code().items():
        files = import_closure(module) - {LAUNCHER}
        missing = sorted(str(path) for path in files if not _covered(path, deps))
        unused = [dep for dep in deps if not any(_covered(path, [dep]) for path in files)]
        if missing:
            problems.append(f"{stage}: imports but does not depend on {', '.join(missing)}")
        if unused:
            problems.append(f"{stage}: depends on {', '.join(unused)} but imports nothing there")
    assert not problems, "\n".join(problems)


def test_the_closure_follows_lazy_imports_and_skips_type_checking_ones() -> None:
    files = {str(path) for path in import_closure("tasks.merge")}
    assert "tasks/merge.py" in files and "src/mergeflow/params.py" in files
    assert "src/mergeflow/declarations/merging.py" in files  # params.py validates merge blocks with it
    assert "src/mergeflow/api.py" not in files  # only mergeflow/__init__'s TYPE_CHECKING block names it


def test_code_dependencies_are_subpackages_or_top_level_modules() -> None:
    inside = [f"{stage}: {dep}" for stage, (_, deps) in stage_code().items() for dep in deps
              if dep.startswith("src/mergeflow/") and len(dep.split("/")) > 3]
    assert not inside, "name the subpackage folder instead of files inside it:\n" + "\n".join(inside)
