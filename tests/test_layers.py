"""The shape of ``monolith/`` holds: layers import only downwards, no import cycles, and no
imports inside functions except for an optional dependency or a measured start-up cost.

The layers are the picture at the top of docs/ARCHITECTURE.md. Each module belongs to the
first layer whose pattern matches its dotted name; a module may import modules of its own
layer or of a lower one. A new module that matches no pattern fails the test: say where it
belongs, here and in the picture.
"""

from __future__ import annotations

import ast
import fnmatch
import graphlib
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.profile_independent

ROOT = Path(__file__).resolve().parent.parent / "monolith"

#: Lowest first. Patterns are fnmatch patterns over dotted module names.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "core",
        (
            "monolith",
            "monolith.errors",
            "monolith.config",
            "monolith.logs",
            "monolith.state",
            "monolith.patch",
            "monolith.files",
            "monolith.s3url",
        ),
    ),
    (
        "state concepts",
        (
            "monolith.database",
            "monolith.database.*",
            "monolith.store",
            "monolith.store.*",
            "monolith.channels",
            "monolith.channels.*",
            "monolith.media",
            "monolith.media.*",
            "monolith.jobqueue",
            "monolith.jobqueue.*",
            "monolith.observability",
            "monolith.observability.*",
            "monolith.replication",
            "monolith.replication.*",
        ),
    ),
    (
        "faces and recipes",
        (
            "monolith.db",
            "monolith.jobs",
            "monolith.cache",
            "monolith.sessions",
            "monolith.ratelimit",
            "monolith.events",
            "monolith.fingerprint",
        ),
    ),
    ("components", ("monolith.services",)),
    (
        "domain models",
        (
            "monolith.shop",
            "monolith.shop.*.model",
            "monolith.shop.*.cache",
            "monolith.shop.*.effects",
            "monolith.shop.*",
            "monolith.accounts",
            "monolith.accounts.model",
            "monolith.accounts.cache",
        ),
    ),
    ("web plumbing", ("monolith.web", "monolith.web.*")),
    (
        "domain routes and jobs",
        (
            "monolith.shop.*.routes",
            "monolith.shop.*.jobs",
            "monolith.accounts.routes",
            "monolith.maintenance",
        ),
    ),
    (
        "wiring and commands",
        (
            "monolith.features",
            "monolith.app",
            "monolith.asgi",
            "monolith.server",
            "monolith.doctor",
            "monolith.cli",
            "monolith.cli.*",
            "monolith.__main__",
        ),
    ),
]

#: A function-level import must say why on its line or the line above.
JUSTIFIED = ("optional dependency", "start-up cost")


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(name: str) -> int:
    """The layer of a module; the most specific matching pattern wins (``shop.*.routes``
    over ``shop.*``): the one with the most literal segments."""
    matches = [
        (sum(part != "*" for part in pattern.split(".")), -index, index)
        for index, (_, patterns) in enumerate(LAYERS)
        for pattern in patterns
        if fnmatch.fnmatchcase(name, pattern)
    ]
    if not matches:
        raise AssertionError(f"{name} belongs to no layer: add it to LAYERS and the picture")
    return max(matches)[2]


def imports_of(name: str, path: Path, known: set[str]) -> list[Import]:
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[Import] = []

    def resolve(node: ast.ImportFrom) -> str:
        if not node.level:
            return node.module or ""
        base = package.split(".")
        base = base[: len(base) - (node.level - 1)]
        return ".".join([*base, *([node.module] if node.module else [])])

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                module = resolve(child)
                targets = [
                    f"{module}.{a.name}" if f"{module}.{a.name}" in known else module
                    for a in child.names
                ]
            else:
                inner = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
                visit(child, inner)
                continue
            for target in targets:
                if target == "monolith" or target.startswith("monolith."):
                    found.append(Import(name, target, child.lineno, in_function))

    visit(tree, False)
    return found


def all_imports() -> list[Import]:
    found = modules()
    known = set(found)
    return [i for name, path in found.items() for i in imports_of(name, path, known)]


def test_every_module_has_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_layers_import_only_downwards() -> None:
    wrong = [
        f"{i.source} ({LAYERS[layer_of(i.source)][0]}) imports {i.target} "
        f"({LAYERS[layer_of(i.target)][0]}) at line {i.line}"
        for i in all_imports()
        if i.target in modules() and layer_of(i.target) > layer_of(i.source)
    ]
    assert wrong == []


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {name: set() for name in modules()}
    for i in all_imports():
        if i.target in graph and i.target != i.source:
            graph[i.source].add(i.target)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail(f"import cycle: {' -> '.join(exc.args[1])}")


def test_imports_inside_functions_say_why() -> None:
    unexplained = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for i in imports_of(name, path, set(modules())):
            if not i.in_function:
                continue
            context = " ".join(lines[max(0, i.line - 3) : i.line]).lower()
            if not any(reason in context for reason in JUSTIFIED):
                unexplained.append(f"{path.relative_to(ROOT.parent)}:{i.line} imports {i.target}")
    assert unexplained == []


def test_the_rule_catches_what_it_is_for(tmp_path: Path) -> None:
    """The checks above would fail on an upward import and on a cycle."""
    assert layer_of("monolith.web.guards") > layer_of("monolith.accounts.model")
    assert layer_of("monolith.shop.orders.routes") > layer_of("monolith.web.body")
    assert layer_of("monolith.database.sqlite") < layer_of("monolith.db")
    graph = {"a": {"b"}, "b": {"a"}}
    with pytest.raises(graphlib.CycleError):
        graphlib.TopologicalSorter(graph).prepare()
