"""Build ``patchwarden-agent.pyz``: the agent as one file for hosts with only Python.

The archive holds exactly what the agent imports: all of ``patchwarden.agent``, the
modules of ``patchwarden.collect`` it reaches and at most four stdlib-only core modules
(model, errors, ecosystems, values), found by following the import statements of the
sources. Anything else in that closure fails the build. Minimal
``patchwarden/__init__.py`` and ``patchwarden/core/__init__.py`` replace the real ones,
and a ``__main__.py`` checks the Python version and runs the agent CLI. The file starts
with ``#!/usr/bin/env python3``.

The build is reproducible: members are sorted and carry a fixed timestamp and mode
(``zipfile`` is used directly because ``zipapp.create_archive`` copies file mtimes), so
the same sources always give the same bytes and the same sha256 to publish. Sources are
read with ``importlib.resources``, so a ``.pyz`` can rebuild itself.
"""

from __future__ import annotations

import ast
import hashlib
import os
import zipfile
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from patchwarden.core.errors import ConfigError

if TYPE_CHECKING:
    from importlib.abc import Traversable

INTERPRETER = "/usr/bin/env python3"
ALLOWED_PACKAGES = ("patchwarden.agent", "patchwarden.collect")
ALLOWED_CORE = ("model", "errors", "ecosystems", "values")
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)

_PACKAGE_INIT = '"""patchwarden, as shipped in patchwarden-agent.pyz (agent modules only)."""\n'
_CORE_INIT = '"""patchwarden.core, as shipped in patchwarden-agent.pyz (stdlib-only modules)."""\n'
_MAIN = '''"""patchwarden-agent.pyz: run the host agent's command line."""
import sys

if sys.version_info < (3, 9):
    sys.exit("patchwarden-agent needs Python 3.9 or newer, not %d.%d" % sys.version_info[:2])

from patchwarden.agent.cli import main

sys.exit(main())
'''


def pyz_members() -> dict[str, bytes]:
    """Archive path → content for everything the agent archive contains.

    That is every module of ``patchwarden.agent`` and what they import, transitively
    (read from the sources, not by importing them). Raises ``ConfigError`` when that
    reaches a module outside ``ALLOWED_PACKAGES`` / ``ALLOWED_CORE``: such a module
    would not be stdlib-only and the archive would fail on the host.
    """
    members = {
        "__main__.py": _MAIN.encode("utf-8"),
        "patchwarden/__init__.py": _PACKAGE_INIT.encode("utf-8"),
        "patchwarden/core/__init__.py": _CORE_INIT.encode("utf-8"),
    }
    root = resources.files("patchwarden")
    agent = root.joinpath("agent")
    queue = [
        f"patchwarden.agent.{entry.name[:-3]}"
        for entry in agent.iterdir()
        if entry.name.endswith(".py") and entry.name != "__init__.py"
    ]
    queue.append("patchwarden.agent")
    seen: set[str] = set()
    while queue:
        module = queue.pop()
        if module in seen or module in ("patchwarden", "patchwarden.core"):
            continue
        seen.add(module)
        if not _allowed(module):
            raise ConfigError(
                f"the agent needs {module}, which may not ship in the agent archive",
                hint="the agent may use only the standard library, patchwarden.collect and "
                f"patchwarden.core.{{{','.join(ALLOWED_CORE)}}}",
            )
        found = _source(root, module)
        if found is None:
            raise ConfigError(f"cannot find the source of {module} for the agent archive")
        path, data = found
        members[path] = data
        parent = module.rpartition(".")[0]
        queue.append(parent)
        queue.extend(_patchwarden_imports(root, module, path, data))
    return members


def _allowed(module: str) -> bool:
    if module in {f"patchwarden.core.{name}" for name in ALLOWED_CORE}:
        return True
    return any(module == p or module.startswith(p + ".") for p in ALLOWED_PACKAGES)


def _source(root: Traversable, module: str) -> tuple[str, bytes] | None:
    """``(archive path, source)`` of a module or package below ``patchwarden``."""
    parts = module.split(".")[1:]
    node = root
    for part in parts[:-1]:
        node = node.joinpath(part)
    candidates = (
        (node.joinpath(parts[-1]).joinpath("__init__.py"), [*parts, "__init__.py"]),
        (node.joinpath(parts[-1] + ".py"), [*parts[:-1], parts[-1] + ".py"]),
    )
    for candidate, archive_parts in candidates:
        # Reading is the test: zipfile.Path.is_file() on 3.9 is True for missing names.
        try:
            data = candidate.read_bytes()
        except (OSError, KeyError):
            continue
        return "/".join(["patchwarden", *archive_parts]), data
    return None


def _patchwarden_imports(root: Traversable, module: str, path: str, data: bytes) -> list[str]:
    """The patchwarden modules a source imports (anywhere in it, even inside functions)."""
    package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
    names: list[str] = []
    for node in ast.walk(ast.parse(data, filename=path)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # "from a.b import c" imports the module a.b.c when there is one.
                full = f"{base}.{alias.name}"
                is_module = full.startswith("patchwarden.") and _source(root, full) is not None
                names.append(full if is_module else base)
    return [name for name in names if name == "patchwarden" or name.startswith("patchwarden.")]


def build_pyz(output: Path, *, interpreter: str = INTERPRETER) -> Path:
    """Write the agent archive to ``output`` (atomically, mode 0755); returns its path."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(f"#!{interpreter}\n".encode())
            with zipfile.ZipFile(handle, "w") as archive:
                for name, data in sorted(pyz_members().items()):
                    info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
                    info.compress_type = zipfile.ZIP_DEFLATED
                    info.external_attr = 0o644 << 16
                    archive.writestr(info, data)
        os.chmod(temporary, 0o755)  # noqa: S103 - the archive is meant to be executed
        os.replace(temporary, output)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return output


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file (to publish next to the archive)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()
