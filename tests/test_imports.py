"""The package as a whole: no import circles, one version string."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import searchr3
from searchr3.data import Document, write_dataset

SRC = Path(searchr3.__file__).parent
ROOT = SRC.parents[1]


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or
                                         (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def import_graph(src: Path = SRC) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, read from the source of every module under `src`.

    Imports inside functions count too (a lazy import still closes a circle); those under
    `if TYPE_CHECKING:` do not (they never run). Importing a submodule also runs its parent
    package's __init__; that implicit edge is left out, as it is in every package.
    """
    files = {}
    for path in src.rglob("*.py"):
        parts = list(path.relative_to(src.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        files[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    graph = {}
    for name, (path, is_package) in files.items():
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for top in ast.walk(tree) if _is_type_checking(top) for n in ast.walk(top)}
        package = (name if is_package else name.rpartition(".")[0]).split(".")
        found = set()
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: `from . import wiki`, `from ..data import Document`
                    base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
                for a in node.names:  # a submodule when the name is one, else the module itself
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in files else base)
        graph[name] = {m for m in found if m in files} - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_import_graph_sees_relative_lazy_and_submodule_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import a\n")
    (pkg / "a.py").write_text("from .b import x\nif TYPE_CHECKING:\n    from . import c\n")
    (pkg / "b.py").write_text("def f():\n    from .sub import d\n")
    (pkg / "c.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "d.py").write_text("from .. import a\nimport os\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.sub.d"}, "pkg.c": set(),
                     "pkg.sub": set(), "pkg.sub.d": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.sub.d", "pkg.a"]
    assert find_cycle({**graph, "pkg.sub.d": set()}) is None


def test_searchr3_has_no_import_circles():
    graph = import_graph()
    assert {"searchr3.data", "searchr3.assets"} <= graph["searchr3.wiki"]  # the walk sees real edges
    assert "searchr3.wiki" not in graph["searchr3.data"]
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("order", [("searchr3.data", "searchr3.wiki"), ("searchr3.wiki", "searchr3.data")])
def test_data_and_wiki_import_in_either_order_and_the_wiki_set_resolves(order):
    """In a fresh interpreter: either module first, and `wiki-known-item` is a bundled name
    (the wiki module registers its builder with data when the package loads)."""
    code = (f"import importlib; [importlib.import_module(m) for m in {list(order)!r}]\n"
            "from searchr3.data import BUILDERS, bundled_names\n"
            "from searchr3.wiki import WIKI_NAME, wiki_dataset\n"
            "assert BUILDERS[WIKI_NAME] is wiki_dataset and WIKI_NAME in bundled_names()\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_one_version_string_read_by_pyproject_and_written_in_results(tmp_path):
    from setuptools.config.pyprojecttoml import read_configuration

    from searchr3._version import __version__
    from searchr3.evaluate import evaluate_model

    assert searchr3.__version__ == __version__
    project = read_configuration(ROOT / "pyproject.toml")["project"]
    assert project["dynamic"] == ["version"] and project["version"] == __version__
    # No other module writes a version or keeps its own helper for it.
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef):
                assert node.name != "_version", f"{path}: def _version"
            if isinstance(node, ast.Assign) and path.name != "_version.py":
                assert "__version__" not in {getattr(t, "id", None) for t in node.targets}, path
    folder = tmp_path / "toy"
    write_dataset(folder, [Document("d1", "", "red apples"), Document("d2", "", "yellow bananas")],
                  {"q1": "apples"}, {"test": {"q1": {"d1": 1}}}, compress=False)
    assert evaluate_model("bm25", str(folder))["searchr3_version"] == __version__
