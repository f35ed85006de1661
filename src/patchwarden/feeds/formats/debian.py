"""Debian Security Tracker data: the per-CVE JSON and the DSA / DLA advisory lists.

Both name *source* packages and Debian releases by codename; a codename becomes the OSV
ecosystem ``Debian:<version>`` through ``DEBIAN_RELEASES``. ``sid`` and
``experimental`` have no OSV ecosystem and are skipped; so are codenames the table does
not know yet — both are listed in ``meta["skipped_releases"]`` rather than dropped
silently (pass ``releases=`` to map a new codename before the table is updated).

Tracker JSON (``tracker/data/json``): one advisory per CVE, ``DEBIAN-<CVE>`` as osv.dev
names them, with one affected entry per (source package, release):

* ``resolved`` with ``fixed_version`` X: introduced ``0``, fixed X;
* ``resolved`` with ``fixed_version`` ``0``: never affected, no entry;
* ``open`` / ``undetermined``: introduced ``0`` and no fix, ``note`` saying which
  (``open, end-of-life`` when the release's urgency says it is out of support).

A CVE without any affected entry yields no advisory (counted in
``meta["not_affected"]``). ``database_severity`` is the highest urgency among the
releases that produced an entry (unimportant < low < medium < high; the tracker's
trailing ``*`` marks, meaning "taken from NVD", are dropped; "not yet assigned" is no
rating). The tracker carries no timestamps, so ``modified`` is the caller's ``now`` (the
import time) and ``published`` is unknown.

DSA / DLA lists (``data/DSA/list``, ``data/DLA/list``): one advisory per block, id as
written (``DSA-5380-1``, old ``DSA-141``), aliases the CVEs of its ``{…}`` line,
``published`` the block's date (midnight UTC), ``modified`` the caller's ``now``,
``summary`` the header text after the id, ``details`` its ``NOTE:`` lines. Each
``[codename] - package version`` line gives an affected entry with introduced ``0`` and
fixed ``version``; ``<not-affected>`` gives none; any other ``<status>`` (``unfixed``,
``end-of-life``) gives an open entry. ``note`` holds the codename, status and comment.
Notices without packages (``DSA-4205-1 jessie end-of-life``) are kept, with nothing
affected, so the list's advisory count is preserved.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from patchwarden.core.model import Advisory, Affected, AffectedRange, Event
from patchwarden.feeds.formats._common import (
    CVE_ID,
    Where,
    as_object,
    decode_text,
    get_str,
    load_json,
    require_aware,
    unique,
)
from patchwarden.feeds.parsed import ParsedFeed

DEBIAN_RELEASES: Mapping[str, str] = {
    "woody": "3.0",
    "sarge": "3.1",
    "etch": "4",
    "lenny": "5",
    "squeeze": "6",
    "wheezy": "7",
    "jessie": "8",
    "stretch": "9",
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
    "forky": "14",
}
# Rolling suites: no OSV ecosystem exists for them.
UNRELEASED_SUITES = frozenset({"sid", "experimental"})

URGENCY_RANK: Mapping[str, int] = {"unimportant": 1, "low": 2, "medium": 3, "high": 4}
_TRACKER_STATUSES = frozenset({"resolved", "open", "undetermined"})
_TRACKER_EXPECTED = "the Debian Security Tracker JSON ({source package: {CVE: {releases}}})"

DebianListKind = Literal["debian-dsa", "debian-dla"]


def _range(fixed: str | None) -> tuple[AffectedRange, ...]:
    events = [Event("introduced", "0")]
    if fixed is not None:
        events.append(Event("fixed", fixed))
    return (AffectedRange("ECOSYSTEM", tuple(events)),)


def _skipped_meta(skipped: set[str]) -> dict[str, str]:
    return {"skipped_releases": ",".join(sorted(skipped))} if skipped else {}


# ----------------------------------------------------------------------- tracker JSON


@dataclass(slots=True)
class _CveEntry:
    description: str = ""
    affected: list[Affected] = field(default_factory=list)
    urgency: str = ""


def parse_debian_tracker(
    data: bytes,
    source: str,
    *,
    now: datetime,
    releases: Mapping[str, str] = DEBIAN_RELEASES,
) -> ParsedFeed:
    """Parse the tracker's JSON export into one ``DEBIAN-<CVE>`` advisory per CVE."""
    return debian_tracker_feed(
        load_json(data, source, expected=_TRACKER_EXPECTED), source, now=now, releases=releases
    )


def debian_tracker_feed(
    decoded: object,
    source: str,
    *,
    now: datetime,
    releases: Mapping[str, str] = DEBIAN_RELEASES,
) -> ParsedFeed:
    """Like ``parse_debian_tracker`` for already decoded JSON."""
    require_aware(now)
    top = as_object(decoded, Where(source), None, expected=_TRACKER_EXPECTED)
    entries: dict[str, _CveEntry] = {}
    skipped: set[str] = set()
    for package, cves in top.items():
        cve_map = as_object(cves, Where(source, package), None, expected="an object of CVEs")
        for cve, raw in cve_map.items():
            where = Where(source, f"{package}/{cve}")
            record = as_object(raw, where, None, expected="a CVE object with releases")
            entry = entries.setdefault(cve, _CveEntry())
            if not entry.description:
                entry.description = get_str(record, "description", where)
            for codename, raw_release in _releases(record, where):
                path = f"releases.{codename}"
                release = as_object(raw_release, where, path, expected="a release object")
                version = releases.get(codename)
                if version is None:
                    skipped.add(codename)
                    continue
                affected = _tracker_affected(package, version, release, where, path)
                if affected is None:
                    continue
                entry.affected.append(affected)
                urgency = get_str(release, "urgency", where, path=f"{path}.urgency").rstrip("*")
                if URGENCY_RANK.get(urgency, 0) > URGENCY_RANK.get(entry.urgency, 0):
                    entry.urgency = urgency

    advisories: list[Advisory] = []
    not_affected = 0
    for cve, entry in entries.items():
        if not entry.affected:
            not_affected += 1
            continue
        advisories.append(
            Advisory(
                id=f"DEBIAN-{cve}",
                modified=now,
                source="debian-tracker",
                aliases=(cve,) if CVE_ID.fullmatch(cve) else (),
                details=entry.description,
                affected=tuple(entry.affected),
                database_severity=entry.urgency,
            )
        )
    meta = {"not_affected": str(not_affected), **_skipped_meta(skipped)}
    return ParsedFeed(kind="debian-tracker", source=source, advisories=advisories, meta=meta)


def _releases(record: Mapping[str, object], where: Where) -> list[tuple[str, object]]:
    value = record.get("releases")
    # The real export writes an empty list, not an object, when a CVE has no release.
    if value is None or value == []:
        return []
    return list(as_object(value, where, "releases", expected="an object of releases").items())


def _tracker_affected(
    package: str, version: str, release: Mapping[str, object], where: Where, path: str
) -> Affected | None:
    status = get_str(release, "status", where, path=f"{path}.status", required=True)
    if status not in _TRACKER_STATUSES:
        raise where.error(
            f"unknown status {status!r}",
            field=f"{path}.status",
            hint="the tracker's statuses are resolved, open and undetermined",
        )
    ecosystem = f"Debian:{version}"
    if status == "resolved":
        fixed = get_str(
            release, "fixed_version", where, path=f"{path}.fixed_version", required=True
        )
        if fixed == "0":
            return None
        return Affected(ecosystem=ecosystem, name=package, ranges=_range(fixed))
    note = status
    if get_str(release, "urgency", where, path=f"{path}.urgency") == "end-of-life":
        note = f"{status}, end-of-life"
    return Affected(ecosystem=ecosystem, name=package, ranges=_range(None), note=note)


# -------------------------------------------------------------------- DSA / DLA lists

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
_HEADER = re.compile(r"\[(\d{1,2}) ([A-Za-z]{3}) (\d{4})\]\s+(D[SL]A-\d+(?:-\d+)?)(?:\s+(.*))?")
_RELEASE = re.compile(r"\[([a-z][a-z0-9-]*)\]\s+-\s+(\S+)(?:\s+(.*))?")
_STATUS = re.compile(r"<([a-z-]+)>\s*(.*)")
_LIST_HINT = (
    "blocks look like '[29 Mar 2023] DSA-5380-1 pkg - title', then indented "
    "'{CVE-…}', '[codename] - pkg version' and 'NOTE: …' lines"
)


@dataclass(slots=True)
class _Block:
    ident: str
    line: int
    published: datetime
    summary: str
    cves: list[str] = field(default_factory=list)
    affected: list[Affected] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_debian_list(
    data: bytes,
    source: str,
    *,
    kind: DebianListKind,
    now: datetime,
    releases: Mapping[str, str] = DEBIAN_RELEASES,
) -> ParsedFeed:
    """Parse a DSA list (``kind="debian-dsa"``) or DLA list (``"debian-dla"``)."""
    require_aware(now)
    prefix = "DSA-" if kind == "debian-dsa" else "DLA-"
    blocks: list[_Block] = []
    skipped: set[str] = set()
    for number, raw in enumerate(decode_text(data, source).splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = _HEADER.fullmatch(line)
        if header is not None:
            block = _header_block(header, number, source)
            if not block.ident.startswith(prefix):
                raise Where(source, f"{block.ident} (line {number})").error(
                    f"expected a {prefix[:3]} list, found {block.ident}",
                    field="id",
                    hint="DSA and DLA lists are separate files; check the kind",
                )
            blocks.append(block)
            continue
        if not blocks:
            raise Where(source, f"line {number}").error(
                f"text before the first advisory header: {line[:60]!r}", hint=_LIST_HINT
            )
        _body_line(
            blocks[-1],
            line,
            Where(source, f"{blocks[-1].ident} (line {number})"),
            releases,
            skipped,
        )

    seen: dict[str, int] = {}
    advisories: list[Advisory] = []
    for block in blocks:
        if block.ident in seen:
            raise Where(source, f"{block.ident} (line {block.line})").error(
                f"duplicate advisory id (first at line {seen[block.ident]})", field="id"
            )
        seen[block.ident] = block.line
        advisories.append(
            Advisory(
                id=block.ident,
                modified=now,
                source=kind,
                aliases=unique(block.cves),
                summary=block.summary,
                details="\n".join(block.notes),
                published=block.published,
                affected=tuple(block.affected),
            )
        )
    return ParsedFeed(kind=kind, source=source, advisories=advisories, meta=_skipped_meta(skipped))


def _header_block(header: re.Match[str], number: int, source: str) -> _Block:
    day, month, year, ident, rest = header.groups()
    where = Where(source, f"{ident} (line {number})")
    month_number = _MONTHS.get(month)
    try:
        if month_number is None:
            raise ValueError(f"unknown month {month!r}")
        published = datetime(int(year), month_number, int(day), tzinfo=UTC)
    except ValueError as exc:
        raise where.error(
            f"invalid date '{day} {month} {year}': {exc}",
            field="date",
            hint="dates are written DD Mon YYYY, e.g. 29 Mar 2023",
        ) from exc
    return _Block(ident=ident, line=number, published=published, summary=(rest or "").strip())


def _body_line(
    block: _Block,
    line: str,
    where: Where,
    releases: Mapping[str, str],
    skipped: set[str],
) -> None:
    if line.startswith("{"):
        if not line.endswith("}"):
            raise where.error("unterminated '{' CVE list", field="cves", hint=_LIST_HINT)
        # Very old blocks may list other ids (bug numbers); only CVE ids are aliases.
        block.cves.extend(token for token in line[1:-1].split() if CVE_ID.fullmatch(token))
        return
    if line.startswith("NOTE:"):
        block.notes.append(line[5:].strip())
        return
    release = _RELEASE.fullmatch(line)
    if release is None:
        raise where.error(f"unrecognised line {line[:60]!r}", hint=_LIST_HINT)
    codename, package, rest = release.groups()
    version = releases.get(codename)
    if version is None:
        skipped.add(codename)
        return
    rest = (rest or "").strip()
    if not rest:
        raise where.error(
            f"no fixed version for {package} in {codename}",
            field=f"[{codename}] {package}",
            hint="write '[codename] - package version' or a status such as <not-affected>",
        )
    status = _STATUS.fullmatch(rest)
    ecosystem = f"Debian:{version}"
    if status is None:
        fixed, _, comment = rest.partition(" ")
        note = " ".join(part for part in (codename, comment.strip()) if part)
        block.affected.append(
            Affected(ecosystem=ecosystem, name=package, ranges=_range(fixed), note=note)
        )
        return
    state, comment = status.groups()
    if state == "not-affected":
        return
    note = " ".join(part for part in (codename, state, comment.strip()) if part)
    block.affected.append(
        Affected(ecosystem=ecosystem, name=package, ranges=_range(None), note=note)
    )


def looks_like_debian_list(text: str) -> DebianListKind | None:
    """``debian-dsa`` / ``debian-dla`` when the first line is a list header, else None."""
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        header = _HEADER.fullmatch(line)
        if header is None:
            return None
        return "debian-dsa" if header.group(4).startswith("DSA-") else "debian-dla"
    return None


def tracker_shape(decoded: object) -> bool:
    """Whether decoded JSON has the tracker's {package: {CVE: {releases: …}}} shape."""
    if not isinstance(decoded, dict) or not decoded:
        return False
    first = next(iter(decoded.values()))
    if not isinstance(first, dict) or not first:
        return False
    record = next(iter(first.values()))
    return isinstance(record, dict) and "releases" in record
