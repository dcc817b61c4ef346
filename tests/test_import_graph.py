"""No import cycle in src/mergeflow, between modules or between its subpackages (routing <-> lora was one).

Every import counts, including those inside functions: a lazy import hides a cycle from Python, not from a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def module_names(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``root`` (a package's __init__ is the package)."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def imported_modules(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that module ``name`` imports anywhere in its file (relative imports resolved)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        candidates: list[str] = []
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else [])) if node.level else (node.module or "")
            candidates = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found.update(candidate for candidate in candidates if candidate in known and candidate != name)
    return found


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the directed graph ``edges`` (as a closed path), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def import_graphs(root: Path) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(module graph, subpackage graph): ``a.b.c -> a.x.y`` becomes ``a.b -> a.x`` in the second."""
    known = module_names(root)
    modules = {name: imported_modules(name, path, known) for name, path in known.items()}
    packages: dict[str, set[str]] = {}
    for source, targets in modules.items():
        for target in targets:
            a, b = ".".join(source.split(".")[:2]), ".".join(target.split(".")[:2])
            if a != b:
                packages.setdefault(a, set()).add(b)
    return modules, packages


def test_mergeflow_has_no_import_cycle() -> None:
    modules, packages = import_graphs(SRC)
    assert "mergeflow.lora.policies" in modules and modules["mergeflow.lora.policies"], "the walk found no imports"
    assert find_cycle(modules) is None, f"module import cycle: {' -> '.join(find_cycle(modules) or [])}"
    assert find_cycle(packages) is None, f"subpackage import cycle: {' -> '.join(find_cycle(packages) or [])}"


def test_the_walk_finds_a_cycle_between_subpackages(tmp_path: Path) -> None:
    for relative, text in {
        "pkg/__init__.py": "", "pkg/a/__init__.py": "", "pkg/b/__init__.py": "",
        "pkg/a/one.py": "from pkg.b.two import f\n",
        "pkg/b/two.py": "def f():\n    from ..a import one\n",  # a lazy, relative import still closes the cycle
    }.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    modules, packages = import_graphs(tmp_path)
    assert find_cycle(modules) == ["pkg.a.one", "pkg.b.two", "pkg.a.one"]
    assert find_cycle(packages) == ["pkg.a", "pkg.b", "pkg.a"]
