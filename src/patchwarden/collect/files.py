"""Inventory files: recognise the format of a text inventory and turn it into an ``Inventory``.

Formats (see docs/inventory-format.md): ``dpkg-status``, ``dpkg-query``, ``rpm-qa``,
``rpm-qf``, ``apk-installed``, ``pip-freeze`` and ``json`` (patchwarden-inventory/1).
Only JSON carries the host's OS; for the package-manager formats the caller names the
OSV ecosystem (``--ecosystem AlmaLinux:9``), otherwise the packages get an empty
ecosystem and the inventory says, as a problem, that they cannot be matched.

Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from pathlib import Path

from patchwarden.collect.apk import parse_apk_installed
from patchwarden.collect.dpkg import parse_dpkg_query, parse_dpkg_status
from patchwarden.collect.jsonfmt import loads_inventory
from patchwarden.collect.osrelease import os_info_for_ecosystem
from patchwarden.collect.parsing import SUPPORTED_FORMATS_HINT, ParsedPackages, first_data_line
from patchwarden.collect.pip import PYPI, parse_pip_freeze
from patchwarden.collect.rpm import parse_nevra, parse_rpm_qa, parse_rpm_qf
from patchwarden.core import ecosystems
from patchwarden.core.errors import InventoryError, UnsupportedEcosystem
from patchwarden.core.model import Inventory, OsInfo

FORMATS = (
    "dpkg-status",
    "dpkg-query",
    "rpm-qa",
    "rpm-qf",
    "apk-installed",
    "pip-freeze",
    "json",
)
MAX_FILE_BYTES = 64 * 1024 * 1024

# Package family each package-manager format belongs to, and an example ecosystem.
_FAMILY = {
    "dpkg-status": "debian",
    "dpkg-query": "debian",
    "rpm-qa": "rpm",
    "rpm-qf": "rpm",
    "apk-installed": "alpine",
}
_EXAMPLE = {"debian": "Debian:12", "rpm": "AlmaLinux:9", "alpine": "Alpine:v3.20"}

_PARSERS: dict[str, Callable[..., ParsedPackages]] = {
    "dpkg-status": parse_dpkg_status,
    "dpkg-query": parse_dpkg_query,
    "rpm-qa": parse_rpm_qa,
    "rpm-qf": parse_rpm_qf,
    "apk-installed": parse_apk_installed,
}

_APK_LINE = re.compile(r"^[A-Za-z]:")
_DEB822_LINE = re.compile(r"^[A-Za-z][A-Za-z0-9-]+:")
_PIP_LINE = re.compile(
    r"^(?:-e\s|--editable|-[a-z]\s|--[a-z-]+"
    r"|[A-Za-z0-9][A-Za-z0-9._-]*\s*(?:\[[^\]]*\])?\s*(?:===?|@))"
)


def detect_inventory_format(text: str, *, source: str | None = None) -> str:
    """The name of the inventory format of ``text`` (one of ``FORMATS``).

    Decided from the first line that is not blank or a ``#`` comment (and, for the
    record formats, the presence of their name field). Raises ``InventoryError`` for
    empty text or an unknown format, with a hint listing the supported ones.
    """
    if not text.strip("\ufeff \t\r\n"):
        raise InventoryError("empty inventory", source=source, hint=SUPPORTED_FORMATS_HINT)
    if _is_json(text):
        return "json"
    first = first_data_line(text)
    if first is None:
        raise InventoryError(
            "inventory holds only comments", source=source, hint=SUPPORTED_FORMATS_HINT
        )
    number, line = first
    if _APK_LINE.match(line) and re.search(r"(?m)^P:", text):
        return "apk-installed"
    if _DEB822_LINE.match(line) and re.search(r"(?m)^Package:", text):
        return "dpkg-status"
    if "\t" in line:
        return "rpm-qf" if _looks_like_rpm_columns(line.split("\t")) else "dpkg-query"
    if _PIP_LINE.match(line.strip()):
        return "pip-freeze"
    try:
        parse_nevra(line)
    except ValueError:
        pass
    else:
        return "rpm-qa"
    raise InventoryError(
        f"unrecognized inventory format (line: {line.strip()[:60]!r})",
        source=source,
        line=number,
        hint=SUPPORTED_FORMATS_HINT,
    )


def _looks_like_rpm_columns(columns: list[str]) -> bool:
    """A tab-separated first line from rpm: a header row, the documented 6-column
    query (numeric epoch, source rpm last) or the 10-column container manifest."""
    cells = [cell.strip() for cell in columns]
    lowered = {cell.lower() for cell in cells}
    if {"name", "version", "release"} <= lowered:
        return True
    last = cells[-1]
    from_rpm = last.endswith(".rpm") or last in ("(none)", "")
    if len(cells) == 6:
        return from_rpm and (cells[1].isdigit() or cells[1] == "(none)")
    return len(cells) == 10 and from_rpm


def inventory_from_text(
    text: str,
    *,
    hostname: str,
    fmt: str | None = None,
    ecosystem: str | None = None,
    source: str = "<inventory>",
) -> Inventory:
    """Build an inventory from text in any supported format (detected when ``fmt`` is None).

    ``ecosystem`` sets the OSV ecosystem of a package-manager inventory (and overrides
    the OS ecosystem of a JSON one); it must belong to the format's package family.
    For JSON, ``hostname`` replaces the document's own only when non-empty.
    """
    fmt = fmt or detect_inventory_format(text, source=source)
    if fmt not in FORMATS:
        raise InventoryError(f"unknown inventory format {fmt!r}", hint=SUPPORTED_FORMATS_HINT)
    if fmt == "json":
        return _json_inventory(text, hostname=hostname, ecosystem=ecosystem, source=source)
    if not hostname:
        raise InventoryError(f"a {fmt} inventory needs a hostname", source=source)
    if fmt == "pip-freeze":
        if ecosystem and ecosystems.split(ecosystem)[0] != PYPI:
            raise InventoryError(
                f"pip freeze packages are always in the PyPI ecosystem, not {ecosystem!r}",
                source=source,
            )
        parsed = parse_pip_freeze(text, source=source)
        return Inventory(
            hostname=hostname,
            packages=parsed.packages,
            source="file",
            problems=parsed.problems,
        )
    family = _FAMILY[fmt]
    os_info: OsInfo | None = None
    notes: tuple[str, ...] = ()
    if ecosystem:
        os_info = _os_for(ecosystem, family, source)
    else:
        notes = (
            f"{source}: {fmt} files carry no OS information, so these packages have no "
            "ecosystem and cannot be matched; pass --ecosystem "
            f"(e.g. --ecosystem {_EXAMPLE[family]})",
        )
    parsed = _PARSERS[fmt](text, ecosystem=ecosystem or "", source=source)
    return Inventory(
        hostname=hostname,
        packages=parsed.packages,
        os=os_info,
        source="file",
        problems=parsed.problems + notes,
    )


def load_inventory_file(
    path: str | Path, *, ecosystem: str | None = None, hostname: str | None = None
) -> Inventory:
    """Read an inventory file, detect its format and build the ``Inventory``.

    ``hostname`` defaults to the JSON document's own, else to the file name without
    its last suffix. Raises ``InventoryError`` naming the file (and line) when it
    cannot be read, is empty, binary, too large, or not a supported format.
    """
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InventoryError(
                f"file is {size} bytes, more than the {MAX_FILE_BYTES} accepted", source=source
            )
        raw = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", source=source) from exc
    if b"\0" in raw[:65536]:
        raise InventoryError(
            "binary file, not a text inventory",
            source=source,
            hint="for an rpm database (Packages, rpmdb.sqlite) export it with "
            "rpm -qa --qf; " + SUPPORTED_FORMATS_HINT,
        )
    # Package fields are ASCII in practice; a stray Latin-1 byte in a description must
    # not make the whole inventory unreadable.
    text = raw.decode("utf-8", errors="replace")
    if not hostname and not _is_json(text):
        hostname = path.stem or path.name
    return inventory_from_text(text, hostname=hostname or "", ecosystem=ecosystem, source=source)


def _is_json(text: str) -> bool:
    return text.lstrip("\ufeff \t\r\n").startswith("{")


def _os_for(ecosystem: str, family: str | None, source: str) -> OsInfo:
    """The OS implied by an ecosystem the user gave, checked against the package family
    (``None``: any OS family)."""
    try:
        os_info = os_info_for_ecosystem(ecosystem)
    except UnsupportedEcosystem as exc:
        raise InventoryError(exc.message, source=source, hint=exc.hint) from exc
    if not os_info.family:
        raise InventoryError(
            f"ecosystem {ecosystem!r} is not an operating system ecosystem", source=source
        )
    if family is not None and os_info.family != family:
        raise InventoryError(
            f"ecosystem {ecosystem!r} is not a {family} ecosystem (e.g. {_EXAMPLE[family]})",
            source=source,
        )
    if not ecosystems.split(ecosystem)[1]:
        raise InventoryError(
            f"ecosystem {ecosystem!r} names no release; advisories are per release "
            f"(e.g. {_EXAMPLE[os_info.family]})",
            source=source,
        )
    return os_info


def _json_inventory(text: str, *, hostname: str, ecosystem: str | None, source: str) -> Inventory:
    """A JSON inventory, with the hostname and OS ecosystem overridden when given.

    Packages in the document's OS ecosystem move to the new one; others (PyPI) stay.
    """
    inventory = loads_inventory(text, source=source)
    if hostname:
        inventory = dataclasses.replace(inventory, hostname=hostname)
    if not ecosystem:
        return inventory
    current = inventory.os
    if current is None:
        new_os = _os_for(ecosystem, None, source)
    else:
        implied = _os_for(ecosystem, current.family or None, source)
        new_os = dataclasses.replace(
            current, ecosystem=ecosystem, family=current.family or implied.family
        )
    old = current.ecosystem if current is not None else ""
    packages = tuple(
        dataclasses.replace(package, ecosystem=ecosystem) if package.ecosystem == old else package
        for package in inventory.packages
    )
    return dataclasses.replace(inventory, os=new_os, packages=packages)
