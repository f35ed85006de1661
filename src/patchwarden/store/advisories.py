"""Advisory persistence: incremental import, lookup, and loading the match index."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from patchwarden.core import ecosystems
from patchwarden.core.matching import AdvisoryIndex
from patchwarden.core.model import Advisory, Affected, AffectedRange, Event, Severity
from patchwarden.core.osv import Interval, flatten_affected
from patchwarden.store.bulk import chunks, insert_rows, one_of
from patchwarden.store.models import (
    AdvisoryAlias,
    AdvisoryRow,
    AffectedRangeRow,
    AffectedVersionRow,
    PackageRow,
    PackageVuln,
    table_of,
)

NameKey = tuple[str, str]


@dataclass
class AdvisoryImportResult:
    """What an advisory import changed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    problems: list[str] = field(default_factory=list)
    touched: set[NameKey] = field(default_factory=set)

    @property
    def changed(self) -> int:
        """Advisories written (added or updated)."""
        return self.added + self.updated


# ------------------------------------------------------------------ serialization


def affected_to_json(affected: Iterable[Affected]) -> list[dict[str, Any]]:
    """The stored JSON form of ``Advisory.affected`` (kept verbatim for explanations)."""
    return [
        {
            "ecosystem": a.ecosystem,
            "name": a.name,
            "ranges": [
                {"type": r.type, "events": [[e.kind, e.version] for e in r.events]}
                for r in a.ranges
            ],
            "versions": list(a.versions),
            "severity": [[s.type, s.score] for s in a.severity],
            "note": a.note,
        }
        for a in affected
    ]


def row_to_advisory(row: AdvisoryRow) -> Advisory:
    """Rebuild the domain advisory from its row."""
    return Advisory(
        id=row.ext_id,
        modified=row.modified,
        source=row.source,
        aliases=tuple(row.aliases),
        related=tuple(row.related),
        summary=row.summary,
        details=row.details,
        published=row.published,
        withdrawn=row.withdrawn,
        severity=tuple(Severity(t, s) for t, s in row.severity),
        affected=tuple(
            Affected(
                ecosystem=a["ecosystem"],
                name=a["name"],
                ranges=tuple(
                    AffectedRange(r["type"], tuple(Event(k, v) for k, v in r["events"]))
                    for r in a["ranges"]
                ),
                versions=tuple(a["versions"]),
                severity=tuple(Severity(t, s) for t, s in a.get("severity", [])),
                note=a.get("note", ""),
            )
            for a in row.affected
        ),
        references=tuple(row.references),
        database_severity=row.database_severity,
    )


def content_hash(advisory: Advisory) -> str:
    """sha256 of an advisory's content, ``modified`` excluded."""
    values = _row_values(advisory, with_hash=False)
    del values["modified"]
    encoded = orjson.dumps(values, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(encoded).hexdigest()


def _row_values(advisory: Advisory, *, with_hash: bool = True) -> dict[str, Any]:
    values = {
        "ext_id": advisory.id,
        "source": advisory.source,
        "aliases": list(advisory.aliases),
        "related": list(advisory.related),
        "summary": advisory.summary,
        "details": advisory.details,
        "published": advisory.published,
        "modified": advisory.modified,
        "withdrawn": advisory.withdrawn,
        "severity": [[s.type, s.score] for s in advisory.severity],
        "database_severity": advisory.database_severity,
        "references": list(advisory.references),
        "affected": affected_to_json(advisory.affected),
    }
    if with_hash:
        values["content_hash"] = content_hash(advisory)
    return values


def _name_key(ecosystem: str, name: str) -> NameKey:
    return (ecosystem, ecosystems.normalize_name(ecosystem, name))


# ------------------------------------------------------------------------- import


def import_advisories(session: Session, advisories: Sequence[Advisory]) -> AdvisoryImportResult:
    """Write advisories that are new, or more recently modified *and* different.

    Content is compared through a hash of everything but ``modified``, so feeds that
    carry no timestamps (the Debian tracker, DSA lists, Alpine secdb stamp the import
    time) only rewrite — and re-match — what really changed.

    Runs inside the caller's transaction: the caller commits the whole feed or nothing.
    Ranges whose versions cannot be parsed are reported in ``problems`` and left out;
    withdrawn advisories are kept (for explanations) but never matched. Every
    (ecosystem, name) whose advisories changed is returned in ``touched`` and its
    cached package matches are invalidated.
    """
    result = AdvisoryImportResult()
    latest: dict[str, Advisory] = {}
    for advisory in advisories:
        held = latest.get(advisory.id)
        if held is None or advisory.modified > held.modified:
            latest[advisory.id] = advisory

    existing: dict[str, tuple[int, datetime, str]] = {}
    for batch in chunks(list(latest)):
        for row_id, ext_id, modified, digest in session.execute(
            select(
                AdvisoryRow.id, AdvisoryRow.ext_id, AdvisoryRow.modified, AdvisoryRow.content_hash
            ).where(one_of(session, AdvisoryRow.ext_id, batch))
        ):
            existing[ext_id] = (row_id, modified, digest)

    to_insert: list[Advisory] = []
    to_update: list[tuple[int, Advisory]] = []
    for ext_id, advisory in latest.items():
        stored = existing.get(ext_id)
        if stored is None:
            to_insert.append(advisory)
        elif advisory.modified > stored[1] and content_hash(advisory) != stored[2]:
            to_update.append((stored[0], advisory))
        else:
            result.unchanged += 1

    if to_update:
        ids = [row_id for row_id, _ in to_update]
        for id_batch in chunks(ids):
            for eco, name in session.execute(
                select(AffectedRangeRow.ecosystem, AffectedRangeRow.name)
                .where(one_of(session, AffectedRangeRow.advisory_id, id_batch))
                .union(
                    select(AffectedVersionRow.ecosystem, AffectedVersionRow.name).where(
                        one_of(session, AffectedVersionRow.advisory_id, id_batch)
                    )
                )
            ):
                result.touched.add(_name_key(eco, name))
            for model in (AffectedRangeRow, AffectedVersionRow, AdvisoryAlias):
                session.execute(delete(model).where(model.advisory_id.in_(id_batch)))
        for row_id, advisory in to_update:
            session.execute(
                update(AdvisoryRow).where(AdvisoryRow.id == row_id).values(**_row_values(advisory))
            )
        result.updated = len(to_update)

    new_ids: dict[str, int] = {}
    for adv_batch in chunks(to_insert, 500):
        rows = session.execute(
            table_of(AdvisoryRow).insert().returning(AdvisoryRow.id, AdvisoryRow.ext_id),
            [_row_values(a) for a in adv_batch],
        )
        for row_id, ext_id in rows:
            new_ids[ext_id] = row_id
    result.added = len(to_insert)

    written = [(new_ids[a.id], a) for a in to_insert] + to_update
    range_rows: list[tuple[Any, ...]] = []
    version_rows: list[tuple[Any, ...]] = []
    alias_rows: list[tuple[Any, ...]] = []
    for row_id, advisory in written:
        for alias in dict.fromkeys((advisory.id, *advisory.aliases, *advisory.related)):
            alias_rows.append((row_id, alias))
        if advisory.withdrawn is not None:
            result.withdrawn += 1
            continue
        for affected in advisory.affected:
            if not ecosystems.is_supported(affected.ecosystem):
                continue  # kept in the advisory JSON; nothing on a host can match it
            flat = flatten_affected(advisory.id, affected)
            result.problems.extend(flat.problems)
            result.touched.add(_name_key(affected.ecosystem, affected.name))
            name = ecosystems.normalize_name(affected.ecosystem, affected.name)
            for iv in flat.intervals:
                range_rows.append(
                    (
                        row_id,
                        affected.ecosystem,
                        name,
                        iv.range_type,
                        iv.introduced,
                        iv.fixed,
                        iv.last_affected,
                        iv.limit,
                        affected.note,
                    )
                )
            for version in dict.fromkeys(affected.versions):
                version_rows.append((row_id, affected.ecosystem, name, version))

    insert_rows(
        session,
        AdvisoryAlias,
        ("advisory_id", "alias"),
        alias_rows,
    )
    insert_rows(
        session,
        AffectedRangeRow,
        (
            "advisory_id",
            "ecosystem",
            "name",
            "range_type",
            "introduced",
            "fixed",
            "last_affected",
            "limit",
            "note",
        ),
        range_rows,
    )
    insert_rows(
        session,
        AffectedVersionRow,
        ("advisory_id", "ecosystem", "name", "version"),
        version_rows,
    )
    invalidate_matches(session, result.touched)
    return result


def invalidate_matches(session: Session, touched: Iterable[NameKey]) -> int:
    """Forget cached matches of packages an advisory change may affect.

    A package is affected when its binary or source name is touched in its exact
    ecosystem, or in its base ecosystem (an advisory for plain ``Debian`` covers
    ``Debian:12``). Returns how many package rows will be re-matched.
    """
    by_eco: dict[str, set[str]] = {}
    for eco, name in touched:
        by_eco.setdefault(eco, set()).add(name)
    package_ids: set[int] = set()
    for eco, names in by_eco.items():
        base, release = ecosystems.split(eco)
        eco_clause = (
            PackageRow.ecosystem == eco
            if release
            else or_(PackageRow.ecosystem == base, PackageRow.ecosystem.like(f"{base}:%"))
        )
        for batch in chunks(sorted(names)):
            package_ids.update(
                session.scalars(
                    select(PackageRow.id).where(
                        eco_clause,
                        or_(
                            one_of(session, PackageRow.name, batch),
                            one_of(session, PackageRow.source_name, batch),
                        ),
                    )
                )
            )
    for pid_batch in chunks(sorted(package_ids)):
        session.execute(
            delete(PackageVuln).where(one_of(session, PackageVuln.package_id, pid_batch))
        )
        session.execute(
            update(PackageRow)
            .where(one_of(session, PackageRow.id, pid_batch))
            .values(matched_at=None)
        )
    return len(package_ids)


# ------------------------------------------------------------------------- lookup


def find_advisory(session: Session, ident: str) -> list[Advisory]:
    """Advisories whose id, alias or related id is ``ident`` (case-insensitive)."""
    wanted = ident.strip()
    row_ids = set(
        session.scalars(
            select(AdvisoryAlias.advisory_id).where(
                or_(AdvisoryAlias.alias == wanted, AdvisoryAlias.alias == wanted.upper())
            )
        )
    )
    if not row_ids:
        return []
    rows = session.scalars(
        select(AdvisoryRow).where(AdvisoryRow.id.in_(row_ids)).order_by(AdvisoryRow.ext_id)
    )
    return [row_to_advisory(r) for r in rows]


def load_index(session: Session, names: Iterable[str] | None = None) -> AdvisoryIndex:
    """Build the match index, for every advisory or only those naming ``names``.

    ``names`` are package names (binary and source) as found on hosts; filtering by
    name alone is enough because the index applies ecosystem rules at lookup time.
    """
    index = AdvisoryIndex()
    range_query = select(
        AdvisoryRow.ext_id,
        AffectedRangeRow.ecosystem,
        AffectedRangeRow.name,
        AffectedRangeRow.range_type,
        AffectedRangeRow.introduced,
        AffectedRangeRow.fixed,
        AffectedRangeRow.last_affected,
        AffectedRangeRow.limit,
        AffectedRangeRow.note,
    ).join(AdvisoryRow, AdvisoryRow.id == AffectedRangeRow.advisory_id)
    version_query = select(
        AdvisoryRow.ext_id,
        AffectedVersionRow.ecosystem,
        AffectedVersionRow.name,
        AffectedVersionRow.version,
    ).join(AdvisoryRow, AdvisoryRow.id == AffectedVersionRow.advisory_id)

    def add_ranges(rows: Iterable[Any]) -> None:
        for ext_id, eco, name, rtype, intro, fixed, last, limit, note in rows:
            index.add_interval(
                ext_id,
                eco,
                name,
                Interval(intro, fixed, last, limit, rtype),
                note,
            )

    if names is None:
        add_ranges(session.execute(range_query))
        for ext_id, eco, name, version in session.execute(version_query):
            index.add_version(ext_id, eco, name, version)
        return index
    wanted = sorted({n for n in names if n} | {n.lower() for n in names if n})
    for batch in chunks(wanted):
        add_ranges(
            session.execute(range_query.where(one_of(session, AffectedRangeRow.name, batch)))
        )
        for ext_id, eco, name, version in session.execute(
            version_query.where(one_of(session, AffectedVersionRow.name, batch))
        ):
            index.add_version(ext_id, eco, name, version)
    return index


def count_advisories(session: Session) -> dict[str, int]:
    """Advisory counts per source feed."""
    rows = session.execute(select(AdvisoryRow.source, func.count()).group_by(AdvisoryRow.source))
    return dict(rows.tuples().all())


def assign_feed(session: Session, ext_ids: Iterable[str], feed: str) -> None:
    """Record ``feed`` as the feed that last imported these advisories."""
    for batch in chunks(sorted(set(ext_ids))):
        session.execute(
            update(AdvisoryRow)
            .where(one_of(session, AdvisoryRow.ext_id, batch), AdvisoryRow.feed != feed)
            .values(feed=feed)
        )


def count_by_feed(session: Session) -> dict[str, int]:
    """Stored advisories per feed-state name (``assign_feed``)."""
    rows = session.execute(select(AdvisoryRow.feed, func.count()).group_by(AdvisoryRow.feed))
    return dict(rows.tuples().all())
