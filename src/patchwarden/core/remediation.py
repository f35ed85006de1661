"""Remediation plans: a host's findings collapsed into the upgrades that fix them.

Findings are grouped by what was matched — the source package for Debian, Ubuntu and
Alpine (one upgrade of ``openssl`` fixes ``libssl3`` and ``openssl`` alike), the
package itself elsewhere. The target is the highest fixed version any of the group's
findings needs; the plan is ordered by the risk an upgrade removes (the sum, over the
distinct advisories it fixes, of their highest risk score on this host).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from patchwarden.core import versions
from patchwarden.core.errors import InvalidVersion


@dataclass(frozen=True, slots=True)
class FindingView:
    """The parts of a finding a remediation plan needs."""

    ecosystem: str
    package: str
    installed_version: str
    matched_name: str
    matched_version: str
    advisory_id: str
    fixed_version: str | None
    risk_score: float


@dataclass(frozen=True, slots=True)
class Upgrade:
    """Upgrade ``name`` (and the binaries built from it) to at least ``target_version``."""

    ecosystem: str
    name: str
    installed_version: str
    target_version: str
    packages: tuple[str, ...]
    advisories: tuple[str, ...]
    risk_removed: float


def plan(findings: Iterable[FindingView]) -> tuple[Upgrade, ...]:
    """Upgrades that fix every fixable finding, most risk removed first.

    Findings without a fixed version are ignored here; callers list them apart.
    """
    groups: dict[tuple[str, str, str], list[FindingView]] = {}
    for finding in findings:
        if finding.fixed_version is None:
            continue
        key = (finding.ecosystem, finding.matched_name, finding.matched_version)
        groups.setdefault(key, []).append(finding)

    upgrades: list[Upgrade] = []
    for (ecosystem, name, installed), members in groups.items():
        target = members[0].fixed_version or ""
        for member in members[1:]:
            fixed = member.fixed_version or ""
            try:
                if versions.compare(ecosystem, fixed, target) > 0:
                    target = fixed
            except InvalidVersion:
                # A fix no rule can order cannot be compared: an orderable target
                # stands (matching reports the unorderable version with its finding).
                if not versions.is_valid(ecosystem, target):
                    target = fixed
        per_advisory: dict[str, float] = {}
        for member in members:
            per_advisory[member.advisory_id] = max(
                per_advisory.get(member.advisory_id, 0.0), member.risk_score
            )
        upgrades.append(
            Upgrade(
                ecosystem=ecosystem,
                name=name,
                installed_version=installed,
                target_version=target,
                packages=tuple(sorted({m.package for m in members})),
                advisories=tuple(sorted(per_advisory)),
                risk_removed=round(sum(per_advisory.values()), 1),
            )
        )
    upgrades.sort(key=lambda u: (-u.risk_removed, u.ecosystem, u.name))
    return tuple(upgrades)
