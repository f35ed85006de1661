"""Recognise a feed file's format from its content, and parse it with the right parser.

Detection looks at content, never at file names alone: zip (OSV ``all.zip``), gzip
(unwrapped first, once, within the bounds of ``feeds.inflate``), JSON by its top-level
keys (KEV ``catalogVersion``, NVD ``resultsPerPage``, CVE JSON 5 ``cveMetadata``, secdb
``distroversion``, the tracker's package → CVE → ``releases`` nesting, OSV ``id``), JSON
Lines, the DSA/DLA list header shape, the EPSS comment line or header, and YAML (OSV
record or secdb).

A folder is read as one feed: every ``.json`` / ``.jsonl`` / ``.yaml`` / ``.yml`` file
below it (hidden paths skipped), in sorted order, all of the kind detected for the
first one. Alpine secdb folders are merged into ``ALPINE-<CVE>`` advisories.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import orjson

from patchwarden.core.errors import FeedError
from patchwarden.feeds.formats import alpine, cve5, debian, epss, kev, nvd, osv
from patchwarden.feeds.formats._common import (
    Where,
    load_yaml,
    require_aware,
    type_name,
)
from patchwarden.feeds.inflate import DEFAULT_LIMITS, InflateBudget, InflateLimits
from patchwarden.feeds.parsed import FEED_KINDS, FeedKind, ParsedFeed, combine

FOLDER_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml")
_KIND_HINT = f"pass the kind explicitly, one of: {', '.join(FEED_KINDS)}"


def detect_format(path: Path, *, limits: InflateLimits = DEFAULT_LIMITS) -> FeedKind:
    """The feed kind of a file or folder, recognised from its content.

    Raises ``FeedError`` when the content matches no known format (or is unreadable).
    """
    if path.is_dir():
        return detect_bytes(*_read(_folder_files(path)[0]), limits=limits)
    return detect_bytes(*_read(path), limits=limits)


def detect_bytes(data: bytes, source: str, *, limits: InflateLimits = DEFAULT_LIMITS) -> FeedKind:
    """The feed kind of in-memory content; ``source`` is used in messages."""
    return _sniff(InflateBudget(limits).gunzip(data, source), source)[0]


def parse_path(
    path: Path, kind: str | None = None, *, now: datetime, budget: InflateBudget | None = None
) -> ParsedFeed:
    """Parse a feed file or folder; ``kind`` forces the format instead of detecting it.

    ``now`` stands in for the ``modified`` time of formats that have none (Debian
    tracker and lists, Alpine secdb). Wrong-format input raises ``FeedError`` saying
    what was expected and what was found. Compressed content is inflated within
    ``budget`` (one per import or sync; the default limits when none is given).
    """
    require_aware(now)
    forced = _checked_kind(kind)
    budget = budget or InflateBudget()
    if not path.is_dir():
        return parse_bytes(*_read(path), forced, now=now, budget=budget)
    files = _folder_files(path)
    folder_kind = forced or detect_bytes(*_read(files[0]), limits=budget.limits)
    if folder_kind == "alpine-secdb":
        return alpine.parse_alpine_secdbs(
            (_read(file) for file in files), source=str(path), now=now
        )
    parts = [parse_bytes(*_read(file), folder_kind, now=now, budget=budget) for file in files]
    return combine(folder_kind, str(path), parts)


def parse_bytes(
    data: bytes,
    source: str,
    kind: str | None = None,
    *,
    now: datetime,
    budget: InflateBudget | None = None,
) -> ParsedFeed:
    """Parse in-memory feed content (a download, a zip member) like ``parse_path``."""
    require_aware(now)
    forced = _checked_kind(kind)
    budget = budget or InflateBudget()
    data = budget.gunzip(data, source)
    if forced is None:
        detected, decoded = _sniff(data, source)
        if decoded is not None:
            return _from_decoded(detected, decoded, data, source, now=now, budget=budget)
        return _parse_as(detected, data, source, now, budget)
    try:
        return _parse_as(forced, data, source, now, budget)
    except FeedError as exc:
        found = _detect_or_none(data, source)
        if found is None or found == forced:
            raise
        raise FeedError(
            f"expected {forced!r} content, but it looks like {found!r}",
            source=source,
            hint=f"pass kind {found!r}, or no kind to detect it",
        ) from exc


# --------------------------------------------------------------------------- internals


def _detect_or_none(data: bytes, source: str) -> FeedKind | None:
    try:
        return _sniff(data, source)[0]
    except FeedError:
        return None


def _checked_kind(kind: str | None) -> FeedKind | None:
    if kind is None:
        return None
    for known in FEED_KINDS:
        if kind == known:
            return known
    raise FeedError(f"unknown feed kind {kind!r}", hint=_KIND_HINT)


def _read(path: Path) -> tuple[bytes, str]:
    try:
        return path.read_bytes(), str(path)
    except OSError as exc:
        raise FeedError(f"cannot read the file: {exc.strerror}", source=str(path)) from exc


def _folder_files(folder: Path) -> list[Path]:
    files = sorted(
        path
        for path in folder.rglob("*")
        if path.is_file()
        and path.name.endswith(FOLDER_SUFFIXES)
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    )
    if not files:
        raise FeedError(
            f"no feed files ({', '.join(FOLDER_SUFFIXES)}) in the folder",
            source=str(folder),
            hint="point at a feed file or a folder of OSV / CVE JSON 5 / secdb files",
        )
    return files


def _parse_as(
    kind: FeedKind, data: bytes, source: str, now: datetime, budget: InflateBudget
) -> ParsedFeed:
    parsers: dict[FeedKind, Callable[[bytes, str], ParsedFeed]] = {
        "osv": lambda d, s: osv.parse_osv(d, s, budget),
        "nvd": nvd.parse_nvd,
        "cve5": cve5.parse_cve5,
        "kev": kev.parse_kev,
        "epss": epss.parse_epss,
        "debian-tracker": lambda d, s: debian.parse_debian_tracker(d, s, now=now),
        "alpine-secdb": lambda d, s: alpine.parse_alpine_secdb(d, s, now=now),
        "debian-dsa": lambda d, s: debian.parse_debian_list(d, s, kind="debian-dsa", now=now),
        "debian-dla": lambda d, s: debian.parse_debian_list(d, s, kind="debian-dla", now=now),
    }
    return parsers[kind](data, source)


def _from_decoded(
    kind: FeedKind,
    decoded: object,
    data: bytes,
    source: str,
    *,
    now: datetime,
    budget: InflateBudget,
) -> ParsedFeed:
    # Reuse the JSON/YAML decoded while sniffing instead of decoding a big file twice.
    if kind == "osv":
        return osv.osv_feed(decoded, source)
    if kind == "nvd":
        return nvd.nvd_feed(decoded, source)
    if kind == "cve5":
        return cve5.cve5_feed(decoded, source)
    if kind == "kev":
        return kev.kev_feed(decoded, source)
    if kind == "debian-tracker":
        return debian.debian_tracker_feed(decoded, source, now=now)
    return _parse_as(kind, data, source, now, budget)


def _sniff(data: bytes, source: str) -> tuple[FeedKind, object | None]:
    """The kind of already unwrapped ``data``, and its decoded JSON/YAML when decoding
    was needed."""
    if data.startswith(osv.ZIP_MAGIC):
        return "osv", None
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    text = body[:4096].decode("utf-8", errors="replace")
    # Before JSON: a DSA/DLA list starts with "[", like a JSON array.
    list_kind = debian.looks_like_debian_list(text)
    if list_kind is not None:
        return list_kind, None
    if body[:1] in (b"{", b"["):
        return _sniff_json(body, source)
    if epss.looks_like_epss(text):
        return "epss", None
    if text.startswith("---") or source.endswith((".yaml", ".yml")) or _yaml_mapping(text):
        decoded = load_yaml(data, source, expected="a feed document")
        kind = _kind_of_document(decoded)
        if kind is not None:
            return kind, decoded
    raise FeedError(
        f"unrecognised feed format (starts with {text[:40]!r})", source=source, hint=_KIND_HINT
    )


def _sniff_json(body: bytes, source: str) -> tuple[FeedKind, object | None]:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if osv.looks_like_json_lines(body):
            return "osv", None
        raise Where(source).error(
            f"not valid JSON ({exc})",
            hint="the file may be truncated or corrupt; download it again",
        ) from exc
    kind = _kind_of_document(decoded)
    if kind is None:
        found = (
            f"an object with keys {sorted(decoded)[:6]}"
            if isinstance(decoded, dict)
            else type_name(decoded)
        )
        raise FeedError(f"unrecognised JSON feed: {found}", source=source, hint=_KIND_HINT)
    return kind, decoded


def _kind_of_document(decoded: object) -> FeedKind | None:
    if isinstance(decoded, list):
        first = decoded[0] if decoded else {"id": None}
        if cve5.is_cve5(first):
            return "cve5"
        return "osv" if isinstance(first, dict) and "id" in first else None
    if kev.is_kev(decoded):
        return "kev"
    if nvd.is_nvd_page(decoded):
        return "nvd"
    if cve5.is_cve5(decoded):
        return "cve5"
    if alpine.is_secdb(decoded):
        return "alpine-secdb"
    if debian.tracker_shape(decoded):
        return "debian-tracker"
    if isinstance(decoded, dict) and "id" in decoded:
        return "osv"
    return None


def _yaml_mapping(text: str) -> bool:
    # A YAML mapping's first line is "key:" or "key: value".
    first = text.split("\n", 1)[0]
    key, sep, _ = first.partition(":")
    return bool(sep) and key.replace("_", "").isalnum()
