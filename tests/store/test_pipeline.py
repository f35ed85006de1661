"""Advisory import, inventories, matching and the finding lifecycle — on SQLite and
PostgreSQL (the ``db`` fixture runs every test on both)."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from patchwarden.core.model import (
    Advisory,
    Affected,
    AffectedRange,
    CvssScore,
    EpssScore,
    Event,
    InstalledPackage,
    Inventory,
    KevEntry,
    OsInfo,
)
from patchwarden.reports.scan import host_report
from patchwarden.store.advisories import find_advisory, import_advisories
from patchwarden.store.db import Database
from patchwarden.store.findings import refresh_findings
from patchwarden.store.intel import get_intel, replace_epss, replace_kev, upsert_cvss
from patchwarden.store.inventory import record_inventory
from patchwarden.store.models import (
    AffectedRangeRow,
    AssetPackage,
    FindingRow,
    PackageRow,
    PackageVuln,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
DEBIAN = OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")


def dsa(
    ident: str, source: str, fixed: str | None, *, modified: datetime = T0, cve: str = ""
) -> Advisory:
    events = [Event("introduced", "0")] + ([Event("fixed", fixed)] if fixed else [])
    return Advisory(
        id=ident,
        modified=modified,
        source="debian-dsa",
        aliases=(cve,) if cve else (),
        summary=f"{source} security update",
        affected=(Affected("Debian:12", source, (AffectedRange("ECOSYSTEM", tuple(events)),)),),
        database_severity="high",
    )


def pkg(name: str, version: str, source: str = "", source_version: str = "") -> InstalledPackage:
    return InstalledPackage(
        name, version, "Debian:12", "amd64", source or name, source_version or version
    )


def inventory(*packages: InstalledPackage, host: str = "web-1") -> Inventory:
    return Inventory(hostname=host, packages=packages, os=DEBIAN)


def open_findings(db: Database, asset_id: int) -> dict[str, FindingRow]:
    with db.session() as s:
        rows = s.execute(
            select(FindingRow, PackageVuln.matched_name)
            .join(
                PackageVuln,
                (PackageVuln.package_id == FindingRow.package_id)
                & (PackageVuln.advisory_id == FindingRow.advisory_id),
            )
            .where(FindingRow.asset_id == asset_id)
        ).all()
        from patchwarden.store.models import AdvisoryRow

        ids = {r.id: r.ext_id for r in s.scalars(select(AdvisoryRow))}
        return {f"{ids[f.advisory_id]}/{name}/{f.package_id}": f for f, name in rows}


def test_import_is_incremental_by_modified(db: Database) -> None:
    with db.session() as s:
        first = import_advisories(
            s, [dsa("DSA-1-1", "openssl", "3.0.11-1"), dsa("DSA-2-1", "curl", None)]
        )
    assert (first.added, first.updated, first.unchanged) == (2, 0, 0)
    with db.session() as s:
        again = import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1")])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)
    newer = dsa("DSA-1-1", "openssl", "3.0.13-1", modified=T0 + timedelta(days=1))
    with db.session() as s:
        updated = import_advisories(s, [newer])
        assert updated.updated == 1
        ranges = s.scalars(select(AffectedRangeRow.fixed)).all()
    assert sorted(ranges) == ["", "3.0.13-1"]  # old range replaced, not duplicated
    with db.session() as s:
        (found,) = find_advisory(s, "DSA-1-1")
    assert found.affected[0].ranges[0].events[-1] == Event("fixed", "3.0.13-1")


def test_withdrawn_advisories_are_kept_but_never_matched(db: Database) -> None:
    withdrawn = replace(dsa("DSA-9-1", "openssl", "9.9-1"), withdrawn=T0)
    with db.session() as s:
        result = import_advisories(s, [withdrawn])
        asset_id, _ = record_inventory(s, inventory(pkg("openssl", "1.0-1")), now=T0)
        refresh_findings(s, now=T0)
    assert result.withdrawn == 1
    assert open_findings(db, asset_id) == {}
    with db.session() as s:
        assert find_advisory(s, "DSA-9-1")[0].withdrawn == T0


def test_finding_lifecycle_first_seen_resolved_reopened(db: Database) -> None:
    with db.session() as s:
        import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1", cve="CVE-2023-1")])
        asset_id, changed = record_inventory(
            s,
            inventory(
                pkg("libssl3", "3.0.9-1", "openssl"),
                pkg("openssl", "3.0.9-1"),
                pkg("bash", "5.2-1"),
            ),
            now=T0,
        )
        assert changed
        result = refresh_findings(s, now=T0)
    assert result.new == 2  # libssl3 and openssl, both through source openssl
    findings = open_findings(db, asset_id)
    assert all(f.state == "open" and f.first_seen == T0 for f in findings.values())
    assert all(f.due_date is not None for f in findings.values())

    # Same inventory again: nothing changes, first_seen is kept.
    t1 = T0 + timedelta(days=3)
    with db.session() as s:
        _, changed = record_inventory(
            s,
            inventory(
                pkg("libssl3", "3.0.9-1", "openssl"),
                pkg("openssl", "3.0.9-1"),
                pkg("bash", "5.2-1"),
            ),
            now=t1,
        )
        again = refresh_findings(s, now=t1, asset_ids=[asset_id])
    assert not changed
    assert (again.new, again.resolved) == (0, 0)

    # Upgrade: both findings resolve with resolved_at = the scan time.
    t2 = T0 + timedelta(days=5)
    with db.session() as s:
        record_inventory(
            s,
            inventory(
                pkg("libssl3", "3.0.11-1", "openssl"),
                pkg("openssl", "3.0.11-1"),
                pkg("bash", "5.2-1"),
            ),
            now=t2,
        )
        upgraded = refresh_findings(s, now=t2, asset_ids=[asset_id])
    assert upgraded.resolved == 2
    resolved = open_findings(db, asset_id)
    assert {f.state for f in resolved.values()} == {"fixed"}
    assert {f.resolved_at for f in resolved.values()} == {t2}

    # Downgrade back: the same findings reopen, keeping their first_seen.
    t3 = T0 + timedelta(days=6)
    with db.session() as s:
        record_inventory(
            s,
            inventory(
                pkg("libssl3", "3.0.9-1", "openssl"),
                pkg("openssl", "3.0.9-1"),
                pkg("bash", "5.2-1"),
            ),
            now=t3,
        )
        reopened = refresh_findings(s, now=t3, asset_ids=[asset_id])
    assert reopened.reopened == 2
    states = open_findings(db, asset_id)
    assert {f.state for f in states.values()} == {"open"}
    assert {f.first_seen for f in states.values()} == {T0}


def test_feed_update_rematches_only_touched_names(db: Database) -> None:
    with db.session() as s:
        import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1")])
        asset_id, _ = record_inventory(
            s, inventory(pkg("openssl", "3.0.9-1"), pkg("curl", "7.88.1-1")), now=T0
        )
        refresh_findings(s, now=T0)
    with db.session() as s:
        result = import_advisories(s, [dsa("DSA-5-1", "curl", "7.88.1-10")])
    assert result.touched == {("Debian:12", "curl")}
    with db.session() as s:
        refreshed = refresh_findings(s, now=T0 + timedelta(hours=1))
    assert refreshed.packages_matched == 1  # only curl's package row was re-matched
    assert refreshed.new == 1
    assert {k.split("/")[0] for k in open_findings(db, asset_id)} == {"DSA-1-1", "DSA-5-1"}


def test_intel_drives_score_priority_and_kev_due_date(db: Database) -> None:
    with db.session() as s:
        import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1", cve="CVE-2023-1")])
        asset_id, _ = record_inventory(
            s, inventory(pkg("openssl", "3.0.9-1")), now=T0, criticality=4, exposure="internet"
        )
        refresh_findings(s, now=T0)
    (before,) = open_findings(db, asset_id).values()
    assert before.priority == "P2"  # publisher "high" only: 37.5 + 0 + 7.5 + 7 + 1 = 53

    with db.session() as s:
        upsert_cvss(
            s,
            [
                (
                    "CVE-2023-1",
                    [
                        CvssScore(
                            "3.1",
                            "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                            9.8,
                            "Critical",
                            "nvd",
                        )
                    ],
                    "desc",
                )
            ],
        )
        replace_epss(s, [("CVE-2023-1", EpssScore(0.9, 0.99, date(2026, 1, 4), "v2025"))])
        replace_kev(s, [KevEntry("CVE-2023-1", date(2025, 12, 1), date(2025, 12, 22))])
        intel = get_intel(s, ["CVE-2023-1"])["CVE-2023-1"]
        assert intel.kev is not None
        assert intel.epss is not None
        rescored = refresh_findings(s, now=T0 + timedelta(hours=1))
    assert rescored.rescored == 1
    (after,) = open_findings(db, asset_id).values()
    assert after.priority == "P1"
    assert after.risk_score == 94.5  # 49 + KEV 30 + 7.5 + 7 + 1
    assert after.due_date == date(2025, 12, 22)  # the catalog's (past) due date is sooner

    # KEV is a full replacement: a catalog without the CVE clears the listing.
    with db.session() as s:
        replace_kev(s, [])
        assert get_intel(s, ["CVE-2023-1"])["CVE-2023-1"].kev is None


def test_host_report_lists_reasons_remediation_and_unfixed(db: Database) -> None:
    with db.session() as s:
        import_advisories(
            s,
            [
                dsa("DSA-1-1", "openssl", "3.0.10-1", cve="CVE-2023-1"),
                dsa("DSA-2-1", "openssl", "3.0.11-1~deb12u1", cve="CVE-2023-2"),
                dsa("DEBIAN-CVE-2024-9", "openssl", None, cve="CVE-2024-9"),
            ],
        )
        asset_id, _ = record_inventory(
            s, inventory(pkg("libssl3", "3.0.9-1", "openssl"), pkg("openssl", "3.0.9-1")), now=T0
        )
        refresh_findings(s, now=T0)
        report = host_report(s, asset_id, now=T0, package_count=2)
    assert len(report.findings) == 6
    assert all(f.why for f in report.findings)
    (upgrade,) = report.remediation
    assert upgrade.name == "openssl"
    assert upgrade.target_version == "3.0.11-1~deb12u1"
    assert upgrade.packages == ("libssl3", "openssl")
    assert {f.advisory_id for f in report.unfixed} == {"DEBIAN-CVE-2024-9"}
    scores = [f.risk.score for f in report.findings]
    assert scores == sorted(scores, reverse=True)


def test_package_rows_are_shared_between_assets(db: Database) -> None:
    from patchwarden.store.models import PackageRow

    with db.session() as s:
        record_inventory(s, inventory(pkg("bash", "5.2-1"), host="a"), now=T0)
        record_inventory(s, inventory(pkg("bash", "5.2-1"), host="b"), now=T0)
        count = s.scalar(select(func.count()).select_from(PackageRow))
    assert count == 1


def test_timestampless_feeds_only_rewrite_changed_content(db: Database) -> None:
    """Debian tracker / DSA / secdb records carry the import time as ``modified``."""
    with db.session() as s:
        import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1")])
    later = T0 + timedelta(days=1)
    with db.session() as s:
        same = import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1", modified=later)])
        changed = import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.12-1", modified=later)])
    assert (same.updated, same.unchanged, same.touched) == (0, 1, set())
    assert changed.updated == 1


def test_schema_matches_the_models(db: Database) -> None:
    """The migrations produce exactly the schema the ORM models describe."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from patchwarden.store.models import Base

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_two_transactions_recording_the_same_new_package_both_succeed(db: Database) -> None:
    # Two hosts upload the same update at once: the second insert of the package row
    # waits for the first transaction, then reuses its row instead of failing.
    shared = pkg("openssl", "3.0.15-1")
    first = db.session()
    first_session = first.__enter__()
    record_inventory(first_session, inventory(shared, host="web-1"), now=T0)
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            with db.session() as s:
                outcome["ids"] = record_inventory(s, inventory(shared, host="web-2"), now=T0)
        except Exception as exc:  # the assertion below reports it
            outcome["error"] = exc

    worker = threading.Thread(target=second)
    worker.start()
    worker.join(timeout=1.0)  # it is now blocked on the first transaction
    first.__exit__(None, None, None)  # commit
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome.get("error")
    with db.session() as s:
        package_rows = s.scalars(select(func.count()).select_from(PackageRow)).one()
        holders = s.scalars(select(func.count()).select_from(AssetPackage)).one()
    assert package_rows == 1
    assert holders == 2


def test_two_transactions_matching_the_same_package_write_its_matches_once(db: Database) -> None:
    shared = pkg("openssl", "3.0.9-1")
    with db.session() as s:
        import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1", cve="CVE-2023-1")])
        web1, _ = record_inventory(s, inventory(shared, host="web-1"), now=T0)
        web2, _ = record_inventory(s, inventory(shared, host="web-2"), now=T0)
    first = db.session()
    refresh_findings(first.__enter__(), now=T0, asset_ids=[web1])
    outcome: dict[str, object] = {}

    def second() -> None:
        try:
            with db.session() as s:
                outcome["result"] = refresh_findings(s, now=T0, asset_ids=[web2])
        except Exception as exc:  # the assertion below reports it
            outcome["error"] = exc

    worker = threading.Thread(target=second)
    worker.start()
    worker.join(timeout=1.0)  # on PostgreSQL: waiting for the first transaction's row lock
    first.__exit__(None, None, None)  # commit
    worker.join(timeout=60)
    assert not worker.is_alive()
    assert "error" not in outcome, outcome.get("error")
    with db.session() as s:
        matches = s.scalars(select(func.count()).select_from(PackageVuln)).one()
    assert matches == 1
    assert set(open_findings(db, web1)) == set(open_findings(db, web2)) == {"DSA-1-1/openssl/1"}
