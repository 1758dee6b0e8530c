#!/usr/bin/env python3
"""Check the import structure of AutoCut's packages (autocut, server, rqvae, indexes).

Every module is parsed with `ast` (nothing is imported). An import anywhere in a module counts, inside
functions too; imports under `if TYPE_CHECKING:` do not (they never run). Fails (exit 1) when

* a module outside `server/` imports `server` (tests/ are not checked and may);
* `rqvae` or `indexes` import `autocut`, or import each other;
* there is an import circle between modules (reported as a -> b -> ... -> a);
* an import names a module of these packages that does not exist, or a module does not parse.

How an import statement becomes edges of the module graph:

* `import a.b.c` and `from a.b.c import name` run `a.b.c`; `from a.b import name` runs `a.b.name` when that
  is a submodule, else `a.b`; a name of a package's lazy exports (`__getattr__ = lazy_exports(__name__,
  {...})`, see autocut/_lazy.py) runs the submodule it is mapped to.
* Importing a module first runs the `__init__.py` of each package above it, so an edge also goes to each
  such package, unless it is a package of the importing module itself (that one has already started).
  These edges are shown as "implicit" in a cycle.
* `importlib.import_module("literal")` counts; a computed name cannot be followed (counted in the summary).
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path

PACKAGES = ("autocut", "server", "rqvae", "indexes")
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Edge:
    """One reason why module `src` runs module `dst`."""

    src: str
    dst: str
    path: str  # repository-relative file of `src`
    line: int
    statement: str  # the import as written, e.g. "from autocut.lm import tokens"
    implicit: bool  # dst is a package whose __init__ runs because a module below it is imported
    in_function: bool  # the import runs when a function is called, not when the module is imported
    lazy: bool  # resolved through the package's lazy exports

    def where(self) -> str:
        notes = []
        if self.implicit:
            notes.append(f"implicit: runs {self.dst.replace('.', '/')}/__init__.py")
        if self.lazy:
            notes.append("lazy export")
        if self.in_function:
            notes.append("inside a function")
        extra = f" ({'; '.join(notes)})" if notes else ""
        return f"{self.path}:{self.line} `{self.statement}`{extra}"


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


def discover(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of PACKAGES (a package is its __init__.py)."""
    modules: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if not all(p.isidentifier() for p in parts):
                continue
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _literal_dict(node: ast.expr | None, assigned: dict[str, ast.expr]) -> dict[str, str]:
    if isinstance(node, ast.Name):
        node = assigned.get(node.id)
    if not isinstance(node, ast.Dict):
        return {}
    out = {}
    for k, v in zip(node.keys, node.values):
        if isinstance(k, ast.Constant) and isinstance(v, ast.Constant) and isinstance(k.value, str):
            out[k.value] = str(v.value)
    return out


def lazy_exports(tree: ast.Module) -> dict[str, str]:
    """name -> submodule (relative) of a package __init__ that uses `lazy_exports(__name__, SOURCES)`."""
    assigned: dict[str, ast.expr] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign):
            for tgt in stmt.targets:
                if isinstance(tgt, ast.Name):
                    assigned[tgt.id] = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
            assigned[stmt.target.id] = stmt.value
    for stmt in tree.body:
        value = stmt.value if isinstance(stmt, (ast.Assign, ast.AnnAssign)) else None
        if isinstance(value, ast.Call) and len(value.args) >= 2:
            func = value.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name == "lazy_exports":
                return _literal_dict(value.args[1], assigned)
    return {}


class _Imports(ast.NodeVisitor):
    """Collects the import statements that can run: (node, in_function), skipping TYPE_CHECKING blocks."""

    def __init__(self) -> None:
        self.found: list[tuple[ast.AST, bool]] = []
        self.dynamic: list[ast.Call] = []
        self._depth = 0

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            for stmt in node.orelse:
                self.visit(stmt)
            return
        if (
            isinstance(node.test, ast.UnaryOp)
            and isinstance(node.test.op, ast.Not)
            and _is_type_checking(node.test.operand)
        ):
            for stmt in node.body:
                self.visit(stmt)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._depth > 0))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        if name in ("import_module", "__import__") and node.args:
            self.found.append((node, self._depth > 0))
        self.generic_visit(node)


class Graph:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.modules = discover(root)
        self.packages = {m for m, p in self.modules.items() if p.name == "__init__.py"}
        # dotted prefixes of modules (covers directories without __init__.py: namespace packages)
        self.prefixes = {".".join(m.split(".")[:i]) for m in self.modules for i in range(1, m.count(".") + 1)}
        self.edges: dict[tuple[str, str], list[Edge]] = defaultdict(list)
        self.problems: list[Problem] = []
        self.dynamic = 0
        self.trees: dict[str, ast.Module] = {}
        for mod, path in self.modules.items():
            try:
                self.trees[mod] = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            except SyntaxError as exc:
                self.problems.append(Problem(self.rel(path), exc.lineno or 0, f"cannot parse: {exc.msg}"))
        self.lazy = {m: lazy_exports(t) for m, t in self.trees.items() if m in self.packages}
        for mod in sorted(self.trees):
            self._scan(mod)

    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def exists(self, name: str) -> bool:
        return name in self.modules or name in self.prefixes

    @staticmethod
    def internal(name: str) -> bool:
        return name.split(".")[0] in PACKAGES

    def _base(self, mod: str, level: int) -> str:
        package = mod if mod in self.packages else mod.rpartition(".")[0]
        parts = package.split(".")
        return ".".join(parts[: len(parts) - (level - 1)]) if level - 1 < len(parts) else ""

    def _targets(self, mod: str, node: ast.AST) -> tuple[str, list[tuple[str, bool]]]:
        """(statement text, [(target module, via lazy export)]); records unresolved internal imports."""
        path = self.rel(self.modules[mod])
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            out = []
            for alias in node.names:
                if self.internal(alias.name):
                    if self.exists(alias.name):
                        out.append((alias.name, False))
                    else:
                        self.problems.append(Problem(path, line, f"`import {alias.name}`: no such module"))
            return f"import {', '.join(a.name for a in node.names)}", out
        if isinstance(node, ast.ImportFrom):
            dots = "." * node.level
            text = f"from {dots}{node.module or ''} import {', '.join(a.name for a in node.names)}"
            if node.level:
                base = self._base(mod, node.level)
                source = f"{base}.{node.module}" if node.module and base else node.module or base
            else:
                source = node.module or ""
            if not source or not self.internal(source):
                return text, []
            if not self.exists(source):
                self.problems.append(Problem(path, line, f"`{text}`: no module {source}"))
                return text, []
            out = []
            for alias in node.names:
                sub = f"{source}.{alias.name}"
                if alias.name != "*" and self.exists(sub):
                    out.append((sub, False))
                elif alias.name in self.lazy.get(source, {}):
                    target = f"{source}.{self.lazy[source][alias.name]}"
                    out.append((target, True) if self.exists(target) else (source, False))
                else:
                    out.append((source, False))
            return text, out
        assert isinstance(node, ast.Call)
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("."):
            text = f"import_module({arg.value!r})"
            if not self.internal(arg.value):
                return text, []
            if self.exists(arg.value):
                return text, [(arg.value, False)]
            self.problems.append(Problem(path, line, f"`{text}`: no such module"))
            return text, []
        self.dynamic += 1
        return "", []

    def _scan(self, mod: str) -> None:
        collector = _Imports()
        collector.visit(self.trees[mod])
        path = self.rel(self.modules[mod])
        own = {".".join(mod.split(".")[:i]) for i in range(1, mod.count(".") + 2)}  # mod and its packages
        for node, in_function in collector.found:
            text, targets = self._targets(mod, node)
            line = getattr(node, "lineno", 0)
            for target, lazy in targets:
                self._check_layers(mod, target, path, line, text)
                if target != mod:
                    self._add(Edge(mod, target, path, line, text, False, in_function, lazy))
                parts = target.split(".")
                for i in range(1, len(parts)):
                    parent = ".".join(parts[:i])
                    if parent not in own and parent in self.modules:
                        self._add(Edge(mod, parent, path, line, text, True, in_function, False))

    def _add(self, edge: Edge) -> None:
        known = self.edges[(edge.src, edge.dst)]
        if edge not in known:
            known.append(edge)

    def _check_layers(self, mod: str, target: str, path: str, line: int, text: str) -> None:
        src_top, dst_top = mod.split(".")[0], target.split(".")[0]
        if src_top == dst_top:
            return
        rule = None
        if dst_top == "server":
            rule = "only server/ (and tests/) may import server"
        elif src_top in ("rqvae", "indexes") and dst_top == "autocut":
            rule = f"{src_top} must not import autocut"
        elif {src_top, dst_top} == {"rqvae", "indexes"}:
            rule = "rqvae and indexes must not import each other"
        if rule:
            problem = Problem(path, line, f"`{text}` imports {target}: {rule}")
            if problem not in self.problems:
                self.problems.append(problem)

    # ---- cycles ----------------------------------------------------------------------------------
    def adjacency(self) -> dict[str, set[str]]:
        adj: dict[str, set[str]] = {m: set() for m in self.modules}
        for src, dst in self.edges:
            adj[src].add(dst)
        return adj

    def sccs(self) -> list[list[str]]:
        """Strongly connected components with more than one module (Tarjan, iterative)."""
        adj = self.adjacency()
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        out: list[list[str]] = []
        counter = 0
        for start in sorted(adj):
            if start in index:
                continue
            work = [(start, iter(sorted(adj[start])))]
            index[start] = low[start] = counter
            counter += 1
            stack.append(start)
            on_stack.add(start)
            while work:
                node, it = work[-1]
                advanced = False
                for nxt in it:
                    if nxt not in index:
                        index[nxt] = low[nxt] = counter
                        counter += 1
                        stack.append(nxt)
                        on_stack.add(nxt)
                        work.append((nxt, iter(sorted(adj[nxt]))))
                        advanced = True
                        break
                    if nxt in on_stack:
                        low[node] = min(low[node], index[nxt])
                if advanced:
                    continue
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
        return sorted(out)

    def cycles(self, comp: list[str]) -> list[list[str]]:
        """For each module of a component, a shortest circle through it (deduplicated by rotation)."""
        adj = self.adjacency()
        members = set(comp)
        seen: set[tuple[str, ...]] = set()
        out = []
        for start in comp:
            prev: dict[str, str] = {}
            queue = deque([start])
            found = None
            while queue and found is None:
                node = queue.popleft()
                for nxt in sorted(adj[node] & members):
                    if nxt == start:
                        found = node
                        break
                    if nxt not in prev:
                        prev[nxt] = node
                        queue.append(nxt)
            if found is None:
                continue
            path = [found]
            while path[-1] != start:
                path.append(prev[path[-1]])
            path.reverse()
            i = path.index(min(path))
            key = tuple(path[i:] + path[:i])
            if key not in seen:
                seen.add(key)
                out.append(list(key))
        return sorted(out, key=lambda c: (len(c), c))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="repository root (default: this script's repo)")
    parser.add_argument("--max-cycles", type=int, default=10, help="circles shown per group of modules")
    args = parser.parse_args(argv)

    graph = Graph(args.root.resolve())
    for problem in sorted(graph.problems, key=lambda p: (p.path, p.line, p.message)):
        print(f"error: {problem}")

    comps = graph.sccs()
    n_cycles = 0
    for comp in comps:
        cycles = graph.cycles(comp)
        n_cycles += len(cycles)
        print(f"error: import circle among {len(comp)} modules: {', '.join(comp)}")
        for cycle in cycles[: args.max_cycles]:
            print("  " + " -> ".join([*cycle, cycle[0]]))
            for a, b in zip(cycle, [*cycle[1:], cycle[0]]):
                edges = sorted(graph.edges[(a, b)], key=lambda e: (e.implicit, e.in_function, e.line))
                more = f" (+{len(edges) - 1} more)" if len(edges) > 1 else ""
                print(f"      {a} -> {b}: {edges[0].where()}{more}")
        if len(cycles) > args.max_cycles:
            print(f"  ... {len(cycles) - args.max_cycles} more circles in this group")

    n_edges = len(graph.edges)
    n_explicit = sum(1 for es in graph.edges.values() if any(not e.implicit for e in es))
    print(
        f"check_imports: {len(graph.modules)} modules checked, {n_edges} import edges ({n_explicit} explicit, "
        f"{n_edges - n_explicit} implicit via a package __init__), {graph.dynamic} computed imports not followed; "
        f"{len(graph.problems)} errors, {len(comps)} import circle groups ({n_cycles} shortest circles)"
    )
    return 1 if graph.problems or comps else 0


if __name__ == "__main__":
    sys.exit(main())
