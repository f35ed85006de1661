"""The import layering of DESIGN.md, enforced on every module's source.

Arrows only go down: cli → server → integrations/reports → feeds → store → core.
``core`` is pure (stdlib plus small pure libraries); ``collect`` and ``agent`` stay
standard-library-only (plus the stdlib-only core modules) because the agent ships as
one file to hosts that have nothing but Python.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "patchwarden"

#: Core modules that are themselves stdlib-only and may travel with the agent.
AGENT_SAFE_CORE = (
    "patchwarden.core.model",
    "patchwarden.core.errors",
    "patchwarden.core.ecosystems",
)

#: component → (allowed patchwarden prefixes, allowed third-party top-level packages)
RULES: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "core": (("patchwarden.core",), frozenset({"cvss", "dateutil", "yaml"})),
    "collect": (("patchwarden.collect", *AGENT_SAFE_CORE), frozenset()),
    "collect/ssh": (("patchwarden.collect", *AGENT_SAFE_CORE), frozenset({"asyncssh"})),
    "agent": (("patchwarden.agent", "patchwarden.collect", *AGENT_SAFE_CORE), frozenset()),
    "store": (
        ("patchwarden.store", "patchwarden.core"),
        frozenset({"sqlalchemy", "alembic", "psycopg", "orjson"}),
    ),
    "feeds": (
        ("patchwarden.feeds", "patchwarden.store", "patchwarden.core"),
        frozenset({"sqlalchemy", "httpx", "orjson", "yaml"}),
    ),
    "reports": (
        ("patchwarden.reports", "patchwarden.store", "patchwarden.core"),
        frozenset({"sqlalchemy", "orjson"}),
    ),
}


def _imports(path: Path, module: str) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    package = module.rsplit(".", 1)[0] if path.name != "__init__.py" else module
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            # "from a.b import c" may import the module a.b.c: judge the full name.
            found.extend(f"{source}.{alias.name}" for alias in node.names)
    return found


#: Modules judged by their own rule instead of their folder's.
SPECIAL = {"collect/ssh": SRC / "collect" / "ssh.py"}


def _modules(component: str) -> list[tuple[str, Path]]:
    if component in SPECIAL:
        paths = [SPECIAL[component]]
    else:
        special = set(SPECIAL.values())
        paths = [p for p in sorted((SRC / component).rglob("*.py")) if p not in special]
    result = []
    for path in paths:
        if "migrations" in path.parts:
            continue  # Alembic scripts run inside the store and only import alembic/sqlalchemy
        rel = path.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        result.append((".".join(parts), path))
    return result


@pytest.mark.parametrize("component", sorted(RULES))
def test_component_imports_respect_the_layers(component: str) -> None:
    allowed_internal, allowed_external = RULES[component]
    problems = []
    for module, path in _modules(component):
        for name in _imports(path, module):
            top = name.split(".")[0]
            if top == "patchwarden":
                if not any(name == p or name.startswith(p + ".") for p in allowed_internal):
                    problems.append(f"{module} imports {name}")
            elif (
                top not in sys.stdlib_module_names
                and top != "__future__"
                and top not in allowed_external
            ):
                problems.append(f"{module} imports third-party {name}")
    assert not problems, "layering violations:\n" + "\n".join(problems)


def test_rules_cover_real_folders() -> None:
    for component in RULES:
        assert (SRC / component).is_dir() or SPECIAL[component].is_file(), component
    assert _modules("core"), "the core package must contain modules"


def _module_path(name: str) -> Path | None:
    relative = Path(*name.split("."))
    for candidate in (
        SRC.parent / relative.with_suffix(".py"),
        SRC.parent / relative / "__init__.py",
    ):
        if candidate.is_file():
            return candidate
    return None


def test_the_agent_import_closure_is_stdlib_only() -> None:
    """Follow every patchwarden import from the agent: nothing third-party may appear,
    or the single-file agent would fail on a host with only Python."""
    todo = [name for name, _path in _modules("agent")]
    seen: set[str] = set()
    third_party: list[str] = []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        path = _module_path(name)
        if path is None:
            continue  # "from package import name" where name is not a module
        for imported in _imports(path, name):
            top = imported.split(".")[0]
            if top == "patchwarden":
                todo.append(imported)
                todo.append(imported.rsplit(".", 1)[0])
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.append(f"{name} imports {imported}")
    assert "patchwarden.collect.ssh" not in seen
    assert not third_party, "\n".join(third_party)
