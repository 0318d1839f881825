"""The package layout: imports flow one way, no cycles, small files, old paths still load.

The allowed order is written once, in ``LAYERS``: a module may import its own layer or any layer
below it, never one above. Every ``import`` / ``from ... import`` in every module counts, the ones
inside functions included (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "seglab"

#: Bottom to top. A module may import its own layer and the layers before it.
LAYERS: list[set[str]] = [
    {"seglab"},  # the package root: version and the old-path aliases
    {"data", "models", "losses", "metrics"},
    {"tasks"},
    {"runs", "inference", "compare"},
    {"cli"},
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    top = module.split(".")[1] if "." in module else "seglab"
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: top-level package {top!r} is in no layer of LAYERS")


def seglab_imports(path: Path, known: set[str]) -> set[str]:
    """The seglab modules ``path`` imports (``from a.b import c`` is ``a.b.c`` if a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            ]
        else:
            continue
        found |= {n for n in names if n == "seglab" or n.startswith("seglab.")}
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PKG.rglob("*.py") if p.name != "__main__.py"}
    known = set(files)
    graph = {m: seglab_imports(p, known) - {m} for m, p in files.items()}
    # an import of an alias (an old path) or an unknown name must still be a real module
    for m, deps in graph.items():
        for d in deps:
            assert d in known, f"{m} imports {d}, which is not a module of seglab/"
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
        for m, deps in graph.items()
        for d in deps
        if layer_of(d) > layer_of(m)
    )


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_flow_one_way():
    assert upward_imports(import_graph()) == []


def test_checker_finds_a_cycle_and_an_upward_import():
    graph = {"seglab.data.a": {"seglab.data.b"}, "seglab.data.b": {"seglab.data.a"}}
    assert find_cycle(graph) == ["seglab.data.a", "seglab.data.b", "seglab.data.a"]
    assert upward_imports({"seglab.models.x": {"seglab.tasks.base"}}) == [
        "seglab.models.x (layer 1) imports seglab.tasks.base (layer 2)"
    ]


def test_every_package_says_what_it_holds_and_may_import():
    for init in PKG.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert len(doc) > 60, f"{init.relative_to(REPO)} needs a docstring paragraph"
        if init.parent != PKG:
            assert "import" in doc, f"{init.relative_to(REPO)}: say what it may import"


def test_small_tree_and_files():
    entries = [p for p in PKG.iterdir() if p.name not in ("__pycache__",) and p.suffix != ".pyc"]
    packages = [p for p in entries if p.is_dir()]
    assert len(packages) <= 9 and len(entries) <= 11, sorted(p.name for p in entries)
    data = [p for p in (PKG / "data").iterdir() if p.name not in ("__pycache__", "__init__.py")]
    assert len(data) <= 8, sorted(p.name for p in data)
    long = {
        str(p.relative_to(REPO)): n
        for p in [*PKG.rglob("*.py"), *(REPO / "benchmarks").rglob("*.py")]
        if (n := len(p.read_text().splitlines())) > 300
    }
    assert long == {}, f"modules over 300 lines: {long}"


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("seglab.speed", "seglab.runs.speed"),
        ("seglab.checkpoint", "seglab.runs.checkpoint"),
        ("seglab.data.volumes", "seglab.data.ct.volumes"),
        ("seglab.data.folder", "seglab.data.datasets.folder"),
        ("seglab.export", "seglab.inference.export"),
    ],
)
def test_old_module_paths_are_the_new_modules(old, new):
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_class_path_in_a_config_resolves():
    from jsonargparse import ArgumentParser

    from seglab.runs.speed import StepTimer

    parser = ArgumentParser()
    parser.add_argument("--cb", type=StepTimer)
    cfg = parser.parse_args(["--cb", '{"class_path": "seglab.speed.StepTimer"}'])
    assert isinstance(parser.instantiate_classes(cfg).cb, StepTimer)


def test_checkpoint_written_before_the_regrouping_loads():
    """``tests/fixtures/pre_regroup_default.ckpt``: a 1-epoch default run from the old layout."""
    import torch

    from seglab.runs.checkpoint import load_task
    from seglab.tasks import SegmentationTask

    ckpt = REPO / "tests" / "fixtures" / "pre_regroup_default.ckpt"
    task = load_task(ckpt)
    assert type(task) is SegmentationTask
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    loaded = task.state_dict()
    assert set(state) == set(loaded)
    assert all(torch.equal(state[k], loaded[k]) for k in state)
    with torch.no_grad():
        out = task(torch.rand(1, 3, 32, 32))
    assert out.shape == (1, 5, 32, 32)
