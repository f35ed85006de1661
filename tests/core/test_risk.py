"""Risk scores, priorities, due dates and remediation plans."""

from __future__ import annotations

from datetime import date

import pytest

from patchwarden.core import risk
from patchwarden.core.cvss import score_vector
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import AssetContext, EpssScore, KevEntry, VulnIntel
from patchwarden.core.remediation import FindingView, plan

CRITICAL_V31 = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
MEDIUM_V31 = "CVSS:3.1/AV:N/AC:H/PR:N/UI:R/S:U/C:L/I:L/A:N"  # 4.2
V40 = "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"  # 9.3
KEV = KevEntry("CVE-2024-0001", date(2024, 1, 10), date(2024, 1, 31), ransomware=True)


def intel(
    cve: str, *vectors: str, epss: float | None = None, kev: KevEntry | None = None
) -> VulnIntel:
    return VulnIntel(
        cve_id=cve,
        cvss=tuple(score_vector(v, source="nvd") for v in vectors),
        epss=None if epss is None else EpssScore(epss, 0.5, date(2024, 1, 1)),
        kev=kev,
    )


def test_score_is_the_documented_sum_of_factors() -> None:
    threat = risk.summarize([intel("CVE-1", CRITICAL_V31, epss=0.04)])
    scored = risk.score(threat, AssetContext(criticality=3, exposure="internal"))
    # 9.8*5 + 25*sqrt(0.04) + (3-1)*2.5 + 0 + 1 = 49 + 5 + 5 + 0 + 1
    assert scored.score == pytest.approx(60.0)
    assert scored.priority == "P2"
    assert scored.severity == "Critical"
    names = [f.name for f in scored.factors]
    assert names == ["severity", "exploitation", "asset criticality", "exposure", "data class"]
    total = sum(float(f.effect) for f in scored.factors)
    assert total == pytest.approx(scored.score)


def test_internet_exposure_and_criticality_raise_priority() -> None:
    threat = risk.summarize([intel("CVE-1", CRITICAL_V31, epss=0.25)])
    internal = risk.score(threat, AssetContext(criticality=2, exposure="internal"))
    exposed = risk.score(
        threat, AssetContext(criticality=5, exposure="internet", data_class="restricted")
    )
    assert exposed.score > internal.score
    assert exposed.priority == "P1"
    assert internal.priority == "P2"


def test_kev_listing_dominates_and_sets_floors() -> None:
    threat = risk.summarize([intel("CVE-2024-0001", MEDIUM_V31, kev=KEV)])
    internal = risk.score(threat, AssetContext(criticality=1))
    assert internal.priority == "P2"  # KEV floor on internal assets
    exposed = risk.score(threat, AssetContext(criticality=1, exposure="internet"))
    assert exposed.priority == "P1"
    assert any("ransomware" in f.value for f in internal.factors)


def test_v4_is_preferred_over_v31_for_one_cve() -> None:
    threat = risk.summarize([intel("CVE-1", MEDIUM_V31, V40)])
    assert threat.cvss is not None
    assert threat.cvss.version == "4.0"


def test_worst_cve_of_an_advisory_counts() -> None:
    threat = risk.summarize([intel("CVE-1", MEDIUM_V31), intel("CVE-2", CRITICAL_V31)])
    assert threat.cvss_cve == "CVE-2"


def test_publisher_rating_stands_in_without_cvss() -> None:
    threat = risk.summarize([], publisher_severity="Important")
    scored = risk.score(threat, AssetContext())
    assert scored.severity == "High"
    assert "Important" in scored.factors[0].value
    unknown = risk.score(risk.summarize([]), AssetContext())
    assert "treated as medium" in unknown.factors[0].value


def test_advisory_own_vector_used_only_without_intel() -> None:
    own = [score_vector(CRITICAL_V31, source="advisory")]
    alone = risk.summarize([], advisory_cvss=own)
    assert alone.cvss is not None
    assert alone.cvss.base_score == pytest.approx(9.8)
    with_intel = risk.summarize([intel("CVE-1", MEDIUM_V31)], advisory_cvss=own)
    assert with_intel.cvss is not None
    assert with_intel.cvss.base_score == pytest.approx(4.2)


def test_criticality_is_validated() -> None:
    with pytest.raises(ValidationFailed):
        risk.score(risk.summarize([]), AssetContext(criticality=9))


@pytest.mark.parametrize(("priority", "days"), [("P1", 7), ("P2", 30), ("P3", 90), ("P4", 180)])
def test_default_slo_days(priority: risk.Priority, days: int) -> None:
    first = date(2026, 3, 1)
    assert (risk.due_date(priority, first) - first).days == days


def test_kev_due_date_is_the_sooner_of_catalog_and_fourteen_days() -> None:
    first_seen = date(2024, 1, 1)
    # catalog due 2024-01-31 vs first_seen + 14 = 2024-01-15: 14 days wins
    assert risk.due_date("P3", first_seen, kev=KEV) == date(2024, 1, 15)
    # seen late: the catalog's due date (already past) wins
    assert risk.due_date("P3", date(2024, 3, 1), kev=KEV) == date(2024, 1, 31)
    # P1's 7 days is sooner still
    assert risk.due_date("P1", first_seen, kev=KEV) == date(2024, 1, 8)


def test_custom_policy() -> None:
    policy = risk.SloPolicy(critical_days=2, high_days=10, medium_days=20, low_days=40)
    assert risk.due_date("P2", date(2026, 1, 1), policy=policy) == date(2026, 1, 11)
    with pytest.raises(ValidationFailed):
        risk.SloPolicy(high_days=-1)


def view(
    pkg: str, adv: str, fixed: str | None, score: float, source: str = "openssl"
) -> FindingView:
    return FindingView(
        ecosystem="Debian:12",
        package=pkg,
        installed_version="3.0.9-1",
        matched_name=source,
        matched_version="3.0.9-1",
        advisory_id=adv,
        fixed_version=fixed,
        risk_score=score,
    )


def test_remediation_collapses_binaries_into_one_source_upgrade() -> None:
    upgrades = plan(
        [
            view("libssl3", "DSA-1", "3.0.10-1", 40.0),
            view("openssl", "DSA-1", "3.0.10-1", 40.0),
            view("libssl3", "DSA-2", "3.0.11-1~deb12u1", 55.0),
            view("libssl3", "DEB-OPEN", None, 90.0),
            view("curl", "DSA-3", "7.88.1-10", 10.0, source="curl"),
        ]
    )
    assert [u.name for u in upgrades] == ["openssl", "curl"]
    ssl = upgrades[0]
    assert ssl.target_version == "3.0.11-1~deb12u1"  # highest needed, by dpkg order
    assert ssl.packages == ("libssl3", "openssl")
    assert ssl.advisories == ("DSA-1", "DSA-2")
    assert ssl.risk_removed == pytest.approx(95.0)  # each advisory counted once


def test_remediation_target_uses_native_ordering() -> None:
    upgrades = plan(
        [
            view("p", "A", "1.0-1~bpo1", 1.0, source="p"),
            view("p", "B", "1.0-1", 1.0, source="p"),
        ]
    )
    assert upgrades[0].target_version == "1.0-1"  # ~ sorts before the release


def test_remediation_plans_around_a_fix_no_rule_can_order() -> None:
    # dpkg refuses a version with a space; whichever order the findings come in, the
    # orderable fix is the target and planning does not raise.
    for fixes in (["1.0 bad", "1.0-2"], ["1.0-2", "1.0 bad"]):
        upgrades = plan([view("p", f"A{n}", fix, 1.0, source="p") for n, fix in enumerate(fixes)])
        assert [u.target_version for u in upgrades] == ["1.0-2"]
