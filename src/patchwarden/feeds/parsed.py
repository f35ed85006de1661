"""What a feed parser returns: plain domain values, ready for the importer.

A ``ParsedFeed`` is complete or does not exist: parsers raise ``FeedError`` instead of
returning part of a file, so the importer can replace a feed's data in one transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeVar, get_args

from patchwarden.core.errors import FeedError
from patchwarden.core.model import Advisory, CvssScore, EpssScore, KevEntry

FeedKind = Literal[
    "osv",
    "debian-tracker",
    "debian-dsa",
    "debian-dla",
    "alpine-secdb",
    "nvd",
    "cve5",
    "kev",
    "epss",
]

FEED_KINDS: tuple[FeedKind, ...] = get_args(FeedKind)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CveCvss:
    """CVSS scores and description of one CVE, from NVD or a CVE JSON 5 record.

    Each score's ``source`` says who rated it: ``nvd`` (NVD's primary score),
    ``nvd-secondary:<submitter>``, ``cna`` or ``adp:<container short name>``.
    """

    cve_id: str
    scores: tuple[CvssScore, ...] = ()
    description: str = ""
    published: datetime | None = None
    modified: datetime | None = None


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """The full content of one feed file (or folder, or zip) in domain types.

    ``kind`` is one of ``FEED_KINDS``; ``source`` is the file path or URL it came from.
    Only the lists matching the kind are filled. ``meta`` carries feed-level facts worth
    recording with the import (KEV ``catalogVersion``, EPSS ``score_date``, NVD page
    totals, what was skipped on purpose and why).
    """

    kind: FeedKind
    source: str
    advisories: list[Advisory] = field(default_factory=list)
    cvss: list[CveCvss] = field(default_factory=list)
    kev: list[KevEntry] = field(default_factory=list)
    epss: list[tuple[str, EpssScore]] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """How many records the feed holds, whatever their type."""
        return len(self.advisories) + len(self.cvss) + len(self.kev) + len(self.epss)


def combine(kind: FeedKind, source: str, parts: Sequence[ParsedFeed]) -> ParsedFeed:
    """Join the feeds parsed from the files of one folder or archive into one feed.

    A record id found in two files is kept once when both copies are identical (the
    AlmaLinux database, for one, stores multi-release advisories in each release's
    folder) and counted in ``meta["duplicates"]``; differing copies would make the
    import ambiguous and raise ``FeedError`` naming both files. ``meta`` also keeps
    ``files`` (the number of parts) and every key on which all parts agree.
    """
    advisories: dict[str, Advisory] = {}
    cvss: dict[str, CveCvss] = {}
    kev: dict[str, KevEntry] = {}
    epss: dict[str, tuple[str, EpssScore]] = {}
    origin: dict[str, str] = {}
    duplicates = 0

    def keep(ident: str, record: T, into: dict[str, T], part: ParsedFeed) -> None:
        nonlocal duplicates
        existing = into.get(ident)
        if existing is None:
            into[ident] = record
            origin[ident] = part.source
        elif existing == record:
            duplicates += 1
        else:
            raise FeedError(
                f"record differs from its copy in {origin[ident]}",
                source=part.source,
                record=ident,
                field="id",
                hint="each record id must be unique; remove the stale copy",
            )

    for part in parts:
        if part.kind != kind:
            raise FeedError(
                f"expected a {kind} file, found {part.kind}",
                source=part.source,
                hint="a folder must hold files of one feed format only",
            )
        for advisory in part.advisories:
            keep(advisory.id, advisory, advisories, part)
        for item in part.cvss:
            keep(item.cve_id, item, cvss, part)
        for entry in part.kev:
            keep(entry.cve_id, entry, kev, part)
        for pair in part.epss:
            keep(pair[0], pair, epss, part)

    meta: dict[str, str] = {"files": str(len(parts))}
    if parts:
        shared = dict(parts[0].meta)
        for part in parts[1:]:
            shared = {k: v for k, v in shared.items() if part.meta.get(k) == v}
        meta.update(shared)
    if duplicates:
        meta["duplicates"] = str(duplicates)
    return ParsedFeed(
        kind=kind,
        source=source,
        advisories=list(advisories.values()),
        cvss=list(cvss.values()),
        kev=list(kev.values()),
        epss=list(epss.values()),
        meta=meta,
    )
