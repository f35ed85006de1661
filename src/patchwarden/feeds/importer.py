"""Import parsed feeds into the store: all-or-nothing, incremental by ``modified``.

Every file is parsed completely before anything is written; then all of them are
written in one transaction. A bad file therefore aborts the whole import with the
parser's precise message and leaves the previous data exactly as it was. So does a
file in which nothing importable was found, and compressed data that crosses the
decompression bounds (``feeds.inflate``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from patchwarden.core import ecosystems
from patchwarden.core.errors import FeedError
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.inflate import DEFAULT_LIMITS, InflateBudget, InflateLimits
from patchwarden.feeds.parsed import FEED_KINDS, ParsedFeed
from patchwarden.store.advisories import assign_feed, import_advisories
from patchwarden.store.db import Database
from patchwarden.store.findings import RefreshResult, refresh_findings
from patchwarden.store.intel import replace_epss, replace_kev, upsert_cvss
from patchwarden.store.models import AssetPackage, FeedState, PackageRow

#: What ``feeds import`` reads, for messages about a file it found nothing in.
EXPECTED_FORMATS = (
    "OSV records (JSON, JSON Lines, YAML, a folder of them, osv.dev's all.zip), NVD API "
    "pages, CVE JSON 5, the CISA KEV catalog, FIRST EPSS CSV, the Debian security tracker "
    "JSON, DSA/DLA lists or Alpine secdb; gzip-compressed or not"
)


@dataclass
class FeedImportResult:
    """What importing one parsed feed file changed (``records``: how many it held)."""

    feed: str
    kind: str
    source: str
    records: int
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    withdrawn: int = 0
    intel: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    """The outcome of one ``feeds import`` / ``feeds sync`` run."""

    files: list[FeedImportResult] = field(default_factory=list)
    refresh: RefreshResult | None = None


def feed_name(parsed: ParsedFeed) -> str:
    """The feed-state name a parsed file is accounted under.

    OSV files are named by their base ecosystem(s) (``osv:PyPI``, ``osv:AlmaLinux``);
    everything else by its kind (``kev``, ``epss``, ``nvd``, ``debian-dsa``, …).
    """
    if parsed.kind != "osv":
        return parsed.kind
    bases = sorted(
        {ecosystems.split(a.ecosystem)[0] for adv in parsed.advisories for a in adv.affected}
    )
    if not bases:
        return "osv"
    if len(bases) > 3:
        return "osv:mixed"
    return "osv:" + ",".join(bases)


def write_parsed(
    session: Session, parsed: ParsedFeed, *, now: datetime, name: str | None = None
) -> FeedImportResult:
    """Write one parsed feed in the caller's transaction and update its feed state.

    ``name`` is the feed-state name (a sync names its sources: ``osv:Debian:12``,
    ``alpine-secdb:v3.20/main``); by default it is derived from the content
    (``feed_name``). The advisories are attributed to that feed.
    """
    name = name or feed_name(parsed)
    result = FeedImportResult(
        feed=name, kind=parsed.kind, source=parsed.source, records=parsed.count
    )
    if parsed.advisories:
        adv = import_advisories(session, parsed.advisories)
        assign_feed(session, (a.id for a in parsed.advisories), name)
        result.added, result.updated = adv.added, adv.updated
        result.unchanged, result.withdrawn = adv.unchanged, adv.withdrawn
        result.problems.extend(adv.problems)
    if parsed.cvss:
        result.intel += upsert_cvss(
            session, [(c.cve_id, c.scores, c.description) for c in parsed.cvss]
        )
    if parsed.kind == "kev":
        result.intel += replace_kev(session, parsed.kev)
    if parsed.kind == "epss":
        result.intel += replace_epss(session, parsed.epss)

    state = session.get(FeedState, name)
    if state is None:
        state = FeedState(name=name, kind=parsed.kind)
        session.add(state)
    state.source = parsed.source
    state.records = result.records
    state.last_import = now
    changes = {
        "added": result.added,
        "updated": result.updated,
        "unchanged": result.unchanged,
        "withdrawn": result.withdrawn,
        "intel": result.intel,
    }
    state.meta = {**parsed.meta, "last_import": changes}
    return result


def import_files(
    database: Database,
    paths: Sequence[Path],
    *,
    now: datetime,
    kind: str | None = None,
    refresh: bool = True,
    on_parsed: Callable[[Path, ParsedFeed], None] | None = None,
    limits: InflateLimits = DEFAULT_LIMITS,
    allow_empty: bool = False,
) -> ImportReport:
    """Parse every path (raising ``FeedError`` on the first bad one), then import all of
    them in one transaction, then refresh the findings the change affects.

    Compressed content is inflated within ``limits`` (all paths together count toward
    the total). A file holding no record at all is an error unless ``allow_empty`` (an
    incremental NVD window may be empty).
    """
    budget = InflateBudget(limits)
    parsed: list[ParsedFeed] = []
    for path in paths:
        feed = parse_path(path, kind, now=now, budget=budget)
        if not feed.count and not allow_empty:
            raise _nothing_found(path, feed, kind)
        parsed.append(feed)
        if on_parsed is not None:
            on_parsed(path, feed)
    return import_parsed(database, parsed, now=now, refresh=refresh)


def _nothing_found(path: Path, feed: ParsedFeed, kind: str | None) -> FeedError:
    # What the parser set aside on purpose explains an empty result (unknown releases…).
    notes = ("skipped_members", "skipped_releases", "not_affected", "non_cve_entries")
    skipped = "; ".join(f"{k}: {feed.meta[k]}" for k in notes if k in feed.meta)
    found = f" ({skipped})" if skipped else ""
    expected = f"records of the {kind!r} format" if kind in FEED_KINDS else EXPECTED_FORMATS
    return FeedError(
        f"found no records to import in this {feed.kind} content{found}; nothing was imported",
        source=str(path),
        hint=f"expected {expected}",
    )


def import_parsed(
    database: Database,
    parsed: Sequence[ParsedFeed],
    *,
    now: datetime,
    refresh: bool = True,
    names: Sequence[str | None] = (),
) -> ImportReport:
    """Write already-parsed feeds in one transaction, then refresh affected findings.

    ``names`` gives feed-state names by position (see ``write_parsed``).
    """
    report = ImportReport()
    with database.session() as session:
        for index, feed in enumerate(parsed):
            name = names[index] if index < len(names) else None
            report.files.append(write_parsed(session, feed, now=now, name=name))
    if refresh:
        report.refresh = refresh_after_feeds(database, now=now, parsed=parsed)
    return report


def refresh_after_feeds(
    database: Database, *, now: datetime, parsed: Sequence[ParsedFeed]
) -> RefreshResult:
    """Re-match and rescore what a feed change can affect.

    New intel (CVSS, KEV, EPSS) can change any score, so every asset is rescored;
    advisory changes only concern assets holding a package whose match was invalidated.
    """
    intel_changed = any(f.cvss or f.kev or f.epss for f in parsed)
    with database.session() as session:
        if intel_changed:
            return refresh_findings(session, now=now)
        pending = select(PackageRow.id).where(PackageRow.matched_at.is_(None))
        asset_ids = sorted(
            set(
                session.scalars(
                    select(AssetPackage.asset_id).where(AssetPackage.package_id.in_(pending))
                )
            )
        )
        if not asset_ids:
            return RefreshResult()
        return refresh_findings(session, now=now, asset_ids=asset_ids)
