"""The package's own imports form layers: no circle, and no module imports one from a layer above it.

The graph is drawn from the source (every ``import`` statement of every module under ``src/lrstudy``,
at the top of a file and inside functions alike), not from what Python happens to have loaded, so
an import hidden in a function counts as much as one at the top.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "lrstudy"
SOURCE = Path(__file__).resolve().parents[1] / "src" / PACKAGE

# Bottom first. A module may import modules of its own layer and of the layers below it, never of a
# layer above. Every module of the package is named in exactly one layer: a new module must be placed.
LAYERS: list[tuple[str, list[str]]] = [
    ("package root", ["lrstudy"]),
    ("files and places", ["files", "paths", "provenance", "paper", "syncs"]),
    ("schedules, optimizers, statistics", ["policy", "schedules", "schedule_specs", "scheduler", "optim", "stats",
                                           "history"]),
    ("networks", ["models.parts", "models.caffe", "models.lasagne", "models.torch7", "models"]),
    ("data", ["folders", "data"]),
    ("training and the run store", ["checkpoints", "ledger", "compiling", "rates", "range_test", "train", "fused",
                                    "costs", "runs", "selection"]),
    ("profiles and settings", ["config"]),
    ("execution and the queue", ["execute", "queue_types", "ray_executor", "runqueue", "bench"]),
    ("what an experiment is", ["study"]),
    ("the experiments", ["experiments.clr_adaptive", "experiments.clr_architectures", "experiments.clr_cifar10",
                         "experiments.clr_range_test", "experiments.sgdr", "experiments.super_convergence",
                         "experiments"]),
    ("runs chosen, moved between machines, checked", ["queue_selection", "gpu_window", "archive", "gpucheck",
                                                       "budgets", "reproduce"]),
    ("pages", ["plots", "pages", "notebook", "scorecard"]),
    ("command line", ["__main__"]),
    ("a GPU window's runs stage, around the command line", ["window_relay"]),
]


def module_names() -> dict[str, Path]:
    """Every module of the package by its dotted name below the package ("models.caffe"; the package's
    own ``__init__`` is "lrstudy", a subpackage's is its name)."""
    out = {}
    for path in sorted(SOURCE.rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts) or PACKAGE] = path
    return out


def _target(name: str, known) -> str | None:
    """The module a dotted name below the package is, or the module holding it (an attribute)."""
    while name:
        if name in known:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, known) -> set[str]:
    """The package's modules that ``module`` imports anywhere in its file."""
    is_package = path.name == "__init__.py"
    own = [] if module == PACKAGE else module.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own if is_package else own[:-1]
                base = base[:len(base) - (node.level - 1)] if node.level > 1 else base
                stem = ".".join([PACKAGE, *base, *([node.module] if node.module else [])])
            else:
                stem = node.module or ""
            names = [stem] + [f"{stem}.{alias.name}" for alias in node.names]
        for name in names:
            if name == PACKAGE:
                continue  # the package itself: imported by every one of its modules anyway
            if name.startswith(PACKAGE + "."):
                target = _target(name[len(PACKAGE) + 1:], known)
                if target is not None and target != module:
                    found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = module_names()
    return {module: imports_of(module, path, known) for module, path in known.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def layer_of() -> dict[str, int]:
    return {module: level for level, (_, modules) in enumerate(LAYERS) for module in modules}


def test_every_module_is_in_exactly_one_layer():
    named = [module for _, modules in LAYERS for module in modules]
    twice = sorted({module for module in named if named.count(module) > 1})
    unplaced = sorted(set(module_names()) - set(named))
    gone = sorted(set(named) - set(module_names()))
    assert not twice, f"named in more than one layer: {twice}"
    assert not unplaced, f"modules in no layer of LAYERS (place them): {unplaced}"
    assert not gone, f"LAYERS names modules that do not exist: {gone}"


def test_the_imports_form_no_circle():
    found = circles(import_graph())
    graph = import_graph()
    described = ["\n".join(f"  {a} -> {b}" for a in circle for b in sorted(graph[a]) if b in circle)
                 for circle in found]
    assert not found, "circles of imports:\n" + "\n\n".join(described)


def test_no_import_goes_up_a_layer():
    level, graph = layer_of(), import_graph()
    upward = [f"  {a} ({LAYERS[level[a]][0]}) -> {b} ({LAYERS[level[b]][0]})"
              for a in sorted(graph) for b in sorted(graph[a])
              if a in level and b in level and level[b] > level[a]]
    assert not upward, "imports that go up a layer:\n" + "\n".join(upward)


if __name__ == "__main__":  # the graph, for a reader: python tests/test_import_layers.py
    for module, targets in sorted(import_graph().items()):
        print(f"{module}: {', '.join(sorted(targets))}")
    for circle in circles(import_graph()):
        print(f"circle of {len(circle)}: {' '.join(circle)}")
