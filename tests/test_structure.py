"""The package's import structure: no import cycle, and no module takes another module's private
name (docs/architecture.md §2).

Every module of gpu_bptt is read with `ast` (nothing is imported). Two rules:

- Private names: `from X import _name`, and `X._name` where X is a module imported by name, X a
  module of the package (other libraries' private names are not this test's business), count
  wherever they are written, in a function body too: a lazy import takes the name as
  surely as one at the top.
- Cycles count every import, a function-level (lazy) one too. A lazy import keeps `import
  gpu_bptt` light (CuPy, the emulator and the bench load only when used) and cannot meet a
  half-initialized module, but two modules that import each other still depend on each other:
  neither can be read, tested or moved alone, and the layers stop running one way (CLI / nn ->
  cells -> backends -> kernels). So lazy imports are allowed, in the direction of the layers
  only. An import names one module: `from . import x` is an import of the submodule x, or of the
  package's `__init__` when x is a name defined there; the parent packages Python loads first
  are not counted (a package's `__init__` importing its submodules would otherwise be a cycle
  with each of them).
"""
from __future__ import annotations

import ast
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "gpu_bptt"


def _modules(root: Path) -> dict:
    """{dotted module name: source path} of every .py file under `root` (the package's folder)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name of a relative import `from <level dots><target> import ...` in `module`."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


class _Imports(ast.NodeVisitor):
    """The imports of one module (where, and whether inside a function or class body) and the
    private names it takes."""

    def __init__(self, name, is_package, modules):
        self.name, self.is_package, self.modules = name, is_package, modules
        self.edges = []        # (module imported, line, "" or " (lazy)")
        self.private = []      # (text, line)
        self.aliases = {}      # local name -> module it stands for
        self.depth = 0         # > 0 inside a function or class body

    def _edge(self, target, line):
        # Only the module named: its parent packages are loaded first, but a package that imports
        # its own submodules (the usual __init__) is no cycle.
        if target in self.modules and target != self.name:
            self.edges.append((target, line, " (lazy)" if self.depth else ""))

    def _body(self, node):
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = visit_Lambda = _body

    def visit_Import(self, node):
        for a in node.names:
            self._edge(a.name, node.lineno)   # `import a.b.c` names a.b.c
            if a.asname:
                self.aliases[a.asname] = a.name
            else:
                self.aliases.setdefault(a.name.split(".")[0], a.name.split(".")[0])

    def visit_ImportFrom(self, node):
        source = _resolve(self.name, self.is_package, node.level, node.module)
        for a in node.names:
            sub = f"{source}.{a.name}"
            if sub in self.modules:   # `from pkg import submodule`
                self._edge(sub, node.lineno)
                self.aliases[a.asname or a.name] = sub
                continue
            self._edge(source, node.lineno)   # a name defined in `source`
            if source in self.modules and _private(a.name):
                self.private.append((f"from {source} import {a.name}", node.lineno))

    def visit_Attribute(self, node):
        if isinstance(node.value, ast.Name) and node.value.id in self.aliases and _private(node.attr):
            target = self.aliases[node.value.id]
            if target != self.name and target in self.modules:
                self.private.append((f"{target}.{node.attr}", node.lineno))
        self.generic_visit(node)


def scan(root: Path):
    """(import graph {module: {imported module: "file:line"}}, [private-name violations])."""
    modules = _modules(root)
    graph, private = {}, []
    for name, path in modules.items():
        v = _Imports(name, path.name == "__init__.py", modules)
        v.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        graph[name] = {}
        where = path.relative_to(root.parent)
        for target, line, lazy in v.edges:
            graph[name].setdefault(target, f"{where}:{line}{lazy}")
        private += [f"{where}:{line}: {text}" for text, line in v.private]
    return graph, private


def cycles(graph) -> list:
    """Each strongly connected component of more than one module (or a module importing itself):
    its modules, then each import inside it with the place it is written."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def strong(v):   # Tarjan's algorithm
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strong(w)
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
            if len(comp) > 1 or v in graph.get(v, {}):
                inside = [f"    {a} -> {b}  ({graph[a][b]})" for a in sorted(comp)
                          for b in sorted(graph[a]) if b in comp]
                out.append("\n".join([" <-> ".join(sorted(comp))] + inside))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycle():
    graph, _ = scan(ROOT)
    assert len(graph) > 30   # every module was read
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(found)


def test_no_module_takes_another_modules_private_name():
    _, private = scan(ROOT)
    assert not private, "private names taken across modules:\n" + "\n".join(private)


# -- the checks themselves, on a planted package ---------------------------------------------------

def _plant(tmp_path, files):
    root = tmp_path / "pkg"
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return root


def test_a_planted_cycle_and_private_imports_are_found(tmp_path):
    root = _plant(tmp_path, {
        "__init__.py": "",
        "a.py": "from . import b\n",
        "b.py": "from .sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import a as other\n"
                    "def f():\n    from ..b import _hidden\n    return other._private\n",
        "d.py": "import pkg.a\n",
        "e.py": "import os\nos._exit\nfrom os import _exit\n",   # not the package's names
        "lazy.py": "from . import d\n",
        "late.py": "def f():\n    from . import lazy\n",
    })
    graph, private = scan(root)
    assert cycles(graph) == ["pkg.a <-> pkg.b <-> pkg.sub.c\n"
                             "    pkg.a -> pkg.b  (pkg/a.py:1)\n"
                             "    pkg.b -> pkg.sub.c  (pkg/b.py:1)\n"
                             "    pkg.sub.c -> pkg.a  (pkg/sub/c.py:1)\n"
                             "    pkg.sub.c -> pkg.b  (pkg/sub/c.py:3 (lazy))"]
    assert private == ["pkg/sub/c.py:3: from pkg.b import _hidden", "pkg/sub/c.py:4: pkg.a._private"]
    # a lazy import closes a cycle as well
    (root / "d.py").write_text("import pkg.a\nfrom . import late\n")
    assert cycles(scan(root)[0])[1:] == ["pkg.d <-> pkg.late <-> pkg.lazy\n"
                                         "    pkg.d -> pkg.late  (pkg/d.py:2)\n"
                                         "    pkg.late -> pkg.lazy  (pkg/late.py:2 (lazy))\n"
                                         "    pkg.lazy -> pkg.d  (pkg/lazy.py:1)"]


def test_a_package_importing_its_submodules_is_no_cycle_and_dunder_names_are_public(tmp_path):
    root = _plant(tmp_path, {
        "__init__.py": "from .a import x\n__all__ = ['x']\n__version__ = '1'\n",
        "a.py": "x = 1\n",
        "b.py": "from .a import x\nfrom . import __version__\nimport pkg.a\nprint(pkg.__all__)\n",
    })
    graph, private = scan(root)
    assert cycles(graph) == [] and private == []
    assert graph == {"pkg": {"pkg.a": "pkg/__init__.py:1"}, "pkg.a": {},
                     "pkg.b": {"pkg.a": "pkg/b.py:1", "pkg": "pkg/b.py:2"}}
    # ... but a submodule that takes a name from its package's __init__ is one
    (root / "a.py").write_text("x = 1\ndef f():\n    from . import __version__\n")
    assert cycles(scan(root)[0]) == ["pkg <-> pkg.a\n    pkg -> pkg.a  (pkg/__init__.py:1)\n"
                                     "    pkg.a -> pkg  (pkg/a.py:3 (lazy))"]


# -- the layers: the picture in docs/architecture.md is drawn from the import graph ----------------

# Every module belongs to one layer; imports run from a higher rank to a lower one only.
# (layer, rank, what it is, module-name prefixes); the longest matching prefix decides.
LAYERS = [
    ("cli", 10, "gpu-bptt command", ["gpu_bptt.cli"]),
    ("train", 9, "training, tasks, checkpoints",
     ["gpu_bptt.train", "gpu_bptt.tasks", "gpu_bptt.checkpoint", "gpu_bptt.memory"]),
    ("bench", 9, "benchmarks", ["gpu_bptt.bench"]),
    ("api", 8, "gpu_bptt: the public names", ["gpu_bptt"]),
    ("torch", 8, "PyTorch modules and ops", ["gpu_bptt.torch"]),
    ("nn", 7, "layers, losses, optimizers, gradcheck", ["gpu_bptt.nn", "gpu_bptt.gradcheck"]),
    ("cells", 6, "functional cells, sequence driver", ["gpu_bptt.cells"]),
    ("selection", 5, "backend choice", ["gpu_bptt.backends"]),
    ("numpy", 4, "numpy backend, time loop",
     ["gpu_bptt.backends.numpy_backend", "gpu_bptt.backends.time_loop"]),
    ("emulator_backend", 4, "emulator backend", ["gpu_bptt.backends.emulator"]),
    ("cuda", 3, "cuda backend: registry, plan rules, launchers", ["gpu_bptt.backends.cuda"]),
    ("base", 2, "Backend interface, LaunchPlan, notices",
     ["gpu_bptt.backends.base", "gpu_bptt.backends.plan", "gpu_bptt.backends.notices"]),
    ("emulator", 2, "CPU kernel executor", ["gpu_bptt.emulator"]),
    ("nvrtc", 2, "NVRTC through ctypes", ["gpu_bptt.nvrtc", "gpu_bptt.sass"]),
    ("helpers", 1, "validate, activations, progress, BLAS threads",
     ["gpu_bptt.validate", "gpu_bptt.activations", "gpu_bptt.progress", "gpu_bptt.blas_threads",
      "gpu_bptt.precision"]),
]
DIAGRAM = Path(__file__).resolve().parents[1] / "docs" / "architecture.md"


def layer_of(module: str) -> tuple:
    best = max(((p, layer) for layer in LAYERS for p in layer[3]
                if module == p or module.startswith(p + ".")), key=lambda x: len(x[0]))
    return best[1]


def layer_edges() -> dict:
    """{(from layer, to layer): an import that makes the edge}, between different layers."""
    graph, _ = scan(ROOT)
    out = {}
    for a, targets in graph.items():
        for b, where in targets.items():
            la, lb = layer_of(a)[0], layer_of(b)[0]
            if la != lb:
                out.setdefault((la, lb), f"{a} -> {b} ({where})")
    return out


def mermaid() -> str:
    """The layer picture as a Mermaid graph; the helpers' layer, which every layer uses, is
    left out to keep it readable."""
    edges = layer_edges()
    lines = ["```mermaid", "graph TD"]
    for name, _, text, _ in LAYERS:
        if name != "helpers":
            lines.append(f'  {name}["{name}: {text}"]')
    lines += [f"  {a} --> {b}" for a, b in sorted(edges, key=lambda e: (
        -layer_rank(e[0]), e[0], -layer_rank(e[1]), e[1])) if b != "helpers"]
    return "\n".join(lines + ["```"])


def layer_rank(name: str) -> int:
    return next(rank for n, rank, _, _ in LAYERS if n == name)


def test_every_module_has_a_layer_and_imports_run_down():
    up = [f"{a} (rank {layer_rank(a)}) imports {b} (rank {layer_rank(b)}): {where}"
          for (a, b), where in layer_edges().items() if layer_rank(a) <= layer_rank(b)]
    assert not up, "imports against the layers:\n" + "\n".join(up)


def test_the_architecture_picture_is_the_import_graph():
    text = DIAGRAM.read_text(encoding="utf-8")
    start = text.index("```mermaid")
    drawn = text[start:text.index("```\n", start + 3) + 3]
    assert drawn == mermaid(), ("docs/architecture.md's layer picture is out of date; replace it "
                                "with:\n" + mermaid())
