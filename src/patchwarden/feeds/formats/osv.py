"""OSV records (https://ossf.github.io/osv-schema/) to ``Advisory`` values.

Accepted containers: one JSON record, a JSON list of records, JSON Lines, a YAML record
(the PyPA advisory database writes YAML) and osv.dev's per-ecosystem ``all.zip`` (a
flat zip of ``<ID>.json``). Folders of records are read by ``detect.parse_path``.

What is validated, as the schema says: ``id`` and ``modified`` are required; timestamps
are RFC 3339 with a zone; ``package`` has ``ecosystem`` and ``name``; a range has a
known ``type`` and a non-empty ``events`` list in which every event has exactly one of
introduced / fixed / last_affected / limit, at least one is ``introduced`` and ``fixed``
and ``last_affected`` do not mix. Not validated: the id prefix and ecosystem lists
(new ones appear all the time) and the CVSS vectors themselves (``core.cvss`` scores
them where they are used). Ids must be unique within one feed.

Field mapping decisions:

* ``upstream`` ids (Ubuntu, Red Hat) are appended to ``related`` — the model has no
  field of its own for them and ``Advisory.cve_ids`` then finds their CVEs.
* An ``affected`` entry without ``package`` (the schema allows GIT-only ranges) is
  validated and then dropped: it names commits, not packages, so it can never match an
  installed package, and an empty ecosystem would only confuse the store.
* ``database_severity`` is the publisher's rating, first found of:
  ``database_specific.severity`` (GHSA: ``CRITICAL``, ``MODERATE``…); a severity entry of
  type ``Ubuntu`` (``medium``…); the Red Hat-style summary prefix of RHSA, AlmaLinux and
  Rocky Linux advisories (``Important: kernel security update`` gives ``Important``).
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterable, Mapping

from patchwarden.core.errors import FeedError
from patchwarden.core.model import (
    EVENT_KINDS,
    Advisory,
    Affected,
    AffectedRange,
    Event,
    EventKind,
    RangeType,
    Severity,
)
from patchwarden.feeds.formats._common import (
    Where,
    as_object,
    decode_text,
    get_list,
    get_object,
    get_str,
    load_json,
    load_yaml,
    rfc3339,
    str_tuple,
    type_name,
    unique,
)
from patchwarden.feeds.inflate import InflateBudget
from patchwarden.feeds.parsed import ParsedFeed

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_RANGE_TYPES: dict[object, RangeType] = {"ECOSYSTEM": "ECOSYSTEM", "SEMVER": "SEMVER", "GIT": "GIT"}
_EVENT_KINDS: dict[object, EventKind] = {kind: kind for kind in EVENT_KINDS}
_RED_HAT_RATING = re.compile(r"(Critical|Important|Moderate|Low):\s")
_EXPECTED = "an OSV record (a JSON object with id and modified)"
_EVENT_HINT = (
    "each event is an object with exactly one key: introduced, fixed, last_affected or limit, "
    'e.g. {"fixed": "1.2.3"}'
)


# ------------------------------------------------------------------------- containers


def parse_osv(data: bytes, source: str, budget: InflateBudget | None = None) -> ParsedFeed:
    """Parse OSV data in any accepted container, recognised from its content.

    A zip is read as osv.dev's ``all.zip`` (inflated within ``budget``'s bounds, the
    default limits when none is given); several JSON objects one per line (or a
    ``.jsonl`` name) as JSON Lines; other content starting with ``{`` or ``[`` as one
    record or a list of records; anything else as a YAML record.
    """
    if data.startswith(ZIP_MAGIC):
        return parse_osv_zip(data, source, budget)
    body = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    if source.endswith(".jsonl") or looks_like_json_lines(body):
        return parse_osv_jsonl(data, source)
    if body[:1] in (b"{", b"["):
        return parse_osv_json(data, source)
    return parse_osv_yaml(data, source)


def parse_osv_json(data: bytes, source: str) -> ParsedFeed:
    """One OSV record (a JSON object) or a JSON list of records."""
    return osv_feed(load_json(data, source, expected=_EXPECTED), source)


def parse_osv_yaml(data: bytes, source: str) -> ParsedFeed:
    """One OSV record written as YAML (as in the PyPA advisory database)."""
    return osv_feed(load_yaml(data, source, expected=_EXPECTED), source)


def parse_osv_jsonl(data: bytes, source: str) -> ParsedFeed:
    """JSON Lines: one OSV record per line; errors name the line number."""
    advisories: list[Advisory] = []
    for number, line in enumerate(decode_text(data, source).splitlines(), start=1):
        if not line.strip():
            continue
        where = Where(source, f"line {number}")
        record = load_json(line.encode(), source, expected=_EXPECTED, record=where.record)
        advisories.append(osv_advisory(record, where))
    return _feed(source, advisories)


def parse_osv_zip(data: bytes, source: str, budget: InflateBudget | None = None) -> ParsedFeed:
    """osv.dev's ``all.zip``: one ``<ID>.json`` record per member.

    Members that are not ``.json`` files are skipped and counted in
    ``meta["skipped_members"]``. Members are inflated within ``budget``'s bounds
    (``feeds.inflate``). A corrupt archive or member raises ``FeedError``.
    """
    budget = budget or InflateBudget()
    advisories: list[Advisory] = []
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise FeedError(
            f"not a readable zip archive ({exc})",
            source=source,
            hint="the download may be truncated; fetch all.zip again",
        ) from exc
    with archive:
        members = budget.zip_members(archive, source)
        skipped = sum(1 for info in archive.infolist() if not info.is_dir()) - len(members)
        if not members:
            raise FeedError(
                f"the zip archive holds no .json member ({skipped} other files)",
                source=source,
                hint="expected osv.dev's all.zip: one <ID>.json OSV record per member",
            )
        for info in members:
            member = f"{source}!{info.filename}"
            raw = budget.read_zip_member(archive, info, member)
            record = load_json(raw, member, expected=_EXPECTED)
            if isinstance(record, list):
                raise FeedError(
                    f"expected {_EXPECTED}, found a list", source=member, hint="one record per file"
                )
            advisories.append(osv_advisory(record, Where(member)))
    feed = _feed(source, advisories)
    if skipped:
        feed.meta["skipped_members"] = str(skipped)
    return feed


def osv_feed(decoded: object, source: str) -> ParsedFeed:
    """A feed from an already decoded record or list of records."""
    if isinstance(decoded, list):
        advisories = [
            osv_advisory(record, Where(source, f"index {index}"))
            for index, record in enumerate(decoded)
        ]
    else:
        advisories = [osv_advisory(decoded, Where(source))]
    return _feed(source, advisories)


def _feed(source: str, advisories: list[Advisory]) -> ParsedFeed:
    seen: dict[str, int] = {}
    for index, advisory in enumerate(advisories):
        if advisory.id in seen:
            raise FeedError(
                f"duplicate id (records {seen[advisory.id]} and {index})",
                source=source,
                record=advisory.id,
                field="id",
                hint="each OSV id may appear once per feed",
            )
        seen[advisory.id] = index
    return ParsedFeed(kind="osv", source=source, advisories=advisories)


def looks_like_json_lines(data: bytes) -> bool:
    """Whether ``data`` starts like JSON Lines (a one-line object, then more)."""
    # JSON Lines starts with an object that ends on its own line and is followed by
    # another value; a pretty-printed record never closes its first line.
    first, _, rest = data.lstrip().partition(b"\n")
    return first.rstrip().endswith(b"}") and first.startswith(b"{") and bool(rest.strip())


# ---------------------------------------------------------------------------- records


def osv_advisory(record: object, where: Where) -> Advisory:
    """Map one decoded OSV record to an ``Advisory``, validating it on the way."""
    obj = as_object(record, where, None, expected=_EXPECTED)
    ident = get_str(obj, "id", where, required=True).strip()
    where = where.at(ident) if where.record is None else where.at(f"{ident} ({where.record})")
    if "modified" not in obj or obj["modified"] is None:
        raise where.error(
            "missing required field 'modified'",
            field="modified",
            hint="every OSV record needs a modified timestamp, e.g. 2024-05-01T12:00:00Z",
        )
    modified = rfc3339(obj["modified"], where, "modified")
    published = rfc3339(obj["published"], where, "published") if obj.get("published") else None
    withdrawn = rfc3339(obj["withdrawn"], where, "withdrawn") if obj.get("withdrawn") else None

    aliases = str_tuple(get_list(obj, "aliases", where), where, "aliases")
    related = str_tuple(get_list(obj, "related", where), where, "related")
    upstream = str_tuple(get_list(obj, "upstream", where), where, "upstream")
    summary = get_str(obj, "summary", where)
    severity = _severities(get_list(obj, "severity", where), where, "severity")
    affected: list[Affected] = []
    for index, item in enumerate(get_list(obj, "affected", where)):
        entry = _affected(item, where, f"affected[{index}]")
        if entry is not None:
            affected.append(entry)
    references = tuple(
        get_str(
            as_object(ref, where, f"references[{index}]", expected="a reference object"),
            "url",
            where,
            path=f"references[{index}].url",
            required=True,
        )
        for index, ref in enumerate(get_list(obj, "references", where))
    )
    return Advisory(
        id=ident,
        modified=modified,
        source="osv",
        aliases=unique(aliases),
        related=unique((*related, *upstream)),
        summary=summary,
        details=get_str(obj, "details", where),
        published=published,
        withdrawn=withdrawn,
        severity=severity,
        affected=tuple(affected),
        references=unique(references),
        database_severity=_database_severity(obj, summary, severity),
    )


def _severities(items: Iterable[object], where: Where, path: str) -> tuple[Severity, ...]:
    out: list[Severity] = []
    for index, item in enumerate(items):
        here = f"{path}[{index}]"
        entry = as_object(item, where, here, expected="a severity object with type and score")
        out.append(
            Severity(
                type=get_str(entry, "type", where, path=f"{here}.type", required=True),
                score=get_str(entry, "score", where, path=f"{here}.score", required=True),
            )
        )
    return tuple(out)


def _affected(item: object, where: Where, path: str) -> Affected | None:
    entry = as_object(item, where, path, expected="an affected object")
    ecosystem = name = ""
    if entry.get("package") is not None:
        package = get_object(entry, "package", where, path=f"{path}.package")
        ecosystem = get_str(
            package, "ecosystem", where, path=f"{path}.package.ecosystem", required=True
        )
        name = get_str(package, "name", where, path=f"{path}.package.name", required=True)
    ranges = tuple(
        _range(item, where, f"{path}.ranges[{index}]")
        for index, item in enumerate(get_list(entry, "ranges", where, path=f"{path}.ranges"))
    )
    versions = str_tuple(
        get_list(entry, "versions", where, path=f"{path}.versions"), where, f"{path}.versions"
    )
    severity = _severities(
        get_list(entry, "severity", where, path=f"{path}.severity"), where, f"{path}.severity"
    )
    if not name:
        return None  # no package: GIT-only, validated but not kept (see module docstring)
    return Affected(
        ecosystem=ecosystem, name=name, ranges=ranges, versions=versions, severity=severity
    )


def _range(item: object, where: Where, path: str) -> AffectedRange:
    entry = as_object(item, where, path, expected="a range object with type and events")
    range_type = _RANGE_TYPES.get(entry.get("type"))
    if range_type is None:
        raise where.error(
            f"unknown range type {entry.get('type')!r}",
            field=f"{path}.type",
            hint="OSV range types are ECOSYSTEM, SEMVER and GIT",
        )
    raw_events = get_list(entry, "events", where, path=f"{path}.events")
    if not raw_events:
        raise where.error(
            "a range needs at least one event", field=f"{path}.events", hint=_EVENT_HINT
        )
    events = tuple(
        _event(raw, where, f"{path}.events[{index}]") for index, raw in enumerate(raw_events)
    )
    kinds = {event.kind for event in events}
    if "introduced" not in kinds:
        raise where.error(
            "range has no 'introduced' event",
            field=f"{path}.events",
            hint='add {"introduced": "0"} when every version before the fix is affected',
        )
    if "fixed" in kinds and "last_affected" in kinds:
        raise where.error(
            "range mixes 'fixed' and 'last_affected' events",
            field=f"{path}.events",
            hint="the OSV schema allows only one of them per range; split it into two ranges",
        )
    return AffectedRange(type=range_type, events=events)


def _event(item: object, where: Where, path: str) -> Event:
    if not isinstance(item, dict) or len(item) != 1:
        found = f"keys {sorted(item)}" if isinstance(item, dict) else type_name(item)
        raise where.error(
            f"an event must have exactly one key, found {found}", field=path, hint=_EVENT_HINT
        )
    ((key, value),) = item.items()
    kind = _EVENT_KINDS.get(key)
    if kind is None:
        raise where.error(f"unknown event kind {key!r}", field=path, hint=_EVENT_HINT)
    if not isinstance(value, str) or not value:
        raise where.error(
            f"event version must be a non-empty string, found {type_name(value)}",
            field=f"{path}.{key}",
            hint="quote versions in YAML so that 1.10 does not become the number 1.1",
        )
    return Event(kind=kind, version=value)


def _database_severity(
    obj: Mapping[str, object], summary: str, severity: tuple[Severity, ...]
) -> str:
    database_specific = obj.get("database_specific")
    if isinstance(database_specific, dict):
        rating = database_specific.get("severity")
        if isinstance(rating, str) and rating.strip():
            return rating.strip()
    for entry in severity:
        if entry.type == "Ubuntu":
            return entry.score
    match = _RED_HAT_RATING.match(summary)
    return match.group(1) if match else ""
