"""fnrl's layers, read from its source: imports point down only, and none forms a cycle.

The layers, bottom to top (docs: DESIGN.md, "Layers"):

* pure: the losses, distributions, specs, types, optimizers, plug-in and settings machinery, the
  agents and the networks (``python -m fnrl.networks``'s ``__main__`` excepted);
* envs: ``fnrl.envs``;
* shell: ``fnrl.parallel``, ``fnrl.checkpoint``, ``fnrl.logging``, ``fnrl.config``;
* commands: the command lines and their helpers, any ``__main__``, and the ``fnrl`` package itself,
  whose ``__init__`` imports ``fnrl._startup`` first and re-exports names of every layer.

A module may import from its own layer and those below. Every ``import`` counts, those inside
functions too: an import that a function defers still runs, and a cycle through it still makes
the order of imports matter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import fnrl

PACKAGE = Path(fnrl.__file__).parent

PURE, ENVS, SHELL, COMMANDS = range(4)
LAYER_NAMES = ("pure", "envs", "shell", "commands")

# Module -> layer; a package's entry covers its submodules.
LAYERS = {
    "fnrl.losses": PURE,
    "fnrl.distributions": PURE,
    "fnrl.specs": PURE,
    "fnrl.types": PURE,
    "fnrl.optimizers": PURE,
    "fnrl.plugins": PURE,
    "fnrl.settings": PURE,
    "fnrl.replay": PURE,
    "fnrl.agents": PURE,
    "fnrl.networks": PURE,
    "fnrl.envs": ENVS,
    "fnrl.parallel": SHELL,
    "fnrl.checkpoint": SHELL,
    "fnrl.logging": SHELL,
    "fnrl.config": SHELL,
    "fnrl": COMMANDS,
    "fnrl._startup": COMMANDS,
    "fnrl.cli": COMMANDS,
    "fnrl.train": COMMANDS,
    "fnrl.evaluate": COMMANDS,
    "fnrl.render": COMMANDS,
    "fnrl.plot": COMMANDS,
    "fnrl.adept_convert": COMMANDS,
    "fnrl.network_list": COMMANDS,
    "fnrl.figures": COMMANDS,
}


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Module name -> source file, for every module of the ``fnrl`` package."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = ["fnrl", *path.relative_to(package).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def layer(module: str) -> int:
    """The layer of an fnrl module: its own entry, or that of its closest package."""
    if module.rsplit(".", 1)[-1] == "__main__":
        return COMMANDS
    name = module
    while name not in LAYERS:
        if "." not in name:
            raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
        name = name.rsplit(".", 1)[0]
    return LAYERS[name]


def _absolute(module: str, node: ast.ImportFrom, is_package: bool) -> str:
    """The absolute name of the module of ``from ... import``, relative ones resolved."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    base = parts if is_package else parts[:-1]
    base = base[: len(base) - node.level + 1]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, modules: set[str]) -> set[str]:
    """The fnrl modules that ``module`` imports anywhere in its source.

    ``from fnrl.x import name`` counts as an import of ``fnrl.x.name`` when that is a module,
    else of ``fnrl.x``; the packages above a module imported are not counted.
    """
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(module, node, path.name == "__init__.py")
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in modules else source)
    return {name for name in found if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
    """Module -> the fnrl modules it imports."""
    files = module_files()
    return {module: imports_of(module, path, set(files)) for module, path in files.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected component of ``graph`` that has one.

    Tarjan's algorithm, iterative; each cycle is returned as its modules in import order, the
    first repeated at the end.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(component)
    return [_cycle_in(graph, component) for component in components]


def _cycle_in(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """A cycle through the first module of ``component``, by a breadth-first search."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph[node] & component):
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def test_every_module_is_in_a_layer():
    for module in module_files():
        layer(module)


def test_no_import_cycle():
    found = [" -> ".join(cycle) for cycle in cycles(import_graph())]
    assert not found, "import cycles:\n" + "\n".join(found)


def test_imports_point_down_the_layers_only():
    upward = [
        f"{module} ({LAYER_NAMES[layer(module)]}) imports {imported} "
        f"({LAYER_NAMES[layer(imported)]})"
        for module, imported_modules in sorted(import_graph().items())
        for imported in sorted(imported_modules)
        if layer(imported) > layer(module)
    ]
    assert not upward, "imports up a layer:\n" + "\n".join(upward)


def test_the_cycle_finder_names_each_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"d", "a"}, "e": set()}
    assert cycles(graph) == [["a", "b", "c", "a"]]  # a module importing itself is no cycle
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b", "a"]]
