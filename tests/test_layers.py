"""The house the imports draw: entry points at the top, layers below, each importing only its
own layer or a lower one, and no circle between them.

Read from the source with `ast` (nothing is imported), so an import inside a function counts
as much as one at the top of a file.
"""

import ast
from pathlib import Path

from tests.conftest import ROOT

BASE = {"src.errors", "src.atomic", "src.precision", "src.device", "src.overrides"}
# bottom to top; a layer may import its own and those below. tuning and deployment share a
# floor: neither imports the other
FLOORS = [
    ["base"],
    ["data"],
    ["features"],
    ["classifiers"],
    ["evaluation"],
    ["modes"],
    ["tracking"],
    ["tuning", "deployment"],
    ["entry points"],
]
FLOOR = {layer: number for number, names in enumerate(FLOORS) for layer in names}


def source_files() -> list[Path]:
    return sorted([*(ROOT / "src").rglob("*.py"), *(ROOT / "hydra_plugins").rglob("*.py")])


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> tuple[str, str]:
    """(layer, unit) of a module: a unit is a base module, a layer's package, or one entry
    point; circles are looked for between units."""
    parts = module.split(".")
    if parts[0] == "hydra_plugins":
        return "entry points", "hydra_plugins"
    top = ".".join(parts[:2])
    if top in BASE:
        return "base", top
    if len(parts) > 1 and (ROOT / "src" / parts[1]).is_dir():
        assert parts[1] in FLOOR, f"src/{parts[1]}/ has no floor in tests/test_layers.py"
        return parts[1], parts[1]
    return "entry points", top


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every `src.*` module a file imports, anywhere in it (`from src.x import y` is src.x.y
    when y is a module, else src.x)."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
    return {m for m in found if m.split(".")[0] in ("src", "hydra_plugins")}


def import_graph() -> list[tuple[str, str]]:
    """(importer's path, imported module) for every src import in src/ and hydra_plugins/."""
    files = source_files()
    known = {module_name(path) for path in files}
    return [
        (path.relative_to(ROOT).as_posix(), module)
        for path in files
        for module in sorted(imported_modules(path, known))
    ]


def upward(graph: list[tuple[str, str]]) -> list[str]:
    problems = []
    for importer, module in graph:
        here, _ = layer_of(module_name(ROOT / importer))
        there, _ = layer_of(module)
        if FLOOR[there] > FLOOR[here]:
            problems.append(f"{importer} imports {module} (layer {there} above layer {here})")
        elif FLOOR[there] == FLOOR[here] and there != here:
            problems.append(f"{importer} imports {module} (layer {there} beside layer {here})")
    return problems


def circles(graph: list[tuple[str, str]]) -> list[str]:
    """Each circle between units, with the imports that close it."""
    edges: dict[str, dict[str, list[str]]] = {}
    for importer, module in graph:
        _, source = layer_of(module_name(ROOT / importer))
        _, target = layer_of(module)
        if source != target:
            edges.setdefault(source, {}).setdefault(target, []).append(f"{importer} → {module}")
    found, done = [], set()

    def visit(unit: str, path: list[str]) -> None:
        for target in sorted(edges.get(unit, {})):
            if target in path:
                loop = [*path[path.index(target) :], target]
                if frozenset(loop) not in done:
                    done.add(frozenset(loop))
                    steps = [edges[a][b][0] for a, b in zip(loop, loop[1:], strict=False)]
                    found.append(" → ".join(loop) + ": " + "; ".join(steps))
            elif target not in seen:
                seen.add(target)
                visit(target, [*path, target])

    for start in sorted(edges):
        seen = {start}
        visit(start, [start])
    return found


def test_no_import_runs_back_up_the_layers():
    problems = upward(import_graph())
    assert not problems, "imports that run back up:\n" + "\n".join(problems)


def test_no_circle_between_layers_or_entry_points():
    found = circles(import_graph())
    assert not found, "circles of imports:\n" + "\n".join(found)
