"""Plain domain values shared by every component.

Frozen, slotted dataclasses only: no I/O, no ORM, no pydantic. Feeds parse *into* these
types, collectors produce them, the store persists them and the matcher consumes them.
Absent optional strings are ``""`` (never ``None``) where the value takes part in an
identity, so that database uniqueness behaves the same on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
from dataclasses import field
from datetime import date, datetime
from typing import Literal, NewType

from patchwarden.core.values import value

AdvisoryId = NewType("AdvisoryId", str)
CveId = NewType("CveId", str)
AssetId = NewType("AssetId", int)

EventKind = Literal["introduced", "fixed", "last_affected", "limit"]
RangeType = Literal["ECOSYSTEM", "SEMVER", "GIT"]
Exposure = Literal["internet", "internal"]
DataClass = Literal["public", "internal", "confidential", "restricted"]
Priority = Literal["P1", "P2", "P3", "P4"]

EVENT_KINDS: tuple[EventKind, ...] = ("introduced", "fixed", "last_affected", "limit")
PRIORITIES: tuple[Priority, ...] = ("P1", "P2", "P3", "P4")


# --------------------------------------------------------------------------- advisories


@value
class Event:
    """One OSV range event: ``introduced``, ``fixed``, ``last_affected`` or ``limit``."""

    kind: EventKind
    version: str


@value
class AffectedRange:
    """An OSV ``ranges[]`` entry. GIT ranges are kept but never match package versions."""

    type: RangeType
    events: tuple[Event, ...]


@value
class Severity:
    """An OSV ``severity[]`` entry: ``type`` is CVSS_V2/CVSS_V3/CVSS_V4/Ubuntu/…"""

    type: str
    score: str


@value
class Affected:
    """One affected package of an advisory, in one exact OSV ecosystem.

    ``note`` carries feed-specific status worth showing in explanations (for example the
    Debian tracker's ``open`` / ``undetermined`` or the DSA list's release codename).
    """

    ecosystem: str
    name: str
    ranges: tuple[AffectedRange, ...] = ()
    versions: tuple[str, ...] = ()
    severity: tuple[Severity, ...] = ()
    note: str = ""


@value
class Advisory:
    """An OSV-shaped advisory, whatever feed it came from.

    ``source`` names the feed (``osv``, ``debian-tracker``, ``debian-dsa``, ``debian-dla``,
    ``alpine-secdb``). ``database_severity`` is the publisher's own rating when it has
    one (Red Hat "Important", Debian urgency "high", GHSA "MODERATE"), used only when no
    CVSS vector is known.
    """

    id: str
    modified: datetime
    source: str = "osv"
    aliases: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    summary: str = ""
    details: str = ""
    published: datetime | None = None
    withdrawn: datetime | None = None
    severity: tuple[Severity, ...] = ()
    affected: tuple[Affected, ...] = ()
    references: tuple[str, ...] = ()
    database_severity: str = ""

    @property
    def cve_ids(self) -> tuple[str, ...]:
        """CVE ids this advisory is about: its own id, aliases and related, in order."""
        seen: dict[str, None] = {}
        for ident in (self.id, *self.aliases, *self.related):
            if ident.startswith("CVE-"):
                seen.setdefault(ident, None)
        return tuple(seen)


# ------------------------------------------------------------------------ vuln intel


@value
class CvssScore:
    """A CVSS vector with its computed base score. ``version`` is 2.0/3.0/3.1/4.0."""

    version: str
    vector: str
    base_score: float
    severity: str
    source: str = ""


@value
class EpssScore:
    """FIRST EPSS probability of exploitation in the next 30 days."""

    score: float
    percentile: float
    score_date: date
    model_version: str = ""


@value
class KevEntry:
    """A CISA Known Exploited Vulnerabilities catalog entry."""

    cve_id: str
    date_added: date
    due_date: date
    ransomware: bool = False
    vendor: str = ""
    product: str = ""
    name: str = ""
    required_action: str = ""


@value
class VulnIntel:
    """Everything known about one CVE beyond the advisories that name it."""

    cve_id: str
    cvss: tuple[CvssScore, ...] = ()
    epss: EpssScore | None = None
    kev: KevEntry | None = None
    description: str = ""


# ------------------------------------------------------------------------- inventory


@value
class OsInfo:
    """What /etc/os-release (or an inventory) says about the operating system.

    ``ecosystem`` is the exact OSV ecosystem for its packages (``Debian:12``,
    ``Ubuntu:22.04:LTS``, ``AlmaLinux:9``, ``Alpine:v3.20``) or ``""`` when unknown.
    ``family`` is the package family: ``debian``, ``rpm`` or ``alpine``.
    """

    id: str
    version_id: str = ""
    name: str = ""
    pretty_name: str = ""
    codename: str = ""
    ecosystem: str = ""
    family: str = ""


@value
class InstalledPackage:
    """One installed package. ``version`` is the full native version (with epoch and
    release for rpm, e.g. ``1:3.0.7-27.el9``); source fields are ``""`` when unknown."""

    name: str
    version: str
    ecosystem: str
    arch: str = ""
    source_name: str = ""
    source_version: str = ""


@value
class Inventory:
    """A host's software inventory. ``problems`` lists skipped bad lines with their
    location: bad data is reported, it does not abort the whole inventory."""

    hostname: str
    packages: tuple[InstalledPackage, ...]
    os: OsInfo | None = None
    kernel: str = ""
    arch: str = ""
    reboot_required: bool = False
    collected_at: datetime | None = None
    source: str = ""
    problems: tuple[str, ...] = ()

    def content_hash(self) -> str:
        """A stable sha256 over what matters for matching (OS and packages)."""
        digest = hashlib.sha256()
        if self.os is not None:
            digest.update(f"{self.os.ecosystem}|{self.os.id}|{self.os.version_id}\n".encode())
        digest.update(f"{self.kernel}|{self.reboot_required}\n".encode())
        for pkg in sorted(self.packages, key=lambda p: (p.ecosystem, p.name, p.arch, p.version)):
            digest.update(
                f"{pkg.ecosystem}|{pkg.name}|{pkg.version}|{pkg.arch}|"
                f"{pkg.source_name}|{pkg.source_version}\n".encode()
            )
        return digest.hexdigest()


# --------------------------------------------------------------------------- matching


@value
class Match:
    """One advisory affecting one (ecosystem, name, version) triple, with the reason.

    ``name``/``version`` are what was matched (the source package for Debian, Ubuntu and
    Alpine). ``fixed_version`` is ``None`` when no fix exists yet. ``why`` is a sentence
    a human can check against the advisory.
    """

    advisory_id: str
    ecosystem: str
    name: str
    version: str
    fixed_version: str | None
    why: str


@value
class AssetContext:
    """Business context that raises or lowers risk for one asset."""

    criticality: int = 3
    exposure: Exposure = "internal"
    data_class: DataClass = "internal"


@value
class RiskFactor:
    """One term of a risk score, shown to users as is."""

    name: str
    value: str
    effect: str


@value
class RiskScore:
    """An explainable risk score (0-100) with its priority bucket."""

    score: float
    priority: Priority
    severity: str
    factors: tuple[RiskFactor, ...] = field(default=())
