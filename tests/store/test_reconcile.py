"""Reconciling CMDB records, discovered hosts and SSH inventories with the assets —
on SQLite and PostgreSQL (the ``db`` fixture runs every test on both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patchwarden.collect.cmdb import CmdbRecord
from patchwarden.collect.discovery import DiscoveredHost
from patchwarden.core.model import (
    Advisory,
    Affected,
    AffectedRange,
    Event,
    InstalledPackage,
    Inventory,
    OsInfo,
    Severity,
)
from patchwarden.store import audit
from patchwarden.store.advisories import import_advisories
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import create_group, member_ids
from patchwarden.store.inventory import asset_packages, record_inventory
from patchwarden.store.models import AssetRow, AuditEventRow, FindingRow
from patchwarden.store.reconcile import (
    Identity,
    IdentityIndex,
    names_of,
    reconcile,
    record_collected,
    register_discovered,
    serial_key,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ACTOR = Actor("cli:tester", "cli")
DEBIAN = OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")
OPENSSL = InstalledPackage("libssl3", "3.0.11-1~deb12u1", "Debian:12", "amd64", "openssl")


def inventory(hostname: str, *packages: InstalledPackage) -> Inventory:
    return Inventory(
        hostname=hostname,
        packages=packages or (OPENSSL,),
        os=DEBIAN,
        kernel="6.1.0-18-amd64",
        arch="x86_64",
        source="agent",
    )


def agent_asset(session: Session, hostname: str, **fields: Any) -> int:
    """An asset as an agent reports it: inventory first, then identity fields."""
    asset_id, _changed = record_inventory(session, inventory(hostname), now=T0, source="agent")
    asset = session.get_one(AssetRow, asset_id)
    asset.source = "agent"
    asset.status = "managed"
    for name, value in fields.items():
        setattr(asset, name, value)
    session.flush()
    return asset_id


def plain_asset(session: Session, hostname: str, **fields: Any) -> int:
    asset = AssetRow(hostname=hostname, created_at=T0, **fields)
    session.add(asset)
    session.flush()
    return asset.id


def events(session: Session, action: str) -> list[AuditEventRow]:
    return list(
        session.scalars(
            select(AuditEventRow).where(AuditEventRow.action == action).order_by(AuditEventRow.seq)
        )
    )


def asset_count(session: Session) -> int:
    return session.scalar(select(func.count()).select_from(AssetRow)) or 0


# -------------------------------------------------------------------- matching keys


def test_names_and_serial_keys() -> None:
    assert names_of("Web-1", "") == ("", frozenset({"web-1"}))
    assert names_of("web-1.Example.COM.", "") == ("web-1.example.com", frozenset({"web-1"}))
    assert names_of("web-1", "web-1.example.com") == ("web-1.example.com", frozenset({"web-1"}))
    assert names_of("10.0.0.5", "") == ("", frozenset())
    assert serial_key(" cz21  abc ") == "CZ21 ABC"
    assert serial_key("To Be Filled By O.E.M.") == ""
    index = IdentityIndex()
    index.add(1, Identity(hostname="web", fqdn="web.a.example"))
    index.add(2, Identity(hostname="web"))
    # Different domains are different hosts; a host without a domain matches by name.
    assert index.matches(Identity(fqdn="web.b.example")) == {2: ["hostname"]}
    assert index.matches(Identity(hostname="WEB")) == {1: ["hostname"], 2: ["hostname"]}
    # The exact name finds 1, the short name 2 (no domain known): keys disagree.
    resolution = index.resolve(Identity(fqdn="web.a.example"))
    assert resolution.conflict
    assert [(s.asset_id, s.matched_by) for s in resolution.candidates] == [
        (1, ("fqdn", "hostname")),
        (2, ("hostname",)),
    ]
    assert index.resolve(Identity(hostname="web", fqdn="web.a.example", serial="x")).conflict
    index.add(4, Identity(hostname="db", fqdn="db.a.example", serial="S-4"))
    exact = index.resolve(Identity(fqdn="DB.A.example.", serial="s-4"))
    assert (exact.asset_id, exact.matched_by) == (4, "fqdn")
    # Link-local and unspecified addresses never identify a host.
    unspecified = "0.0.0.0"  # noqa: S104 - an address value, nothing binds to it
    index.add(3, Identity(hostname="x", ips=("fe80::1", unspecified, "10.0.0.3")))
    assert index.matches(Identity(ips=("fe80::1", unspecified))) == {}
    assert index.matches(Identity(ips=("10.0.0.3",))) == {3: ["ip"]}


# ----------------------------------------------------------------------- CMDB import


def test_records_merge_into_existing_assets_by_each_key(db: Database) -> None:
    with db.session() as session:
        web = agent_asset(session, "web-1", fqdn="web-1.prod.example.com")
        dbs = agent_asset(session, "DB-1")
        build = plain_asset(session, "build-7", serial="SN-0007", source="ssh")
        printer = plain_asset(session, "printer", ip_addresses=["10.0.0.9"], source="discovery")
        before = {a.id: a.os_ecosystem for a in session.scalars(select(AssetRow))}

    records = [
        CmdbRecord(row=2, fqdn="WEB-1.prod.example.com", owner="Web Team", criticality=4),
        CmdbRecord(row=3, hostname="db-1", fqdn="db-1.prod.example.com", environment="prod"),
        CmdbRecord(row=4, serial="sn-0007", location="Lyon", timezone="Europe/Paris"),
        CmdbRecord(row=5, ips=("10.0.0.9",), tags=("printers",)),
    ]
    with db.session() as session:
        report = reconcile(session, records, now=T0, actor=ACTOR, label="cmdb.csv")

    assert [(m.row, m.asset_id, m.matched_by) for m in report.merged] == [
        (2, web, "fqdn"),
        (3, dbs, "hostname"),
        (4, build, "serial"),
        (5, printer, "ip"),
    ]
    assert report.created == []
    assert report.conflicts == []
    with db.session() as session:
        assert asset_count(session) == 4
        web_row = session.get_one(AssetRow, web)
        assert (web_row.owner, web_row.criticality) == ("Web Team", 4)
        # Agent facts are untouched.
        assert web_row.hostname == "web-1"
        assert web_row.kernel == "6.1.0-18-amd64"
        assert web_row.source == "agent"
        assert web_row.status == "managed"
        assert asset_packages(session, web) == [OPENSSL]
        assert {a.id: a.os_ecosystem for a in session.scalars(select(AssetRow))} == before
        db_row = session.get_one(AssetRow, dbs)
        assert (db_row.hostname, db_row.fqdn) == ("DB-1", "db-1.prod.example.com")
        assert db_row.environment == "prod"
        build_row = session.get_one(AssetRow, build)
        assert (build_row.location, build_row.timezone, build_row.serial) == (
            "Lyon",
            "Europe/Paris",
            "SN-0007",
        )
        printer_row = session.get_one(AssetRow, printer)
        assert printer_row.tags == ["printers"]
        assert printer_row.source == "cmdb"  # discovery < cmdb
        assert build_row.source == "ssh"  # ssh > cmdb: kept


def test_cmdb_values_overwrite_context_and_add_tags_and_addresses(db: Database) -> None:
    with db.session() as session:
        web = agent_asset(
            session,
            "web-1",
            owner="old team",
            environment="staging",
            tags=["pilot"],
            ip_addresses=["10.0.0.1"],
            serial="machine-id:abc",
        )
    record = CmdbRecord(
        row=2,
        hostname="web-1",
        owner="Web Team",
        environment="production",
        exposure="internet",
        tags=("pci", "pilot"),
        ips=("10.0.0.1", "10.0.1.1"),
        serial="CZ99",
    )
    with db.session() as session:
        report = reconcile(session, [record], now=T0, actor=ACTOR)
        (merged,) = report.merged
        assert set(merged.changed) == {"owner", "environment", "exposure", "tags", "ip_addresses"}
        row = session.get_one(AssetRow, web)
        assert row.tags == ["pci", "pilot"]
        assert row.ip_addresses == ["10.0.0.1", "10.0.1.1"]
        assert row.serial == "machine-id:abc"  # an identity the asset has is never replaced
        assert row.exposure == "internet"


def test_a_short_name_does_not_match_another_domain(db: Database) -> None:
    with db.session() as session:
        plain_asset(session, "web", fqdn="web.a.example")
    with db.session() as session:
        report = reconcile(
            session,
            [CmdbRecord(row=2, hostname="web", fqdn="web.b.example")],
            now=T0,
            actor=ACTOR,
        )
        assert [c.hostname for c in report.created] == ["web"]
        assert report.merged == []
        assert asset_count(session) == 2


def test_unmatched_records_create_unmanaged_cmdb_assets(db: Database) -> None:
    record = CmdbRecord(
        row=7,
        hostname="mail-1",
        fqdn="mail-1.corp.example",
        ips=("192.168.10.5",),
        serial="VMware-42 1a",
        owner="Messaging",
        environment="production",
        criticality=5,
        location="NYC",
        timezone="America/New_York",
        tags=("mail",),
    )
    with db.session() as session:
        report = reconcile(session, [record], now=T0, actor=ACTOR)
    (created,) = report.created
    with db.session() as session:
        asset = session.get_one(AssetRow, created.asset_id)
        assert (asset.source, asset.status) == ("cmdb", "unmanaged")
        assert (asset.hostname, asset.fqdn) == ("mail-1", "mail-1.corp.example")
        assert asset.ip_addresses == ["192.168.10.5"]
        assert (asset.serial, asset.owner, asset.environment) == (
            "VMware-42 1a",
            "Messaging",
            "production",
        )
        assert (asset.criticality, asset.location, asset.timezone) == (5, "NYC", "America/New_York")
        assert asset.tags == ["mail"]
        assert asset.last_seen is None  # nothing has seen it yet
        (event,) = events(session, "asset.create")
        assert event.target_id == str(asset.id)
        assert event.after is not None
        assert event.after["source"] == "cmdb"


def test_no_create_lists_unmatched_records(db: Database) -> None:
    with db.session() as session:
        report = reconcile(
            session,
            [CmdbRecord(row=2, hostname="ghost")],
            now=T0,
            actor=ACTOR,
            create_missing=False,
        )
        assert [(u.row, u.record) for u in report.unmatched] == [(2, "ghost")]
        assert asset_count(session) == 0


def test_conflicts_are_listed_with_both_sides_and_not_applied(db: Database) -> None:
    with db.session() as session:
        web = agent_asset(session, "web-1")
        printer = plain_asset(session, "printer", ip_addresses=["10.0.0.9"])
        app = agent_asset(session, "app-1")
    records = [
        # Name says web-1, address says printer.
        CmdbRecord(row=2, hostname="web-1", ips=("10.0.0.9",), owner="X"),
        # Two records claim app-1.
        CmdbRecord(row=3, hostname="app-1", owner="A"),
        CmdbRecord(row=4, fqdn="app-1.corp.example", owner="B"),
        # Two new records share a serial.
        CmdbRecord(row=5, hostname="new-a", serial="SER-1"),
        CmdbRecord(row=6, hostname="new-b", serial="ser-1"),
        # And one that is fine.
        CmdbRecord(row=7, hostname="new-c"),
    ]
    with db.session() as session:
        report = reconcile(session, records, now=T0, actor=ACTOR)

    conflicts = {c.row: c for c in report.conflicts}
    assert sorted(conflicts) == [2, 3, 4, 5, 6]
    sides = {(s.asset_id, s.matched_by) for s in conflicts[2].assets}
    assert sides == {(web, ("hostname",)), (printer, ("ip",))}
    assert conflicts[2].reason == "matches 2 different assets"
    assert conflicts[3].rows == (4,)
    assert conflicts[4].rows == (3,)
    assert [s.asset_id for s in conflicts[3].assets] == [app]
    assert conflicts[5].rows == (6,)
    assert conflicts[6].rows == (5,)
    assert [c.hostname for c in report.created] == ["new-c"]
    with db.session() as session:
        assert {a.owner for a in session.scalars(select(AssetRow))} == {""}
        assert asset_count(session) == 4
        (summary,) = events(session, "cmdb.import")
        assert summary.after is not None
        assert summary.after["conflicts"] == 5


def test_placeholder_serials_never_match(db: Database) -> None:
    with db.session() as session:
        plain_asset(session, "old-box", serial="Default string")
    with db.session() as session:
        report = reconcile(
            session,
            [CmdbRecord(row=2, hostname="new-box", serial="DEFAULT STRING")],
            now=T0,
            actor=ACTOR,
        )
        (created,) = report.created
        assert session.get_one(AssetRow, created.asset_id).serial == ""


def test_dry_run_writes_nothing(db: Database) -> None:
    with db.session() as session:
        web = agent_asset(session, "web-1")
    records = [
        CmdbRecord(row=2, hostname="web-1", owner="Web Team"),
        CmdbRecord(row=3, hostname="new-1"),
    ]
    with db.session() as session:
        report = reconcile(session, records, now=T0, actor=ACTOR, dry_run=True)
    assert report.dry_run
    assert [(m.asset_id, m.changed) for m in report.merged] == [(web, ("owner",))]
    assert [(c.asset_id, c.hostname) for c in report.created] == [(None, "new-1")]
    with db.session() as session:
        assert asset_count(session) == 1
        assert session.get_one(AssetRow, web).owner == ""
        assert session.scalar(select(func.count()).select_from(AuditEventRow)) == 0


def test_every_change_is_audited_and_a_second_import_changes_nothing(db: Database) -> None:
    with db.session() as session:
        web = agent_asset(session, "web-1")
    records = [
        CmdbRecord(row=2, hostname="web-1", owner="Web Team", criticality=5),
        CmdbRecord(row=3, hostname="new-1"),
    ]
    with db.session() as session:
        first = reconcile(session, records, now=T0, actor=ACTOR, label="servers.csv")
    with db.session() as session:
        second = reconcile(session, records, now=T0, actor=ACTOR, label="servers.csv")

    assert first.counts() == {
        "records": 2,
        "created": 1,
        "merged": 1,
        "updated": 1,
        "unmatched": 0,
        "conflicts": 0,
    }
    # The second time both records match (the created asset by its name) and change nothing.
    assert [m.changed for m in second.merged] == [(), ()]
    assert second.created == []
    with db.session() as session:
        (update,) = events(session, "asset.update")
        assert update.target_id == str(web)
        assert update.actor == "cli:tester"
        assert update.before == {"owner": "", "criticality": 3}
        assert update.after == {"owner": "Web Team", "criticality": 5}
        assert len(events(session, "asset.create")) == 1
        summaries = events(session, "cmdb.import")
        assert [s.target_id for s in summaries] == ["servers.csv", "servers.csv"]
        assert summaries[1].after is not None
        assert summaries[1].after["updated"] == 0
        assert audit.verify(session).ok


def test_criticality_changes_rescore_findings_and_regroup(db: Database) -> None:
    advisory = Advisory(
        id="DSA-5532-1",
        modified=T0,
        source="debian-dsa",
        aliases=("CVE-2023-5363",),
        severity=(Severity("CVSS_V3", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:N/A:N"),),
        affected=(
            Affected(
                "Debian:12",
                "openssl",
                (
                    AffectedRange(
                        "ECOSYSTEM", (Event("introduced", "0"), Event("fixed", "3.0.12-1"))
                    ),
                ),
            ),
        ),
    )
    with db.session() as session:
        import_advisories(session, [advisory])
        web = agent_asset(session, "web-1")
        other = agent_asset(session, "web-2")
        refresh_findings(session, now=T0, asset_ids=[web, other])
        group = create_group(
            session, ACTOR, name="prod", now=T0, group_filter={"environment": ["production"]}
        )
        scores = dict(
            session.execute(select(FindingRow.asset_id, FindingRow.risk_score)).tuples().all()
        )
    assert scores[web] == scores[other]

    later = T0 + timedelta(hours=1)
    records = [
        CmdbRecord(
            row=2, hostname="web-1", criticality=5, exposure="internet", environment="production"
        ),
        CmdbRecord(row=3, hostname="web-2", owner="only the owner changes"),
    ]
    with db.session() as session:
        report = reconcile(session, records, now=later, actor=ACTOR)
    assert report.rescored == [web]
    with db.session() as session:
        after = dict(
            session.execute(select(FindingRow.asset_id, FindingRow.risk_score)).tuples().all()
        )
        assert after[web] > scores[web]
        assert after[other] == scores[other]
        assert member_ids(session, group.id) == [web]


def test_cmdb_confirms_a_discovered_host(db: Database) -> None:
    with db.session() as session:
        found = plain_asset(
            session, "10.0.0.7", ip_addresses=["10.0.0.7"], source="discovery", status="discovered"
        )
    with db.session() as session:
        report = reconcile(
            session,
            [CmdbRecord(row=2, hostname="nas-1", ips=("10.0.0.7",))],
            now=T0,
            actor=ACTOR,
        )
        assert [(m.asset_id, m.matched_by) for m in report.merged] == [(found, "ip")]
        asset = session.get_one(AssetRow, found)
        assert (asset.status, asset.source) == ("unmanaged", "cmdb")
        assert asset.hostname == "10.0.0.7"  # the name is an identity fact: kept


# ------------------------------------------------------------------------- discovery


def test_discovered_hosts_are_registered_once(db: Database) -> None:
    hosts = [
        DiscoveredHost("127.0.0.1", (22, 80), (), "localhost"),
        DiscoveredHost("127.0.0.2", (), (22,), ""),
    ]
    with db.session() as session:
        first = register_discovered(session, hosts, now=T0, actor=ACTOR)
    later = T0 + timedelta(days=1)
    with db.session() as session:
        second = register_discovered(session, hosts, now=later, actor=ACTOR)

    assert [h.outcome for h in first.hosts] == ["created", "created"]
    assert [h.outcome for h in second.hosts] == ["unchanged", "unchanged"]
    assert [h.asset_id for h in second.hosts] == [h.asset_id for h in first.hosts]
    with db.session() as session:
        assets = list(session.scalars(select(AssetRow).order_by(AssetRow.id)))
        assert [(a.hostname, a.ip_addresses) for a in assets] == [
            ("localhost", ["127.0.0.1"]),
            ("127.0.0.2", ["127.0.0.2"]),
        ]
        assert {(a.source, a.status) for a in assets} == {("discovery", "discovered")}
        assert {a.last_seen for a in assets} == {later}
        created = events(session, "asset.create")
        assert created[0].after is not None
        assert created[0].after["open_ports"] == [22, 80]
        assert len(events(session, "discovery.register")) == 2


def test_discovery_adds_addresses_to_known_assets_without_taking_them_over(
    db: Database,
) -> None:
    with db.session() as session:
        web = agent_asset(session, "web-1", last_seen=T0)
        printer = plain_asset(session, "printer", ip_addresses=["10.0.0.9"])
    later = T0 + timedelta(days=1)
    hosts = [
        DiscoveredHost("10.0.0.11", (22,), (), "web-1.corp.example"),
        DiscoveredHost("10.0.0.9", (9100,), (), "web-1.corp.example"),
    ]
    with db.session() as session:
        report = register_discovered(session, hosts, now=later, actor=ACTOR)

    updated, conflict = report.hosts
    assert (updated.outcome, updated.asset_id) == ("updated", web)
    assert set(updated.changed) == {"ip_addresses", "fqdn"}
    assert conflict.outcome == "conflict"
    assert {s.asset_id for s in conflict.conflicts} == {web, printer}
    with db.session() as session:
        row = session.get_one(AssetRow, web)
        assert row.ip_addresses == ["10.0.0.11"]
        assert row.fqdn == "web-1.corp.example"
        assert (row.source, row.status, row.last_seen) == ("agent", "managed", T0)
        assert session.get_one(AssetRow, printer).ip_addresses == ["10.0.0.9"]
        assert asset_count(session) == 2


# -------------------------------------------------------------------- SSH inventories


def test_collected_inventories_create_then_update_one_asset(db: Database) -> None:
    inv = inventory("files-1")
    with db.session() as session:
        first = record_collected(
            session, inv, now=T0, actor=ACTOR, address="10.0.0.20", name="files-1.corp.example"
        )
    with db.session() as session:
        second = record_collected(session, inv, now=T0, actor=ACTOR, address="10.0.0.20")

    assert first.created
    assert first.changed
    assert (second.asset_id, second.created, second.changed) == (first.asset_id, False, False)
    assert second.matched_by == "hostname"
    with db.session() as session:
        asset = session.get_one(AssetRow, first.asset_id)
        assert (asset.source, asset.status) == ("ssh", "unmanaged")
        assert asset.fqdn == "files-1.corp.example"
        assert asset.ip_addresses == ["10.0.0.20"]
        assert asset_packages(session, asset.id) == [OPENSSL]
        assert asset.os_ecosystem == "Debian:12"
        assert len(events(session, "ssh.inventory")) == 2


def test_a_collected_inventory_lands_on_the_cmdb_asset(db: Database) -> None:
    with db.session() as session:
        report = reconcile(
            session,
            [CmdbRecord(row=2, hostname="erp-1", ips=("10.0.0.30",), owner="ERP")],
            now=T0,
            actor=ACTOR,
        )
    (created,) = report.created
    with db.session() as session:
        # The host calls itself something else; the address it was reached at matches.
        outcome = record_collected(
            session, inventory("srv-4711"), now=T0, actor=ACTOR, address="10.0.0.30"
        )
    assert (outcome.asset_id, outcome.matched_by, outcome.created) == (
        created.asset_id,
        "ip",
        False,
    )
    with db.session() as session:
        asset = session.get_one(AssetRow, created.asset_id)
        assert (asset.hostname, asset.owner, asset.source) == ("erp-1", "ERP", "ssh")
        assert asset.status == "unmanaged"
        assert asset_packages(session, asset.id) == [OPENSSL]


def test_a_collected_inventory_matching_two_assets_is_not_recorded(db: Database) -> None:
    with db.session() as session:
        one = plain_asset(session, "cache-1")
        two = plain_asset(session, "other", ip_addresses=["10.0.0.40"])
    with db.session() as session:
        outcome = record_collected(
            session, inventory("cache-1"), now=T0, actor=ACTOR, address="10.0.0.40"
        )
        assert outcome.asset_id is None
        assert {s.asset_id for s in outcome.conflicts} == {one, two}
        assert asset_packages(session, one) == []
        assert events(session, "ssh.inventory") == []
