"""Explaining an advisory or CVE: its data, its intel, and the hosts it affects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from patchwarden.core import risk
from patchwarden.core.model import Advisory, VulnIntel
from patchwarden.store.advisories import find_advisory
from patchwarden.store.findings import threats_for
from patchwarden.store.intel import get_intel
from patchwarden.store.inventory import asset_context
from patchwarden.store.models import (
    AdvisoryRow,
    AssetRow,
    FindingRow,
    PackageRow,
    PackageVuln,
)


@dataclass
class Explanation:
    """Everything ``explain`` shows."""

    query: str
    advisories: list[Advisory]
    intel: list[VulnIntel]
    hosts: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        """The JSON form printed by ``explain --json``."""
        return {
            "query": self.query,
            "advisories": [_advisory_json(a) for a in self.advisories],
            "intel": [_intel_json(i) for i in self.intel],
            "hosts": self.hosts,
        }


def _advisory_json(adv: Advisory) -> dict[str, Any]:
    return {
        "id": adv.id,
        "source": adv.source,
        "aliases": list(adv.aliases),
        "related": list(adv.related),
        "summary": adv.summary,
        "published": adv.published.isoformat() if adv.published else None,
        "modified": adv.modified.isoformat(),
        "withdrawn": adv.withdrawn.isoformat() if adv.withdrawn else None,
        "publisher_severity": adv.database_severity or None,
        "severity": [{"type": s.type, "score": s.score} for s in adv.severity],
        "affected": [
            {
                "ecosystem": a.ecosystem,
                "name": a.name,
                "ranges": [
                    {"type": r.type, "events": [{e.kind: e.version} for e in r.events]}
                    for r in a.ranges
                ],
                "versions": list(a.versions),
                "note": a.note or None,
            }
            for a in adv.affected
        ],
        "references": list(adv.references),
    }


def _intel_json(intel: VulnIntel) -> dict[str, Any]:
    return {
        "cve_id": intel.cve_id,
        "description": intel.description,
        "cvss": [
            {
                "version": c.version,
                "vector": c.vector,
                "base_score": c.base_score,
                "severity": c.severity,
                "source": c.source,
            }
            for c in intel.cvss
        ],
        "epss": None
        if intel.epss is None
        else {
            "score": intel.epss.score,
            "percentile": intel.epss.percentile,
            "date": intel.epss.score_date.isoformat(),
        },
        "kev": None
        if intel.kev is None
        else {
            "date_added": intel.kev.date_added.isoformat(),
            "due_date": intel.kev.due_date.isoformat(),
            "ransomware": intel.kev.ransomware,
            "vendor": intel.kev.vendor,
            "product": intel.kev.product,
            "required_action": intel.kev.required_action,
        },
    }


def explain_id(session: Session, ident: str) -> Explanation | None:
    """Explain an advisory id or CVE id; None when nothing at all is known about it."""
    advisories = find_advisory(session, ident)
    cve_ids = dict.fromkeys([ident.upper()] if ident.upper().startswith("CVE-") else [])
    for adv in advisories:
        cve_ids.update(dict.fromkeys(adv.cve_ids))
    intel_map = get_intel(session, cve_ids)
    intel = [intel_map[c] for c in cve_ids if c in intel_map]
    if not advisories and not intel:
        return None
    hosts = _affected_hosts(session, [a.id for a in advisories])
    return Explanation(query=ident, advisories=advisories, intel=intel, hosts=hosts)


def _affected_hosts(session: Session, ext_ids: list[str]) -> list[dict[str, Any]]:
    if not ext_ids:
        return []
    rows = session.execute(
        select(
            AssetRow,
            PackageRow.name,
            PackageRow.version,
            PackageVuln.fixed_version,
            PackageVuln.why,
            FindingRow.advisory_id,
            AdvisoryRow.ext_id,
            FindingRow.due_date,
            FindingRow.state,
        )
        .join(FindingRow, FindingRow.asset_id == AssetRow.id)
        .join(PackageRow, PackageRow.id == FindingRow.package_id)
        .join(
            PackageVuln,
            (PackageVuln.package_id == FindingRow.package_id)
            & (PackageVuln.advisory_id == FindingRow.advisory_id),
        )
        .join(AdvisoryRow, AdvisoryRow.id == FindingRow.advisory_id)
        .where(AdvisoryRow.ext_id.in_(ext_ids), FindingRow.state != "fixed")
        .order_by(AssetRow.hostname, PackageRow.name)
        .limit(500)
    ).all()
    threats = threats_for(session, {r[5] for r in rows})
    hosts = []
    for asset, package, version, fixed, why, advisory_row_id, ext_id, due, state in rows:
        scored = risk.score(threats[advisory_row_id], asset_context(asset))
        hosts.append(
            {
                "hostname": asset.hostname,
                "asset_id": asset.id,
                "advisory_id": ext_id,
                "package": package,
                "installed_version": version,
                "fixed_version": fixed,
                "state": state,
                "risk_score": scored.score,
                "priority": scored.priority,
                "due_date": due.isoformat() if due else None,
                "why": why,
                "risk_factors": [
                    {"name": f.name, "value": f.value, "effect": f.effect} for f in scored.factors
                ],
            }
        )
    return hosts
