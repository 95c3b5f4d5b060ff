"""The shape docs/architecture.md promises: every module imports on its own, no import cycle
(not even one hidden in a function), small modules, and a document that names what exists."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "driftwatch"
# suite data and its generator are data, not library code
DATA = PACKAGE / "probes" / "suites"
MAX_LINES = 415


def modules() -> dict[str, Path]:
    """Dotted name -> file, for every library module."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if DATA in path.parents:
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _imported(node: ast.AST, here: str, names: set[str]) -> set[str]:
    """The driftwatch modules an import statement names: ``from a.b import c`` is the module
    ``a.b.c`` when there is one, else ``a.b`` (names defined there, its ``__init__`` for a
    package). Ancestor packages are loaded first, but depending on them is not implied."""
    if isinstance(node, ast.Import):
        targets = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        targets = [
            f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in names else node.module
            for a in node.names
        ]
    else:
        return set()
    return {t for t in targets if t in names and t != here}


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_graph() -> dict[str, set[str]]:
    """Module -> the driftwatch modules it imports, at module level *or inside a function*
    (only ``if TYPE_CHECKING:`` blocks, which never run, are left out)."""
    names = set(modules())
    graph: dict[str, set[str]] = {}
    for name, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        edges: set[str] = set()
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            if _type_checking(node):
                continue
            edges |= _imported(node, name, names)
            stack.extend(ast.iter_child_nodes(node))
        graph[name] = edges
    return graph


def test_no_import_cycle_even_inside_functions():
    graph = import_graph()
    state: dict[str, int] = {}  # 1 visiting, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], "\n".join(" -> ".join(c) for c in cycles)


def test_every_module_imports_on_its_own():
    """Each module, imported first in a fresh set of driftwatch modules, loads (an import
    cycle that happens to work in one order fails in another)."""
    script = textwrap.dedent(
        f"""
        import importlib, sys
        failed = []
        for name in {sorted(modules())!r}:
            for loaded in [m for m in sys.modules if m.split(".")[0] == "driftwatch"]:
                del sys.modules[loaded]
            try:
                importlib.import_module(name)
            except Exception as err:
                failed.append(f"{{name}}: {{type(err).__name__}}: {{err}}")
        print("\\n".join(failed))
        sys.exit(1 if failed else 0)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]


def test_library_modules_are_small():
    long = {
        name: n
        for name, path in modules().items()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


def test_the_monitor_takes_at_most_a_dozen_parameters():
    import inspect

    from driftwatch import DriftMonitor

    params = [p for p in inspect.signature(DriftMonitor.__init__).parameters if p != "self"]
    assert len(params) <= 12, params


def test_architecture_doc_names_every_module_and_only_modules_that_exist():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    named = set(re.findall(r"`(driftwatch/[\w/]+\.py)`", doc))
    files = {str(p.relative_to(REPO)) for p in modules().values()}
    assert named - files == set(), "the doc names modules that do not exist"
    assert files - named == set(), "modules the doc does not describe"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "docs/architecture.md" in readme


def test_every_module_imports_only_what_its_row_in_the_doc_allows():
    doc = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(driftwatch/[\w/]+\.py)` \| .* \| (.*) \|$", doc, re.MULTILINE)
    allowed = {
        path: {f"driftwatch.{m}" for m in re.findall(r"`([\w.]+)`", imports)}
        for path, imports in rows
    }
    graph = import_graph()
    extra = {}
    for name, path in modules().items():
        rel = str(path.relative_to(REPO))
        surplus = graph[name] - allowed.get(rel, set())
        if surplus:
            extra[rel] = sorted(surplus)
    assert extra == {}, f"imports the doc does not allow: {extra}"
