"""The per-host scan report: findings with their reasons, remediation, unfixed.

The JSON shape is documented in README.md ("patchwarden scan"); changing a field name
there is a breaking change for pipelines.
"""

from __future__ import annotations

import csv
import io
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patchwarden.core import ecosystems, risk
from patchwarden.core.model import RiskScore
from patchwarden.core.remediation import FindingView, Upgrade, plan
from patchwarden.store.findings import threats_for
from patchwarden.store.inventory import asset_context, get_asset
from patchwarden.store.models import (
    AdvisoryRow,
    AffectedRangeRow,
    AffectedVersionRow,
    AssetPackage,
    FindingRow,
    PackageRow,
    PackageVuln,
)

OPEN_STATES = ("open",)


@dataclass(frozen=True, slots=True)
class FindingDetail:
    """One finding with everything needed to show and explain it."""

    finding_id: int
    package: str
    installed_version: str
    ecosystem: str
    arch: str
    matched_name: str
    matched_version: str
    advisory_id: str
    aliases: tuple[str, ...]
    summary: str
    fixed_version: str | None
    state: str
    first_seen: datetime
    due_date: date | None
    why: str
    risk: RiskScore
    kev: bool
    epss: float | None

    def overdue(self, today: date) -> bool:
        """True when the due date has passed and the finding is still open."""
        return self.state == "open" and self.due_date is not None and self.due_date < today


@dataclass(frozen=True, slots=True)
class Coverage:
    """Whether any loaded advisory covers one ecosystem of a host's packages.

    An advisory covers an ecosystem as matching applies it (``ecosystems.applies_to``):
    its own ecosystem, or the release-less base (``Debian`` covers ``Debian:12``, while
    ``Debian:11`` does not). Packages of an uncovered ecosystem were not checked at all,
    so "no findings" says nothing about them.
    """

    ecosystem: str
    packages: int
    covered: bool

    @property
    def hint(self) -> str:
        """What to load so that the ecosystem is covered ("" when it is)."""
        if self.covered:
            return ""
        if not ecosystems.is_supported(self.ecosystem):
            return f"patchwarden has no version ordering for {self.ecosystem}"
        return (
            f"load one with: patchwarden feeds sync --ecosystem {shlex.quote(self.ecosystem)} "
            "(or patchwarden feeds import an OSV file for it)"
        )

    def to_json(self) -> dict[str, Any]:
        """The documented JSON form (``scan --format json``, the asset API)."""
        return {
            "ecosystem": self.ecosystem,
            "packages": self.packages,
            "covered": self.covered,
            "hint": self.hint or None,
        }


def ecosystem_coverage(session: Session, asset_id: int) -> list[Coverage]:
    """Coverage of every ecosystem among the asset's packages, by ecosystem name."""
    counts = session.execute(
        select(PackageRow.ecosystem, func.count())
        .join(AssetPackage, AssetPackage.package_id == PackageRow.id)
        .where(AssetPackage.asset_id == asset_id)
        .group_by(PackageRow.ecosystem)
        .order_by(PackageRow.ecosystem)
    ).tuples()
    return [
        Coverage(ecosystem, packages, _covered(session, ecosystem))
        for ecosystem, packages in counts
    ]


def _covered(session: Session, ecosystem: str) -> bool:
    if not ecosystems.is_supported(ecosystem):
        return False
    base = ecosystems.split(ecosystem)[0]
    # Only these two advisory ecosystems can apply; the (ecosystem, name) indexes
    # answer each probe without a scan.
    candidates = [
        e for e in dict.fromkeys((ecosystem, base)) if ecosystems.applies_to(e, ecosystem)
    ]
    for model in (AffectedRangeRow, AffectedVersionRow):
        probe = select(model.advisory_id).where(model.ecosystem.in_(candidates)).limit(1)
        if session.scalar(probe) is not None:
            return True
    return False


def uncovered(coverage: Sequence[Coverage]) -> list[Coverage]:
    """The ecosystems no loaded advisory covers."""
    return [c for c in coverage if not c.covered]


@dataclass
class HostReport:
    """What ``patchwarden scan`` shows for one host."""

    asset_id: int
    hostname: str
    os_name: str
    ecosystem: str
    criticality: int
    exposure: str
    data_class: str
    package_count: int
    generated_at: datetime
    findings: list[FindingDetail]
    remediation: tuple[Upgrade, ...]
    unfixed: list[FindingDetail]
    problems: list[str] = field(default_factory=list)
    coverage: list[Coverage] = field(default_factory=list)


def host_report(
    session: Session,
    asset_id: int,
    *,
    now: datetime,
    package_count: int = 0,
    problems: Sequence[str] = (),
    states: Sequence[str] = OPEN_STATES,
) -> HostReport:
    """Build the report of one asset's findings in ``states`` (default: open)."""
    asset = get_asset(session, asset_id)
    context = asset_context(asset)
    rows = session.execute(
        select(
            FindingRow.id,
            PackageRow.name,
            PackageRow.version,
            PackageRow.ecosystem,
            PackageRow.arch,
            PackageVuln.matched_name,
            PackageVuln.matched_version,
            AdvisoryRow.id,
            AdvisoryRow.ext_id,
            AdvisoryRow.aliases,
            AdvisoryRow.related,
            AdvisoryRow.summary,
            PackageVuln.fixed_version,
            FindingRow.state,
            FindingRow.first_seen,
            FindingRow.due_date,
            PackageVuln.why,
        )
        .join(PackageRow, PackageRow.id == FindingRow.package_id)
        .join(
            PackageVuln,
            (PackageVuln.package_id == FindingRow.package_id)
            & (PackageVuln.advisory_id == FindingRow.advisory_id),
        )
        .join(AdvisoryRow, AdvisoryRow.id == FindingRow.advisory_id)
        .where(FindingRow.asset_id == asset_id, FindingRow.state.in_(list(states)))
    ).all()
    threats = threats_for(session, {row[7] for row in rows})
    details: list[FindingDetail] = []
    for (
        finding_id,
        package,
        version,
        ecosystem,
        arch,
        matched_name,
        matched_version,
        advisory_row_id,
        ext_id,
        aliases,
        related,
        summary,
        fixed,
        state,
        first_seen,
        due,
        why,
    ) in rows:
        threat = threats[advisory_row_id]
        scored = risk.score(threat, context)
        names = tuple(dict.fromkeys([*aliases, *(r for r in related if r.startswith("CVE-"))]))
        details.append(
            FindingDetail(
                finding_id=finding_id,
                package=package,
                installed_version=version,
                ecosystem=ecosystem,
                arch=arch,
                matched_name=matched_name,
                matched_version=matched_version,
                advisory_id=ext_id,
                aliases=names,
                summary=summary,
                fixed_version=fixed,
                state=state,
                first_seen=first_seen,
                due_date=due,
                why=why,
                risk=scored,
                kev=threat.kev is not None,
                epss=threat.epss,
            )
        )
    details.sort(key=lambda d: (-d.risk.score, d.advisory_id, d.package))
    remediation = plan(
        FindingView(
            ecosystem=d.ecosystem,
            package=d.package,
            installed_version=d.installed_version,
            matched_name=d.matched_name,
            matched_version=d.matched_version,
            advisory_id=d.advisory_id,
            fixed_version=d.fixed_version,
            risk_score=d.risk.score,
        )
        for d in details
    )
    return HostReport(
        asset_id=asset.id,
        hostname=asset.hostname,
        os_name=asset.os_name,
        ecosystem=asset.os_ecosystem,
        criticality=asset.criticality,
        exposure=asset.exposure,
        data_class=asset.data_class,
        package_count=package_count,
        generated_at=now,
        findings=details,
        remediation=remediation,
        unfixed=[d for d in details if d.fixed_version is None],
        problems=list(problems),
        coverage=ecosystem_coverage(session, asset_id),
    )


def finding_to_json(detail: FindingDetail) -> dict[str, Any]:
    """The documented JSON form of one finding."""
    return {
        "package": detail.package,
        "installed_version": detail.installed_version,
        "ecosystem": detail.ecosystem,
        "arch": detail.arch,
        "matched_package": detail.matched_name,
        "matched_version": detail.matched_version,
        "advisory_id": detail.advisory_id,
        "aliases": list(detail.aliases),
        "summary": detail.summary,
        "fixed_version": detail.fixed_version,
        "risk_score": detail.risk.score,
        "priority": detail.risk.priority,
        "severity": detail.risk.severity,
        "due_date": detail.due_date.isoformat() if detail.due_date else None,
        "first_seen": detail.first_seen.isoformat(),
        "state": detail.state,
        "kev": detail.kev,
        "epss": detail.epss,
        "why": detail.why,
        "risk_factors": [
            {"name": f.name, "value": f.value, "effect": f.effect} for f in detail.risk.factors
        ],
    }


def report_to_json(report: HostReport) -> dict[str, Any]:
    """The documented JSON object ``patchwarden scan --format json`` prints."""
    return {
        "host": {
            "asset_id": report.asset_id,
            "hostname": report.hostname,
            "os": report.os_name,
            "ecosystem": report.ecosystem,
            "criticality": report.criticality,
            "exposure": report.exposure,
            "data_class": report.data_class,
            "packages": report.package_count,
        },
        "generated_at": report.generated_at.isoformat(),
        "summary": summary_counts(report),
        "findings": [finding_to_json(d) for d in report.findings],
        "remediation": [
            {
                "ecosystem": u.ecosystem,
                "package": u.name,
                "installed_version": u.installed_version,
                "target_version": u.target_version,
                "binary_packages": list(u.packages),
                "fixes": list(u.advisories),
                "risk_removed": u.risk_removed,
            }
            for u in report.remediation
        ],
        "unfixed": [finding_to_json(d) for d in report.unfixed],
        "problems": report.problems,
        "coverage": [c.to_json() for c in report.coverage],
    }


def summary_counts(report: HostReport) -> dict[str, Any]:
    """Counts per priority, overdue and unfixed."""
    today = report.generated_at.date()
    by_priority = dict.fromkeys(("P1", "P2", "P3", "P4"), 0)
    for d in report.findings:
        by_priority[d.risk.priority] += 1
    return {
        "findings": len(report.findings),
        "by_priority": by_priority,
        "overdue": sum(1 for d in report.findings if d.overdue(today)),
        "unfixed": len(report.unfixed),
        "upgrades": len(report.remediation),
    }


CSV_COLUMNS = (
    "priority",
    "risk_score",
    "due_date",
    "package",
    "installed_version",
    "fixed_version",
    "advisory_id",
    "aliases",
    "ecosystem",
    "kev",
    "epss",
    "why",
)


def report_to_csv(report: HostReport) -> str:
    """One CSV row per finding (columns: ``CSV_COLUMNS``)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for d in report.findings:
        writer.writerow(
            (
                d.risk.priority,
                f"{d.risk.score:.1f}",
                d.due_date.isoformat() if d.due_date else "",
                d.package,
                d.installed_version,
                d.fixed_version or "",
                d.advisory_id,
                " ".join(d.aliases),
                d.ecosystem,
                "yes" if d.kev else "no",
                "" if d.epss is None else f"{d.epss:.5f}",
                d.why,
            )
        )
    return out.getvalue()
