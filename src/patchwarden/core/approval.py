"""What may be deployed: patch baselines and risk exceptions (pure rules).

**Baselines** approve updates for groups. For one candidate (an advisory fixing a
package on a host):

1. a deny list (advisory id/alias or package name) refuses it — deny always wins;
2. an allow list approves it regardless of age or priority;
3. otherwise it must be of an allowed classification (``security`` advisories by
   default; ``bugfix``; ``all``), be at or above ``min_priority`` or have a listed
   severity — or be KEV-listed when ``include_kev`` — and be at least
   ``auto_approve_after_days`` old (from the advisory's publication; 0 approves at
   once; ``None`` never auto-approves: only the allow list does).

**Exceptions** accept a risk: an approved, unexpired exception covers findings of its
advisory (id or any alias; empty = any) and/or package (empty = any) on its asset or on
any asset of its group. Covered findings are excluded from deployment and compliance
counts until the expiry, then reopen.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import PRIORITIES, Priority

Classification = Literal["security", "bugfix", "enhancement"]
_CLASS_CHOICES = ("security", "bugfix", "all")


def classify(advisory_id: str) -> Classification:
    """An advisory's classification from its id (Red Hat-style ALBA/ALEA/RHBA/RHEA)."""
    prefix = advisory_id.split("-", 1)[0].upper()
    if prefix in ("ALBA", "RHBA", "RLBA", "ELBA"):
        return "bugfix"
    if prefix in ("ALEA", "RHEA", "RLEA", "ELEA"):
        return "enhancement"
    return "security"


@dataclass(frozen=True, slots=True)
class BaselineRules:
    """A baseline's approval rules (see the module doc)."""

    min_priority: Priority | None = "P2"
    severities: tuple[str, ...] = ()
    include_kev: bool = True
    classification: str = "security"
    allow_advisories: tuple[str, ...] = ()
    deny_advisories: tuple[str, ...] = ()
    allow_packages: tuple[str, ...] = ()
    deny_packages: tuple[str, ...] = ()
    auto_approve_after_days: int | None = 0

    def to_json(self) -> dict[str, Any]:
        """The stored form."""
        return {
            "min_priority": self.min_priority,
            "severities": list(self.severities),
            "include_kev": self.include_kev,
            "classification": self.classification,
            "allow_advisories": list(self.allow_advisories),
            "deny_advisories": list(self.deny_advisories),
            "allow_packages": list(self.allow_packages),
            "deny_packages": list(self.deny_packages),
            "auto_approve_after_days": self.auto_approve_after_days,
        }


def parse_rules(raw: Mapping[str, Any]) -> BaselineRules:
    """Validate baseline rules from JSON (unknown keys and bad values are refused)."""
    known = set(BaselineRules.__dataclass_fields__)
    unknown = set(raw) - known
    if unknown:
        raise ValidationFailed(
            f"unknown baseline rule {', '.join(sorted(unknown))}",
            hint=f"rules: {', '.join(sorted(known))}",
        )
    min_priority = raw.get("min_priority", "P2")
    if min_priority is not None and min_priority not in PRIORITIES:
        raise ValidationFailed("min_priority must be P1, P2, P3, P4 or null")
    classification = raw.get("classification", "security")
    if classification not in _CLASS_CHOICES:
        raise ValidationFailed(f"classification must be one of {', '.join(_CLASS_CHOICES)}")
    days = raw.get("auto_approve_after_days", 0)
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 0):
        raise ValidationFailed("auto_approve_after_days must be a whole number ≥ 0 or null")

    def strings(key: str) -> tuple[str, ...]:
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValidationFailed(f"{key} must be a list of non-empty strings")
        return tuple(value)

    include_kev = raw.get("include_kev", True)
    if not isinstance(include_kev, bool):
        raise ValidationFailed("include_kev must be true or false")
    return BaselineRules(
        min_priority=min_priority,
        severities=strings("severities"),
        include_kev=include_kev,
        classification=classification,
        allow_advisories=strings("allow_advisories"),
        deny_advisories=strings("deny_advisories"),
        allow_packages=strings("allow_packages"),
        deny_packages=strings("deny_packages"),
        auto_approve_after_days=days,
    )


@dataclass(frozen=True, slots=True)
class Candidate:
    """One update a baseline may approve."""

    advisory_id: str
    aliases: tuple[str, ...]
    package: str
    priority: Priority
    severity: str
    kev: bool
    published: datetime | None


def approve(rules: BaselineRules, candidate: Candidate, now: datetime) -> tuple[bool, str]:
    """Whether the baseline approves the candidate, and why (for change records)."""
    ids = {candidate.advisory_id, *candidate.aliases}
    if ids & set(rules.deny_advisories):
        return False, "advisory on the deny list"
    if candidate.package in rules.deny_packages:
        return False, "package on the deny list"
    if ids & set(rules.allow_advisories):
        return True, "advisory on the allow list"
    if candidate.package in rules.allow_packages:
        return True, "package on the allow list"
    kind = classify(candidate.advisory_id)
    if rules.classification == "security" and kind != "security":
        return False, f"{kind} update; baseline takes security updates"
    if rules.classification == "bugfix" and kind == "enhancement":
        return False, "enhancement; baseline takes security and bugfix updates"
    rank_ok = rules.min_priority is not None and PRIORITIES.index(
        candidate.priority
    ) <= PRIORITIES.index(rules.min_priority)
    severity_ok = candidate.severity in rules.severities
    kev_ok = rules.include_kev and candidate.kev
    if not (rank_ok or severity_ok or kev_ok):
        return False, f"{candidate.priority} {candidate.severity} is below the baseline"
    if rules.auto_approve_after_days is None:
        return False, "baseline approves listed advisories only"
    if rules.auto_approve_after_days > 0:
        if candidate.published is None:
            return False, "publication date unknown; waiting period cannot pass"
        ready = candidate.published + timedelta(days=rules.auto_approve_after_days)
        if ready > now:
            return False, f"auto-approval on {ready.date().isoformat()}"
    reason = "KEV-listed" if kev_ok and not rank_ok else f"{candidate.priority} meets the baseline"
    return True, reason


@dataclass(frozen=True, slots=True)
class ExceptionRule:
    """An approved risk acceptance (the store passes only approved ones)."""

    exception_id: int
    advisory: str
    package: str
    asset_id: int | None
    group_id: int | None
    expires_at: datetime


def covers(
    rule: ExceptionRule,
    *,
    advisory_ids: Iterable[str],
    package: str,
    asset_id: int,
    asset_groups: Iterable[int],
    now: datetime,
) -> bool:
    """Whether ``rule`` accepts this finding at ``now``."""
    if now >= rule.expires_at:
        return False
    if rule.advisory and rule.advisory not in set(advisory_ids):
        return False
    if rule.package and rule.package != package:
        return False
    if rule.asset_id is not None:
        return rule.asset_id == asset_id
    if rule.group_id is not None:
        return rule.group_id in set(asset_groups)
    return False
