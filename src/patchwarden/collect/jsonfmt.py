"""patchwarden's own inventory document, ``patchwarden-inventory/1`` (JSON).

The agent uploads this format and ``patchwarden import`` reads it, so conversion is
exact both ways: ``inventory_from_json(inventory_to_json(inv)) == inv`` for every
inventory the validator accepts. The format is specified in docs/inventory-format.md.

Validation is strict: unknown keys, wrong types, empty or whitespace-bearing package
fields, naive or malformed timestamps and duplicate packages are rejected, and every
error names its JSON path (``packages[12].version``). All errors found (up to
``MAX_ERRORS``) are reported together so a producer can fix them in one go.

Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from patchwarden.collect.parsing import UTC, has_control, is_token
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage, Inventory, OsInfo

FORMAT = "patchwarden-inventory/1"
MAX_PACKAGES = 200_000
MAX_PROBLEMS = 10_000
MAX_TOKEN = 512
MAX_TEXT = 4096
MAX_ERRORS = 20
FAMILIES = ("", "debian", "rpm", "alpine")

_TOP_KEYS = (
    "format",
    "hostname",
    "collected_at",
    "os",
    "kernel",
    "arch",
    "reboot_required",
    "source",
    "problems",
    "packages",
)
_OS_KEYS = ("id", "version_id", "name", "pretty_name", "codename", "ecosystem", "family")
_PACKAGE_KEYS = ("name", "version", "ecosystem", "arch", "source_name", "source_version")
_PACKAGE_KEY_SET = frozenset(_PACKAGE_KEYS)
_OPTIONAL_PACKAGE_KEYS = ("arch", "source_name", "source_version")

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))$"
)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a ``Z``; microseconds only when non-zero.

    Raises ``InventoryError`` for a naive datetime (its instant is unknown).
    """
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InventoryError("collected_at must be timezone-aware to be written as RFC 3339")
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}"
    return text + "Z"


def parse_timestamp(text: str) -> datetime:
    """An RFC 3339 date-time as an aware UTC datetime.

    Fractions beyond microseconds are truncated. Raises ``ValueError`` with the reason.
    """
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError("not an RFC 3339 date-time like 2026-01-31T12:00:00Z")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    micro = int((match.group(7) or "0")[:6].ljust(6, "0"))
    if match.group(8):
        offset = timedelta(0)
    else:
        sign = -1 if match.group(9) == "-" else 1
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError("UTC offset out of range")
        offset = sign * timedelta(hours=hours, minutes=minutes)
    local = datetime(year, month, day, hour, minute, second, micro, tzinfo=timezone(offset))
    return local.astimezone(UTC)


def inventory_to_json(inventory: Inventory) -> dict[str, Any]:
    """The ``patchwarden-inventory/1`` document for an inventory (ready for ``json.dumps``).

    A package's ``ecosystem`` is written only when it differs from the OS ecosystem;
    empty ``arch`` / ``source_name`` / ``source_version`` are omitted. The document is
    validated before it is returned, so what the agent sends the server accepts;
    raises ``InventoryError`` otherwise.
    """
    default = inventory.os.ecosystem if inventory.os is not None else ""
    packages: list[dict[str, str]] = []
    for package in inventory.packages:
        entry = {"name": package.name, "version": package.version}
        if package.ecosystem != default:
            entry["ecosystem"] = package.ecosystem
        for key in _OPTIONAL_PACKAGE_KEYS:
            value: str = getattr(package, key)
            if value:
                entry[key] = value
        packages.append(entry)
    os_doc: dict[str, str] | None = None
    if inventory.os is not None:
        os_doc = {key: getattr(inventory.os, key) for key in _OS_KEYS}
    document: dict[str, Any] = {
        "format": FORMAT,
        "hostname": inventory.hostname,
        "collected_at": (
            format_timestamp(inventory.collected_at) if inventory.collected_at is not None else None
        ),
        "os": os_doc,
        "kernel": inventory.kernel,
        "arch": inventory.arch,
        "reboot_required": inventory.reboot_required,
        "source": inventory.source,
        "problems": list(inventory.problems),
        "packages": packages,
    }
    inventory_from_json(document, source="<inventory being written>")
    return document


def inventory_from_json(data: object, *, source: str = "<json inventory>") -> Inventory:
    """Validate a decoded ``patchwarden-inventory/1`` document and build the inventory.

    Raises ``InventoryError`` listing every problem found (up to ``MAX_ERRORS``), each
    with its JSON path, e.g. ``packages[3].version: expected a non-empty string ...``.
    """
    reader = _Reader()
    inventory = reader.inventory(data)
    if reader.errors or inventory is None:
        shown = reader.errors[:MAX_ERRORS]
        more = len(reader.errors) - len(shown)
        message = "invalid inventory document: " + "; ".join(shown)
        if more > 0:
            message += f"; and {more} more"
        raise InventoryError(message, source=source, hint="see docs/inventory-format.md")
    return inventory


def check_envelope(data: object, *, source: str = "<json inventory>") -> str:
    """Check only the top level of a decoded document — an object of the right
    ``format`` with a hostname and a package list of bounded length — and return the
    hostname. What a server can afford before acknowledging an upload; the packages'
    fields are validated by ``inventory_from_json`` when the report is applied.
    """
    reader = _Reader()
    hostname = reader.envelope(data)
    if reader.errors or hostname is None:
        raise InventoryError(
            "invalid inventory document: " + "; ".join(reader.errors[:MAX_ERRORS]),
            source=source,
            hint="see docs/inventory-format.md",
        )
    return hostname


def loads_inventory(text: str, *, source: str = "<json inventory>") -> Inventory:
    """Decode JSON text and validate it with ``inventory_from_json``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InventoryError(
            f"invalid JSON: {exc.msg} (column {exc.colno})", source=source, line=exc.lineno
        ) from exc
    return inventory_from_json(data, source=source)


class _Reader:
    """Walks a decoded document, collecting path-qualified errors."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path}: {message}")

    def _object(self, value: object, path: str, allowed: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            self.error(path, f"expected an object, got {_kind(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.error(f"{path}.{key}" if path != "$" else key, "unknown field")
        return value

    def _text(
        self,
        holder: dict[str, Any],
        key: str,
        path: str,
        *,
        required: bool = False,
        token: bool = False,
        limit: int = MAX_TEXT,
    ) -> str:
        value: object = holder.get(key)
        # The common case first: a well-formed string (empty only where allowed).
        if type(value) is str and (value or not required) and _well_formed(value, token, limit):
            return value
        where = f"{path}.{key}" if path != "$" else key
        if key not in holder:
            if required:
                self.error(where, "missing")
            return ""
        if not isinstance(value, str):
            self.error(where, f"expected a string, got {_kind(value)}")
            return ""
        if required and not value:
            self.error(where, "must not be empty")
        elif len(value) > limit:
            self.error(where, f"longer than {limit} characters")
        elif token and value and not is_token(value):
            self.error(where, f"{value!r} contains whitespace or control characters")
        elif not token and has_control(value):
            self.error(where, f"{value!r} contains control characters")
        return value

    def _top(self, data: object) -> dict[str, Any]:
        top = self._object(data, "$", _TOP_KEYS)
        if not top:
            if isinstance(data, dict):
                self.error("format", "missing")
            return {}
        fmt = top.get("format")
        if fmt != FORMAT:
            self.error("format", f"expected {FORMAT!r}, got {fmt!r}")
            return {}
        return top

    def envelope(self, data: object) -> str | None:
        top = self._top(data)
        if not top:
            return None
        hostname = self._text(top, "hostname", "$", required=True, limit=MAX_TOKEN)
        self._package_list(top)
        return hostname

    def inventory(self, data: object) -> Inventory | None:
        top = self._top(data)
        if not top:
            return None
        hostname = self._text(top, "hostname", "$", required=True, limit=MAX_TOKEN)
        os_info = self._os(top.get("os"))
        collected_at = self._collected_at(top.get("collected_at"))
        reboot = top.get("reboot_required", False)
        if not isinstance(reboot, bool):
            self.error("reboot_required", f"expected true or false, got {_kind(reboot)}")
            reboot = False
        problems = self._problems(top.get("problems", []))
        default = os_info.ecosystem if os_info is not None else ""
        packages = self._packages(top, default)
        return Inventory(
            hostname=hostname,
            packages=packages,
            os=os_info,
            kernel=self._text(top, "kernel", "$", limit=MAX_TOKEN),
            arch=self._text(top, "arch", "$", limit=MAX_TOKEN),
            reboot_required=reboot,
            collected_at=collected_at,
            source=self._text(top, "source", "$", limit=MAX_TOKEN),
            problems=problems,
        )

    def _os(self, value: object) -> OsInfo | None:
        if value is None:
            return None
        doc = self._object(value, "os", _OS_KEYS)
        if not isinstance(value, dict):
            return None
        family = self._text(doc, "family", "os")
        if family not in FAMILIES:
            self.error("os.family", f"expected one of {', '.join(map(repr, FAMILIES))}")
        return OsInfo(
            id=self._text(doc, "id", "os", required=True, token=True, limit=MAX_TOKEN),
            version_id=self._text(doc, "version_id", "os", limit=MAX_TOKEN),
            name=self._text(doc, "name", "os"),
            pretty_name=self._text(doc, "pretty_name", "os"),
            codename=self._text(doc, "codename", "os", limit=MAX_TOKEN),
            ecosystem=self._text(doc, "ecosystem", "os", limit=MAX_TOKEN),
            family=family,
        )

    def _collected_at(self, value: object) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, str):
            self.error("collected_at", f"expected an RFC 3339 string, got {_kind(value)}")
            return None
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            self.error("collected_at", f"{value!r}: {exc}")
            return None

    def _problems(self, value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            self.error("problems", f"expected a list of strings, got {_kind(value)}")
            return ()
        if len(value) > MAX_PROBLEMS:
            self.error("problems", f"more than {MAX_PROBLEMS} entries")
            return ()
        problems: list[str] = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.error(f"problems[{index}]", f"expected a string, got {_kind(item)}")
            elif len(item) > MAX_TEXT:
                self.error(f"problems[{index}]", f"longer than {MAX_TEXT} characters")
            else:
                problems.append(item)
        return tuple(problems)

    def _package_list(self, top: dict[str, Any]) -> list[Any] | None:
        """The document's package list, if it is one of an allowed length."""
        value = top.get("packages")
        if "packages" not in top:
            self.error("packages", "missing")
        elif not isinstance(value, list):
            self.error("packages", f"expected a list, got {_kind(value)}")
        elif len(value) > MAX_PACKAGES:
            self.error("packages", f"more than {MAX_PACKAGES} entries")
        else:
            return value
        return None

    def _packages(self, top: dict[str, Any], default: str) -> tuple[InstalledPackage, ...]:
        value = self._package_list(top)
        if value is None:
            return ()
        valid = _valid_packages(value, default)
        if valid is not None:
            return valid
        packages: list[InstalledPackage] = []
        first_index: dict[InstalledPackage, int] = {}
        for index, item in enumerate(value):
            path = f"packages[{index}]"
            errors_before = len(self.errors)
            doc = self._object(item, path, _PACKAGE_KEYS)
            if not isinstance(item, dict):
                continue
            package = InstalledPackage(
                name=self._text(doc, "name", path, required=True, token=True, limit=MAX_TOKEN),
                version=self._text(
                    doc, "version", path, required=True, token=True, limit=MAX_TOKEN
                ),
                ecosystem=(
                    self._text(doc, "ecosystem", path, limit=MAX_TOKEN)
                    if "ecosystem" in doc
                    else default
                ),
                arch=self._text(doc, "arch", path, token=True, limit=MAX_TOKEN),
                source_name=self._text(doc, "source_name", path, token=True, limit=MAX_TOKEN),
                source_version=self._text(doc, "source_version", path, token=True, limit=MAX_TOKEN),
            )
            if len(self.errors) > errors_before:
                continue
            if package in first_index:
                self.error(path, f"duplicates packages[{first_index[package]}]")
                continue
            first_index[package] = index
            packages.append(package)
        return tuple(packages)


def _valid_packages(items: list[Any], default: str) -> tuple[InstalledPackage, ...] | None:
    """The packages when every entry is valid, else ``None`` (then the entry-by-entry
    walk finds and names the problems).

    The same rules as that walk, checked column by column over all entries at once: an
    agent's inventory is almost always valid, and one scan of a column's values joined
    costs a fraction of one scan per value (a character not allowed in a field is not
    allowed in the joined text either, and every character of it belongs to a field).
    """
    if not items or not all(type(i) is dict and i.keys() <= _PACKAGE_KEY_SET for i in items):
        return None
    try:
        columns = [
            [item["name"] for item in items],
            [item["version"] for item in items],
            [item.get("ecosystem", default) for item in items],
            *([item.get(key, "") for item in items] for key in _OPTIONAL_PACKAGE_KEYS),
        ]
        names, versions, ecosystems, *optional = ["".join(c) for c in columns]
    except (KeyError, TypeError):  # a field missing, or one that is not a string
        return None
    if (
        not is_token(names + versions + "".join(optional))
        or has_control(ecosystems)
        or not all(columns[0])  # empty names
        or not all(columns[1])  # empty versions
        or max(max(map(len, column)) for column in columns) > MAX_TOKEN
        or len(set(zip(*columns))) != len(items)  # duplicates (no strict=: Python 3.9)
    ):
        return None
    return tuple(map(InstalledPackage, *columns))


def _well_formed(value: str, token: bool, limit: int) -> bool:
    if not value:
        return True
    if len(value) > limit:
        return False
    return is_token(value) if token else not has_control(value)


def _kind(value: object) -> str:
    """A JSON-ish name for a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
