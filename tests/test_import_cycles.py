"""No circle of imports inside a package either: the floors (import-linter) keep packages one-way;
this keeps the modules of each package one-way too. Imports inside functions count."""
from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _modules(root: pathlib.Path) -> dict:
    """{dotted module name: path} of every module of bpcore and backends under ``root``."""
    found = {}
    for package in ("bpcore", "backends"):
        for path in (root / package).rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def import_graph(root: pathlib.Path = ROOT) -> dict:
    """{module: modules it imports}, from every import statement (top level or inside a function)."""
    modules = _modules(root)
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in modules}
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                    if node.level else node.module
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in modules:
                        graph[name].add(target)
                    elif base in modules:
                        graph[name].add(base)
    return graph


def cycles(graph: dict) -> list:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iteratively)."""
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
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
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))
    return groups


def test_no_module_imports_its_way_back_to_itself():
    assert cycles(import_graph()) == []


def test_a_planted_circle_is_found_even_inside_a_function(tmp_path):
    for package in ("bpcore", "backends"):
        for path in (ROOT / package).rglob("*.py"):
            target = tmp_path / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    summary = tmp_path / "bpcore" / "nn" / "summary.py"     # module.py imports summary.py at its top
    summary.write_text(summary.read_text(encoding="utf-8") + "\n\ndef _planted():\n    from .module import Layer\n"
                       "    return Layer\n", encoding="utf-8")
    assert ["bpcore.nn.module", "bpcore.nn.summary"] in cycles(import_graph(tmp_path))


def test_relative_imports_resolve_to_modules():
    graph = import_graph()
    assert "bpcore.nn.kit" in graph["bpcore.nn.module"]
    assert "backends._base" in graph["backends._registry"]
