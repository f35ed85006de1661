"""patchwarden.collect ships inside the stdlib-only agent zipapp (Python 3.9+ hosts).

These checks keep it that way: only standard-library and allowed patchwarden imports,
Python 3.9 grammar, no runtime use of ``X | Y`` types, no ``slots=True`` dataclasses.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import patchwarden.collect

COLLECT = Path(patchwarden.collect.__file__).parent
# collect/ssh.py uses asyncssh and runs only on the server; the agent never imports it
# (tests/test_layers.py checks the agent's whole import closure).
SERVER_ONLY = {"ssh.py"}
MODULES = sorted(p for p in COLLECT.glob("*.py") if p.name not in SERVER_ONLY)
ALLOWED_PATCHWARDEN = {
    "patchwarden.core.model",
    "patchwarden.core.errors",
    "patchwarden.core.ecosystems",
    "patchwarden.core.values",
}
_TYPE_NAMES = {"str", "int", "float", "bool", "bytes", "list", "dict", "tuple", "set", "frozenset"}


def test_every_collect_module_is_checked() -> None:
    assert {p.name for p in MODULES} >= {
        "__init__.py",
        "apk.py",
        "dpkg.py",
        "files.py",
        "jsonfmt.py",
        "local.py",
        "osrelease.py",
        "parsing.py",
        "pip.py",
        "rpm.py",
    }


def imported_modules(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "patchwarden.core":
                names.update(f"patchwarden.core.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_are_stdlib_or_allowed(path: Path) -> None:
    tree = ast.parse(path.read_text())
    for name in imported_modules(tree):
        top = name.split(".")[0]
        if top == "patchwarden":
            assert name.startswith("patchwarden.collect") or name in ALLOWED_PATCHWARDEN, name
        else:
            assert top in sys.stdlib_module_names or top == "__future__", name


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_python_39_grammar_and_no_runtime_union_types(path: Path) -> None:
    source = path.read_text()
    tree = ast.parse(source, feature_version=(3, 9))
    assert "from __future__ import annotations" in source
    annotations: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            every = [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]
            every += [a for a in (node.args.vararg, node.args.kwarg) if a is not None]
            targets = [a.annotation for a in every] + [node.returns]
            annotations.update(id(n) for t in targets if t is not None for n in ast.walk(t))
        elif isinstance(node, ast.AnnAssign):
            annotations.update(id(n) for n in ast.walk(node.annotation))
    for node in ast.walk(tree):
        assert type(node).__name__ != "Match", f"{path.name}: match statement"
        if isinstance(node, ast.keyword) and node.arg == "slots":
            pytest.fail(f"{path.name}: dataclass(slots=...) needs Python 3.10")
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.BitOr)
            and id(node) not in annotations
        ):
            for side in (node.left, node.right):
                is_type = (
                    (isinstance(side, ast.Constant) and side.value is None)
                    or (isinstance(side, ast.Name) and side.id in _TYPE_NAMES)
                    or isinstance(side, ast.Subscript)
                )
                assert not is_type, f"{path.name}:{node.lineno}: X | Y evaluated at runtime"


def test_no_datetime_utc_alias() -> None:
    """datetime.UTC is Python 3.11+; collect uses parsing.UTC (timezone.utc) instead."""
    for path in MODULES:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "datetime":
                assert "UTC" not in {alias.name for alias in node.names}, path.name
