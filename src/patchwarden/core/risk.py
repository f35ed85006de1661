"""Risk scoring, priorities and remediation due dates (SLOs).

The score (0-100) is a sum of named, bounded terms, so every score can list its factors
and a reader can recompute it by hand:

=====================  =============================================================
term                   points
=====================  =============================================================
severity               CVSS base score x 5 (0-50). The best vector per CVE is used
                       (v4.0, then v3.1, v3.0, v2) and the worst CVE of the advisory
                       counts. Without CVSS, the publisher's rating stands in:
                       critical 9.5, high/important 7.5, medium/moderate 5.0,
                       low 2.5, negligible/unimportant 1.0; unknown 5.0.
exploitation           CISA KEV listed: 30 (+5 when used in ransomware campaigns).
                       Otherwise FIRST EPSS probability p: 25 x sqrt(p) (0-25); the
                       square root spreads the many small probabilities apart.
asset criticality      (criticality - 1) x 2.5 for criticality 1-5 (0-10)
exposure               internet-facing: 7, internal: 0
data class             public 0, internal 1, confidential 3, restricted 5
=====================  =============================================================

The total is capped at 100. Priorities: P1 at 70 or more, P2 at 50, P3 at 30, else P4;
a KEV-listed finding is at least P2, and P1 on an internet-facing asset.

Due dates: first seen + the policy's days for the priority (P1 Critical 7, P2 High 30,
P3 Medium 90, P4 Low 180 by default). For KEV-listed findings the due date is also
capped by the catalog's due date and by first seen + 14 days — the soonest wins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from patchwarden.core.cvss import best_score
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import (
    AssetContext,
    CvssScore,
    KevEntry,
    Priority,
    RiskFactor,
    RiskScore,
    VulnIntel,
)

_PUBLISHER_SEVERITY: dict[str, float] = {
    "critical": 9.5,
    "high": 7.5,
    "important": 7.5,
    "medium": 5.0,
    "moderate": 5.0,
    "low": 2.5,
    "negligible": 1.0,
    "unimportant": 1.0,
    "not yet assigned": 5.0,
}
_UNKNOWN_SEVERITY = 5.0
_DATA_CLASS_POINTS = {"public": 0.0, "internal": 1.0, "confidential": 3.0, "restricted": 5.0}
_PRIORITY_LABEL: dict[Priority, str] = {
    "P1": "Critical",
    "P2": "High",
    "P3": "Medium",
    "P4": "Low",
}


@dataclass(frozen=True, slots=True)
class SloPolicy:
    """Days allowed to remediate, per priority, and the KEV rule's days."""

    critical_days: int = 7
    high_days: int = 30
    medium_days: int = 90
    low_days: int = 180
    kev_days: int = 14

    def __post_init__(self) -> None:
        for name in ("critical_days", "high_days", "medium_days", "low_days", "kev_days"):
            if getattr(self, name) < 0:
                raise ValidationFailed(f"SLO policy {name} must be 0 or more days")

    def days_for(self, priority: Priority) -> int:
        """Days to remediate a finding of ``priority``."""
        return {
            "P1": self.critical_days,
            "P2": self.high_days,
            "P3": self.medium_days,
            "P4": self.low_days,
        }[priority]


@dataclass(frozen=True, slots=True)
class Threat:
    """What is known about an advisory's threat, summed over its CVEs."""

    cvss: CvssScore | None = None
    cvss_cve: str = ""
    publisher_severity: str = ""
    epss: float | None = None
    epss_percentile: float | None = None
    epss_cve: str = ""
    kev: KevEntry | None = None


def summarize(
    intel: Iterable[VulnIntel],
    *,
    publisher_severity: str = "",
    advisory_cvss: Iterable[CvssScore] = (),
) -> Threat:
    """Fold per-CVE intel into one ``Threat``: worst CVSS, highest EPSS, earliest KEV due.

    ``advisory_cvss`` are vectors carried by the advisory itself; they count for a CVE
    only when no intel vector exists, and for the advisory when it names no CVE.
    """
    worst: CvssScore | None = None
    worst_cve = ""
    epss: float | None = None
    percentile: float | None = None
    epss_cve = ""
    kev: KevEntry | None = None
    have_intel_cvss = False
    for item in intel:
        chosen = best_score(item.cvss)
        if chosen is not None:
            have_intel_cvss = True
            if worst is None or chosen.base_score > worst.base_score:
                worst, worst_cve = chosen, item.cve_id
        if item.epss is not None and (epss is None or item.epss.score > epss):
            epss, percentile, epss_cve = item.epss.score, item.epss.percentile, item.cve_id
        if item.kev is not None and (kev is None or item.kev.due_date < kev.due_date):
            kev = item.kev
    if not have_intel_cvss:
        own = best_score(tuple(advisory_cvss))
        if own is not None:
            worst, worst_cve = own, ""
    return Threat(
        cvss=worst,
        cvss_cve=worst_cve,
        publisher_severity=publisher_severity,
        epss=epss,
        epss_percentile=percentile,
        epss_cve=epss_cve,
        kev=kev,
    )


def _severity_term(threat: Threat) -> tuple[float, str, RiskFactor]:
    if threat.cvss is not None:
        c = threat.cvss
        where = f" ({threat.cvss_cve})" if threat.cvss_cve else ""
        return (
            c.base_score,
            c.severity,
            RiskFactor(
                "severity",
                f"CVSS {c.version} {c.base_score:.1f} {c.severity}{where}",
                f"+{c.base_score * 5:.1f}",
            ),
        )
    label = threat.publisher_severity.strip().lower()
    if label in _PUBLISHER_SEVERITY:
        base = _PUBLISHER_SEVERITY[label]
        value = f"publisher rating {threat.publisher_severity!r}, no CVSS"
    else:
        base = _UNKNOWN_SEVERITY
        value = "unknown (no CVSS, no publisher rating): treated as medium"
    return base, _label_for(base), RiskFactor("severity", value, f"+{base * 5:.1f}")


def _label_for(base: float) -> str:
    if base >= 9.0:
        return "Critical"
    if base >= 7.0:
        return "High"
    if base >= 4.0:
        return "Medium"
    if base > 0.0:
        return "Low"
    return "None"


def score(threat: Threat, context: AssetContext) -> RiskScore:
    """The explainable risk score of one finding on one asset."""
    if not 1 <= context.criticality <= 5:
        raise ValidationFailed(f"asset criticality must be 1-5, got {context.criticality}")
    base, severity, severity_factor = _severity_term(threat)
    factors = [severity_factor]
    total = base * 5

    if threat.kev is not None:
        points = 30.0 + (5.0 if threat.kev.ransomware else 0.0)
        value = f"CISA KEV since {threat.kev.date_added.isoformat()}"
        if threat.kev.ransomware:
            value += ", known ransomware use"
        factors.append(RiskFactor("exploitation", value, f"+{points:.1f}"))
    elif threat.epss is not None:
        points = 25.0 * math.sqrt(max(0.0, min(1.0, threat.epss)))
        pct = (
            f", percentile {threat.epss_percentile:.3f}"
            if threat.epss_percentile is not None
            else ""
        )
        factors.append(
            RiskFactor(
                "exploitation",
                f"EPSS {threat.epss:.5f}{pct} ({threat.epss_cve})",
                f"+{points:.1f}",
            )
        )
    else:
        points = 0.0
        factors.append(RiskFactor("exploitation", "no KEV listing, no EPSS score", "+0.0"))
    total += points

    crit_points = (context.criticality - 1) * 2.5
    factors.append(
        RiskFactor("asset criticality", f"{context.criticality} of 5", f"+{crit_points:.1f}")
    )
    exposure_points = 7.0 if context.exposure == "internet" else 0.0
    factors.append(RiskFactor("exposure", context.exposure, f"+{exposure_points:.1f}"))
    data_points = _DATA_CLASS_POINTS.get(context.data_class, 1.0)
    factors.append(RiskFactor("data class", context.data_class, f"+{data_points:.1f}"))
    total += crit_points + exposure_points + data_points
    total = round(min(100.0, total), 1)

    priority = priority_for(total, kev_listed=threat.kev is not None, exposure=context.exposure)
    return RiskScore(score=total, priority=priority, severity=severity, factors=tuple(factors))


def priority_for(total: float, *, kev_listed: bool, exposure: str) -> Priority:
    """Priority bucket of a score, with the KEV floor rules."""
    if total >= 70:
        priority: Priority = "P1"
    elif total >= 50:
        priority = "P2"
    elif total >= 30:
        priority = "P3"
    else:
        priority = "P4"
    if kev_listed:
        if exposure == "internet":
            return "P1"
        if priority in ("P3", "P4"):
            return "P2"
    return priority


def priority_label(priority: Priority) -> str:
    """``P1`` → ``Critical`` and so on, the SLO names."""
    return _PRIORITY_LABEL[priority]


def due_date(
    priority: Priority,
    first_seen: date,
    *,
    kev: KevEntry | None = None,
    policy: SloPolicy | None = None,
) -> date:
    """When a finding must be remediated (see the module docstring for the rule)."""
    policy = policy or SloPolicy()
    due = first_seen + timedelta(days=policy.days_for(priority))
    if kev is not None:
        due = min(due, kev.due_date, first_seen + timedelta(days=policy.kev_days))
    return due
