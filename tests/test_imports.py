"""The project's modules import each other without cycles, and its layers point one way.

Every import counts, at module level or inside a function (a lazy import is still a
dependency). Layers, lowest first: ``spec`` (the interface description: no project import
outside it), ``golden`` and ``host`` (the driver: spec only, never the simulator or the CLI),
``hw``, then ``sim``, ``synth``, ``formal``, the library modules of ``gateskip`` and last
``gateskip.cli``, which nothing imports.
"""

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _modules() -> dict[str, Path]:
    """Module name -> file, from pyproject's package-dir."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    dirs = cfg["package-dir"]
    out = {}
    for package in cfg["packages"]:
        parent = next(p for p in sorted(dirs, key=len, reverse=True)
                      if package == p or package.startswith(p + "."))
        folder = ROOT / dirs[parent] / package[len(parent):].lstrip(".").replace(".", "/")
        for path in folder.glob("*.py"):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            out[name] = path
    return out


def _imports(name: str, path: Path, known) -> set[str]:
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")
                up = up[:len(up) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            # `from P import M` imports module P.M when there is one, else names of P
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            # a module's own packages are imported before it anyway: not a dependency
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def _graph():
    mods = _modules()
    return {name: _imports(name, path, mods) for name, path in mods.items()}


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_module_list_is_complete():
    mods = _modules()
    for must in ("gateskip.spec.memories", "gateskip.hw.backward", "gateskip.host.link",
                 "gateskip.golden.accel", "gateskip.sim.board"):
        assert must in mods


def test_no_import_cycles():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


#: package -> the project packages it may import
ALLOWED = {
    "gateskip.spec": set(),
    "gateskip.golden": {"gateskip.spec"},
    "gateskip.host": {"gateskip.spec"},
    "gateskip.hw": {"gateskip.spec"},
}


def test_layers_point_one_way():
    graph = _graph()
    bad = []
    for module, targets in graph.items():
        layer = next((p for p in ALLOWED if module == p or module.startswith(p + ".")), None)
        for target in targets:
            if target.startswith("gateskip.cli") and not module.startswith("gateskip.cli"):
                bad.append(f"{module} -> {target} (nothing imports the CLI)")
            if layer is None:
                continue
            other = next((p for p in (*ALLOWED, "gateskip.sim", "gateskip.synth",
                                      "gateskip.formal", "gateskip.cli")
                          if target == p or target.startswith(p + ".")), target)
            if other != layer and other not in ALLOWED[layer]:
                bad.append(f"{module} -> {target}")
    assert bad == []
