"""patchwarden.agent runs on hosts with nothing but Python 3.9+: its sources must parse
as 3.9, import only the standard library and the modules the archive ships, and never
evaluate 3.10+ constructs (``X | Y`` types, ``match``, ``slots=True``, ``datetime.UTC``)
at run time. ``test_pyz.py`` runs the built archive under a real 3.9 when one exists."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import patchwarden
import patchwarden.agent
from patchwarden.agent import AGENT_VERSION, PROTOCOL_VERSION
from patchwarden.agent.build import ALLOWED_CORE
from patchwarden.server.services import agents as server_agents

AGENT = Path(patchwarden.agent.__file__).parent
MODULES = sorted(AGENT.rglob("*.py"))
ALLOWED = {f"patchwarden.core.{name}" for name in ALLOWED_CORE}
_TYPE_NAMES = {"str", "int", "float", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset"}


def annotation_nodes(tree: ast.Module) -> set[int]:
    """ids of every node inside an annotation (never evaluated under PEP 563)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            arguments = [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]
            arguments += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            targets = [a.annotation for a in arguments] + [node.returns]
            found.update(id(n) for t in targets if t is not None for n in ast.walk(t))
        elif isinstance(node, ast.AnnAssign):
            found.update(id(n) for n in ast.walk(node.annotation))
    return found


def test_the_agent_package_is_what_the_checks_cover() -> None:
    names = {p.name for p in MODULES}
    assert {"config.py", "client.py", "state.py", "spool.py", "runner.py", "cli.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(AGENT).as_posix())
def test_imports_are_stdlib_or_shipped_with_the_agent(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            top = name.split(".")[0]
            if top == "patchwarden":
                shipped = name.startswith(("patchwarden.agent", "patchwarden.collect"))
                assert shipped or name in ALLOWED, f"{path.name} imports {name}"
            else:
                assert top in sys.stdlib_module_names or top == "__future__", name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(AGENT).as_posix())
def test_python_39_grammar_and_nothing_newer_evaluated(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    assert "from __future__ import annotations" in source
    annotations = annotation_nodes(tree)
    for node in ast.walk(tree):
        assert type(node).__name__ != "Match", f"{path.name}: match statement"
        if isinstance(node, ast.keyword):
            assert node.arg not in ("slots", "kw_only", "strict"), f"{path.name}: {node.arg}="
        if isinstance(node, ast.ImportFrom) and node.module == "datetime":
            assert "UTC" not in {alias.name for alias in node.names}, path.name
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            if id(node) in annotations:
                continue
            for side in (node.left, node.right):
                is_type = (
                    (isinstance(side, ast.Constant) and side.value is None)
                    or (isinstance(side, ast.Name) and side.id in _TYPE_NAMES)
                    or isinstance(side, ast.Subscript)
                )
                assert not is_type, f"{path.name}:{node.lineno}: X | Y evaluated at runtime"


def test_versions_match_the_package_and_the_server() -> None:
    assert patchwarden.__version__ == AGENT_VERSION
    assert PROTOCOL_VERSION == server_agents.PROTOCOL_VERSION
