"""CMDB exports to plain records: CSV with a header row, and ServiceNow-style JSON.

Two input shapes are read:

* **CSV** — the first row names the columns; the delimiter (``,`` ``;`` tab ``|``) is
  detected from it; UTF-8 with or without a byte-order mark.
* **ServiceNow JSON** — the Table API's ``{"result": [ {...}, ... ]}``, the legacy
  JSONv2 ``{"records": [...]}`` or a bare list of objects. A value may be a string, a
  number, ``null``, a list, or a reference object (``{"display_value": ..., "link":
  ..., "value": ...}``), of which the display value is used.

Column names are compared after lower-casing and turning spaces, dots and dashes into
``_`` (``"IP Address"`` is ``ip_address``). ``DEFAULT_COLUMNS`` maps each patchwarden
field to the columns looked for, in order; a mapping (``load_mapping``) replaces the
list of any field. The full rules, including the criticality scales, are documented in
docs/fleet-sources.md.

Bad data is data: a cell that cannot be used becomes a ``CmdbProblem`` (row, column,
why) and the rest of the row is still read; a row with no identity at all (hostname,
fqdn, ip or serial) is skipped with a problem. Input that is not CSV or JSON at all —
binary, not UTF-8, JSON of another shape, a header with no known column — raises
``InventoryError``.

Stdlib only, and Python 3.9 compatible like the rest of ``collect``.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import json
import re
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Union

from patchwarden.core.errors import InventoryError, ValidationFailed

#: The patchwarden fields a CMDB column can feed.
CMDB_FIELDS = (
    "hostname",
    "fqdn",
    "domain",
    "ip",
    "serial",
    "owner",
    "environment",
    "criticality",
    "exposure",
    "location",
    "timezone",
    "tags",
    "external_id",
)
IDENTITY_FIELDS = ("hostname", "fqdn", "ip", "serial")

#: Columns looked for, in order (first non-empty wins; ``ip`` and ``tags`` combine all).
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "hostname": ("hostname", "host_name", "host", "name"),
    "fqdn": ("fqdn", "dns_name"),
    "domain": ("dns_domain", "domain"),
    "ip": ("ip", "ip_address", "ip_addresses", "ips"),
    "serial": ("serial", "serial_number"),
    "owner": ("owner", "owned_by", "managed_by"),
    "environment": ("environment", "env", "used_for"),
    "criticality": ("criticality", "u_criticality", "business_criticality"),
    "exposure": ("exposure", "internet_facing"),
    "location": ("location", "site"),
    "timezone": ("timezone", "time_zone", "tz"),
    "tags": ("tags", "sys_tags"),
    "external_id": ("sys_id", "external_id"),
}

#: Columns whose bare numbers use ServiceNow's scale (1 = most critical ... 4 = not).
SERVICENOW_SCALE_COLUMNS = frozenset({"u_criticality", "business_criticality"})
CRITICALITY_SCALES = ("patchwarden", "servicenow")

# ServiceNow's four business-criticality levels on patchwarden's 1 (low) - 5 (highest)
# scale. 3 is patchwarden's neutral default, which ServiceNow has no word for, so "less
# critical" goes below it: an import must not raise a host it calls less critical.
SERVICENOW_CRITICALITY = {1: 5, 2: 4, 3: 2, 4: 1}
CRITICALITY_WORDS = {
    "most critical": 5,
    "mission critical": 5,
    "critical": 5,
    "highest": 5,
    "very high": 5,
    "somewhat critical": 4,
    "high": 4,
    "medium": 3,
    "moderate": 3,
    "normal": 3,
    "less critical": 2,
    "low": 2,
    "not critical": 1,
    "very low": 1,
    "lowest": 1,
    "none": 1,
}
_EXPOSURE_WORDS = {
    "internet": "internet",
    "internet-facing": "internet",
    "external": "internet",
    "public": "internet",
    "dmz": "internet",
    "true": "internet",
    "yes": "internet",
    "1": "internet",
    "internal": "internal",
    "private": "internal",
    "false": "internal",
    "no": "internal",
    "0": "internal",
}

#: Largest CMDB file read (bytes); exports beyond it should be split.
MAX_CMDB_BYTES = 64 * 1024 * 1024
CMDB_FORMATS = ("csv", "servicenow")

_HOST_NAME = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]{0,62})(?:\.[a-z0-9_](?:[a-z0-9_-]{0,62}))*$")
_NUMBERED = re.compile(r"^(\d+)\s*(?:[-:.)]\s*(.*))?$")
_LIST_SPLIT = re.compile(r"[,;\n]+")
_IP_SPLIT = re.compile(r"[,;\s]+")
_PADDED_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_COLUMN_SEPARATORS = re.compile(r"[\s.\-]+")

Cell = Union[str, "list[str]"]


@dataclass(frozen=True)
class CmdbProblem:
    """A cell or row that could not be used. ``row`` is the CSV line number (the header
    is line 1) or the 1-based position of the record in the JSON list; ``column`` is the
    normalized column name (``""`` for the row as a whole)."""

    row: int
    column: str
    message: str

    def __str__(self) -> str:
        where = f"row {self.row}" + (f", column {self.column!r}" if self.column else "")
        return f"{where}: {self.message}"


@dataclass(frozen=True)
class CmdbRecord:
    """One configuration item, in patchwarden's terms.

    Empty strings, ``None`` and empty tuples mean "the CMDB says nothing": an import
    never clears a value with them. ``criticality`` is on patchwarden's 1 (low) - 5
    (highest) scale; ``exposure`` is ``internet``, ``internal`` or ``""``.
    """

    row: int
    hostname: str = ""
    fqdn: str = ""
    ips: tuple[str, ...] = ()
    serial: str = ""
    owner: str = ""
    environment: str = ""
    criticality: int | None = None
    exposure: str = ""
    location: str = ""
    timezone: str = ""
    tags: tuple[str, ...] = ()
    external_id: str = ""

    @property
    def label(self) -> str:
        """The best human name of the record: fqdn, hostname, serial or first IP."""
        return self.fqdn or self.hostname or self.serial or (self.ips[0] if self.ips else "?")


@dataclass(frozen=True)
class CmdbMapping:
    """Which columns feed which patchwarden field (normalized column names)."""

    columns: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_COLUMNS))
    criticality_scale: str = ""

    def scale_of(self, column: str) -> str:
        """The criticality scale bare numbers in ``column`` are read on."""
        if self.criticality_scale:
            return self.criticality_scale
        return "servicenow" if column in SERVICENOW_SCALE_COLUMNS else "patchwarden"


@dataclass(frozen=True)
class CmdbImport:
    """The records read from one export, the problems met, and the format detected."""

    records: tuple[CmdbRecord, ...]
    problems: tuple[CmdbProblem, ...]
    format: str
    rows: int


def normalize_column(name: str) -> str:
    """``"IP Address"`` -> ``ip_address``: the form column names are compared in."""
    return _COLUMN_SEPARATORS.sub("_", name.strip().lower()).strip("_")


# --------------------------------------------------------------------------- mapping


def mapping_from_json(data: object, *, source: str = "<mapping>") -> CmdbMapping:
    """A mapping from its JSON form: ``{field: column | [columns] | null, ...}`` plus
    an optional ``"criticality_scale": "patchwarden" | "servicenow"``.

    Fields not named keep their default columns; ``null`` or ``[]`` turns a field off.
    Raises ``ValidationFailed`` for unknown fields or malformed values.
    """
    if not isinstance(data, dict):
        raise ValidationFailed(f"{source}: a column mapping must be a JSON object")
    columns = dict(DEFAULT_COLUMNS)
    scale = ""
    for key, value in data.items():
        if key == "criticality_scale":
            if value not in CRITICALITY_SCALES:
                raise ValidationFailed(
                    f"{source}: criticality_scale must be one of {', '.join(CRITICALITY_SCALES)}"
                )
            scale = str(value)
            continue
        if key not in CMDB_FIELDS:
            raise ValidationFailed(
                f"{source}: unknown field {key!r}",
                hint=f"fields: {', '.join(CMDB_FIELDS)}, criticality_scale",
            )
        if value is None:
            names: list[object] = []
        elif isinstance(value, str):
            names = [value]
        elif isinstance(value, list):
            names = list(value)
        else:
            raise ValidationFailed(
                f"{source}: {key} must name a column, a list of columns, or null"
            )
        if not all(isinstance(name, str) and normalize_column(name) for name in names):
            raise ValidationFailed(f"{source}: {key}: column names must be non-empty strings")
        columns[key] = tuple(normalize_column(str(name)) for name in names)
    return CmdbMapping(columns, scale)


def load_mapping(path: Path) -> CmdbMapping:
    """Read a JSON column mapping file (see ``mapping_from_json``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationFailed(f"{path}: cannot read mapping: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ValidationFailed(f"{path}: mapping is not UTF-8 text") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValidationFailed(f"{path}: mapping is not valid JSON: {exc}") from exc
    return mapping_from_json(data, source=str(path))


# --------------------------------------------------------------------------- parsing


def load_cmdb_file(
    path: Path, *, format: str | None = None, mapping: CmdbMapping | None = None
) -> CmdbImport:
    """Read a CMDB export file (see ``parse_cmdb``); larger than MAX_CMDB_BYTES is refused."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CMDB_BYTES:
            raise InventoryError(
                f"file is {size} bytes; at most {MAX_CMDB_BYTES} are read",
                source=str(path),
                hint="split the export into smaller files",
            )
        data = path.read_bytes()
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
    return parse_cmdb(data, format=format, mapping=mapping, source=str(path))


def parse_cmdb(
    data: bytes | str,
    *,
    format: str | None = None,
    mapping: CmdbMapping | None = None,
    source: str = "<cmdb>",
) -> CmdbImport:
    """Records of a CMDB export. ``format`` is ``csv`` or ``servicenow`` (JSON); ``None``
    detects it (JSON when the text starts with ``{`` or ``[``)."""
    if format is not None and format not in CMDB_FORMATS:
        raise ValidationFailed(
            f"unknown CMDB format {format!r}", hint=f"formats: {', '.join(CMDB_FORMATS)}"
        )
    text = _decode(data, source)
    if not text.strip():
        raise InventoryError("empty file: no CMDB records", source=source)
    if format is None:
        format = "servicenow" if text.lstrip()[:1] in ("{", "[") else "csv"
    mapping = mapping or CmdbMapping()
    problems: list[CmdbProblem] = []
    if format == "servicenow":
        rows: Iterable[tuple[int, dict[str, Cell] | None]] = _json_rows(
            text, source, mapping, problems
        )
    else:
        rows = _csv_rows(text, source, mapping, problems)
    records: list[CmdbRecord] = []
    count = 0
    for number, cells in rows:
        count += 1
        if cells is None:
            continue
        record = _record(number, cells, mapping, problems)
        if record is not None:
            records.append(record)
    return CmdbImport(tuple(records), tuple(problems), format, count)


def _decode(data: bytes | str, source: str) -> str:
    if isinstance(data, str):
        return data.lstrip("\ufeff")
    if b"\x00" in data[:8192]:
        raise InventoryError(
            "binary data: not a CSV or JSON CMDB export",
            source=source,
            hint="export the CMDB as CSV (UTF-8) or as ServiceNow JSON",
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InventoryError(
            f"not UTF-8 text (byte {exc.start})",
            source=source,
            hint="re-export the file as UTF-8",
        ) from exc


def _csv_rows(
    text: str, source: str, mapping: CmdbMapping, problems: list[CmdbProblem]
) -> Iterator[tuple[int, dict[str, Cell] | None]]:
    header_line = text.lstrip("\r\n").splitlines()[0]
    # The delimiter is the candidate the header uses most (Excel writes ';' in many locales).
    delimiter = max(",;\t|", key=header_line.count)
    reader = csv.reader(io.StringIO(text), delimiter=delimiter if delimiter in header_line else ",")
    try:
        header: list[str] | None = next(
            (row for row in reader if any(c.strip() for c in row)), None
        )
    except csv.Error as exc:
        raise InventoryError(f"not CSV: {exc}", source=source, line=reader.line_num) from exc
    if header is None:
        raise InventoryError("no header row", source=source)
    header_at = reader.line_num
    names = [normalize_column(name) for name in header]
    known = {column for columns in mapping.columns.values() for column in columns}
    identity = {c for f in IDENTITY_FIELDS for c in mapping.columns.get(f, ())}
    if not identity & set(names):
        raise InventoryError(
            "no column of the header identifies a host (hostname, fqdn, ip or serial); "
            f"found: {', '.join(repr(h) for h in header[:12])}",
            source=source,
            line=header_at,
            hint="name the columns as in docs/fleet-sources.md or pass --mapping",
        )
    seen: set[str] = set()
    for name, original in zip(names, header):
        if name in seen and name in known:
            problems.append(
                CmdbProblem(header_at, original, "column repeated; the first one is used")
            )
        seen.add(name)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InventoryError(f"not CSV: {exc}", source=source, line=reader.line_num) from exc
        if not any(cell.strip() for cell in row):
            continue
        number = reader.line_num
        if len(row) != len(names):
            problems.append(
                CmdbProblem(
                    number,
                    "",
                    f"{len(row)} cells but the header has {len(names)} columns; "
                    "missing cells are empty, extra cells are ignored",
                )
            )
        cells: dict[str, Cell] = {}
        for name, value in zip(names, row):
            cells.setdefault(name, value)
        yield number, cells


def _json_rows(
    text: str, source: str, mapping: CmdbMapping, problems: list[CmdbProblem]
) -> Iterator[tuple[int, dict[str, Cell] | None]]:
    """Each record's position and cells; ``None`` cells for an entry that is no object."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        line = getattr(exc, "lineno", None)
        raise InventoryError(f"not valid JSON: {exc}", source=source, line=line) from exc
    items = _json_items(data, source)
    known = {column for columns in mapping.columns.values() for column in columns}
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            problems.append(CmdbProblem(index, "", "not a JSON object; skipped"))
            yield index, None
            continue
        cells: dict[str, Cell] = {}
        for key, value in item.items():
            column = normalize_column(str(key))
            if column in known and _bare_reference(value):
                problems.append(
                    CmdbProblem(
                        index,
                        column,
                        "a reference without its display value (only a sys_id); ignored — "
                        "export with sysparm_display_value=true",
                    )
                )
                continue
            cells.setdefault(column, _json_cell(value))
        yield index, cells


def _json_items(data: object, source: str) -> list[object]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("result", "records"):
            if isinstance(data.get(key), list):
                return list(data[key])
        error = data.get("error")
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or "error response"
            raise InventoryError(f"the export is a ServiceNow error: {message}", source=source)
    raise InventoryError(
        'not a CMDB export: expected {"result": [...]}, {"records": [...]} or a list of records',
        source=source,
    )


def _bare_reference(value: object) -> bool:
    """A ServiceNow reference exported without display values: ``{"link", "value"}``."""
    return (
        isinstance(value, dict)
        and "link" in value
        and not str(value.get("display_value") or value.get("name") or "").strip()
    )


def _json_cell(value: object) -> Cell:
    if isinstance(value, list):
        return [text for text in (_json_scalar(item) for item in value) if text]
    return _json_scalar(value)


def _json_scalar(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    if isinstance(value, dict):
        # A reference or choice exported with display values: {"display_value": "Jane Doe",
        # "link": ..., "value": sys_id} or {"display_value": "1 - most critical", "value": "1"}.
        for key in ("display_value", "name", "value"):
            inner = value.get(key)
            if isinstance(inner, (str, int, float)) and str(inner).strip():
                return str(inner)
        return ""
    return str(value)


# --------------------------------------------------------------------------- records


def _record(
    number: int, cells: Mapping[str, Cell], mapping: CmdbMapping, problems: list[CmdbProblem]
) -> CmdbRecord | None:
    def problem(column: str, message: str) -> None:
        problems.append(CmdbProblem(number, column, message))

    def first(name: str) -> tuple[str, str]:
        for column in mapping.columns.get(name, ()):
            value = cells.get(column)
            text = ", ".join(value) if isinstance(value, list) else (value or "")
            if text.strip():
                return column, text.strip()
        return "", ""

    def every(name: str) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for column in mapping.columns.get(name, ()):
            value = cells.get(column)
            items = value if isinstance(value, list) else [value or ""]
            found.extend((column, item.strip()) for item in items if item.strip())
        return found

    hostname_column, hostname = first("hostname")
    fqdn_column, fqdn = first("fqdn")
    ips: list[str] = []
    for column, text in every("ip"):
        for item in _IP_SPLIT.split(text):
            if item:
                address = _ip(item)
                if address is None:
                    problem(column, f"{item!r} is not an IP address; ignored")
                elif address not in ips:
                    ips.append(address)
    if hostname and _ip(hostname) is not None:
        # Some CMDBs name hosts by address; it identifies the host as an IP, not a name.
        address = _ip(hostname) or ""
        if address not in ips:
            ips.append(address)
        hostname = ""
    if hostname:
        hostname = hostname.rstrip(".")
        if not _HOST_NAME.match(hostname.lower()) or len(hostname) > 253:
            problem(hostname_column, f"{hostname!r} is not a host name; ignored")
            hostname = ""
    if fqdn:
        fqdn = fqdn.lower().rstrip(".")
        if not _HOST_NAME.match(fqdn) or len(fqdn) > 253 or _ip(fqdn) is not None:
            problem(fqdn_column, f"{fqdn!r} is not a DNS name; ignored")
            fqdn = ""
    if "." in hostname:
        # A dotted name is fully qualified: it fills fqdn, the host name is its first label.
        fqdn = fqdn or hostname.lower()
        hostname = hostname.split(".", 1)[0]
    domain_column, domain = first("domain")
    if hostname and not fqdn and domain:
        candidate = f"{hostname}.{domain.strip('.')}".lower()
        if _HOST_NAME.match(candidate) and len(candidate) <= 253:
            fqdn = candidate
        else:
            problem(domain_column, f"{domain!r} is not a DNS domain; ignored")
    serial = first("serial")[1]
    if not (hostname or fqdn or ips or serial):
        problem("", "no hostname, fqdn, ip or serial: nothing identifies the host; skipped")
        return None

    criticality = None
    column, text = first("criticality")
    if text:
        criticality = parse_criticality(text, mapping.scale_of(column))
        if criticality is None:
            problem(
                column,
                f"unknown criticality {text!r}; expected 1-5 (5 highest), a ServiceNow "
                "value like '1 - most critical', or low/medium/high/critical",
            )
    exposure = ""
    column, text = first("exposure")
    if text:
        exposure = _EXPOSURE_WORDS.get(text.lower(), "")
        if not exposure:
            problem(column, f"unknown exposure {text!r}; expected internet or internal")
    timezone = ""
    column, text = first("timezone")
    if text:
        if is_timezone(text):
            timezone = text
        else:
            problem(column, f"{text!r} is not an IANA time zone name (like Europe/Berlin)")
    tags: list[str] = []
    for _column, text in every("tags"):
        for item in _LIST_SPLIT.split(text):
            tag = item.strip()
            if tag and tag not in tags:
                tags.append(tag)
    return CmdbRecord(
        row=number,
        hostname=hostname,
        fqdn=fqdn,
        ips=tuple(ips),
        serial=serial,
        owner=first("owner")[1],
        environment=first("environment")[1].lower(),
        criticality=criticality,
        exposure=exposure,
        location=first("location")[1],
        timezone=timezone,
        tags=tuple(sorted(tags)),
        external_id=first("external_id")[1],
    )


def parse_criticality(text: str, scale: str = "patchwarden") -> int | None:
    """A criticality value on patchwarden's 1 (low) - 5 (highest) scale, or ``None``.

    Words (``"1 - most critical"``, ``"high"``) are read by their meaning whatever the
    scale; bare numbers are 1-5 on the ``patchwarden`` scale and 1-4 (1 most critical)
    on the ``servicenow`` scale.
    """
    value = " ".join(text.strip().lower().replace("_", " ").split())
    if value in CRITICALITY_WORDS:
        return CRITICALITY_WORDS[value]
    numbered = _NUMBERED.match(value)
    if numbered is None:
        return None
    number, words = int(numbered.group(1)), (numbered.group(2) or "").strip()
    if words:
        # "1 - most critical": the words decide; unknown words fall back to ServiceNow's
        # numbering, the only scheme that writes numbers this way.
        return CRITICALITY_WORDS.get(words, SERVICENOW_CRITICALITY.get(number))
    if scale == "servicenow":
        return SERVICENOW_CRITICALITY.get(number)
    return number if 1 <= number <= 5 else None


def is_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone known to this system's tz database."""
    known = _timezones()
    if known:
        return name in known
    # No tz database to list (rare, minimal systems): let ZoneInfo decide.
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _ip(text: str) -> str | None:
    """The canonical form of an address (``10.0.0.5/24`` allowed), or ``None``.

    Zero-padded IPv4 octets (``192.168.245.010``, as some CMDBs store them) are read as
    decimal, which is what those exports mean.
    """
    value = text.strip()
    address, slash, prefix = value.partition("/")
    if _PADDED_IPV4.match(address):
        value = ".".join(str(int(octet)) for octet in address.split(".")) + slash + prefix
    try:
        return str(ipaddress.ip_interface(value).ip)
    except ValueError:
        return None
