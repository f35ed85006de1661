"""A host's inventory update refreshes only the findings of the packages it changed.

``store_inventory`` names the package rows an update added and removed;
``refresh_findings(asset_ids=[host], packages=those)`` re-evaluates only them. These
tests drive random update sequences through that path and then check that a full
refresh finds nothing left to do — the incremental result is the full result — on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from sqlalchemy import select

from patchwarden.core.model import Inventory
from patchwarden.store.advisories import import_advisories
from patchwarden.store.db import Database
from patchwarden.store.findings import refresh_findings
from patchwarden.store.inventory import store_inventory
from patchwarden.store.models import FindingRow
from tests.store.test_pipeline import DEBIAN, T0, dsa, pkg

# source package -> versions a host may have (the first ones are vulnerable)
_VERSIONS = {
    "openssl": ["3.0.9-1", "3.0.11-1", "3.0.13-1"],
    "curl": ["7.88.1-1", "7.88.1-10"],
    "bash": ["5.2-1", "5.2-2"],
    "zlib": ["1.2.13-1", "1.3-1"],
    "glibc": ["2.36-9"],
}
_BINARIES = {
    "openssl": ["openssl", "libssl3"],
    "curl": ["curl", "libcurl4"],
    "bash": ["bash"],
    "zlib": ["zlib1g"],
    "glibc": ["libc6", "libc-bin"],
}


def _advisories() -> list:
    return [
        dsa("DSA-1-1", "openssl", "3.0.11-1", cve="CVE-2023-1"),
        dsa("DSA-2-1", "openssl", "3.0.13-1", cve="CVE-2023-2"),
        dsa("DSA-3-1", "curl", "7.88.1-10", cve="CVE-2023-3"),
        dsa("DSA-4-1", "zlib", "1.3-1"),
        dsa("DSA-5-1", "glibc", None),  # no fix yet
    ]


def _random_inventory(rng: random.Random, host: str) -> Inventory:
    packages = []
    for source, versions in _VERSIONS.items():
        if rng.random() < 0.2:
            continue  # not installed
        version = rng.choice(versions)
        for binary in _BINARIES[source]:
            if rng.random() < 0.85:
                packages.append(pkg(binary, version, source))
    return Inventory(hostname=host, packages=tuple(packages), os=DEBIAN)


def _findings(db: Database) -> list[tuple]:
    with db.session() as s:
        return [
            tuple(row)
            for row in s.execute(
                select(
                    FindingRow.asset_id,
                    FindingRow.package_id,
                    FindingRow.advisory_id,
                    FindingRow.state,
                    FindingRow.first_seen,
                    FindingRow.resolved_at,
                    FindingRow.priority,
                    FindingRow.due_date,
                ).order_by(FindingRow.asset_id, FindingRow.package_id, FindingRow.advisory_id)
            )
        ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_incremental_refresh_equals_a_full_refresh(db: Database, seed: int) -> None:
    rng = random.Random(seed)
    with db.session() as s:
        import_advisories(s, _advisories())
    hosts = ["web-1", "web-2", "db-1"]
    asset_ids: dict[str, int] = {}
    now = T0
    for step in range(12):
        host = rng.choice(hosts)
        now += timedelta(days=1)
        with db.session() as s:
            stored = store_inventory(
                s,
                _random_inventory(rng, host),
                now=now,
                asset_id=asset_ids.get(host),
                source="agent",
            )
            asset_ids[host] = stored.asset_id
            refresh_findings(
                s, now=now, asset_ids=[stored.asset_id], packages=stored.added + stored.removed
            )
        before = _findings(db)
        with db.session() as s:
            full = refresh_findings(s, now=now)
        left = (full.new, full.resolved, full.reopened, full.rescored)
        assert left == (0, 0, 0, 0), f"step {step}: a full refresh still had {left} to do"
        assert _findings(db) == before
    states = {row[3] for row in _findings(db)}
    assert "open" in states  # the sequences do exercise the lifecycle
    assert "fixed" in states


def test_a_package_rematched_for_one_host_refreshes_every_host_holding_it(db: Database) -> None:
    """An advisory import invalidates a package's match; the first host whose report
    is applied re-matches it, and the other hosts holding it get their findings too
    (before, they waited for the feed's own refresh, which no longer saw the package
    as unmatched)."""
    shared = pkg("openssl", "3.0.9-1")
    with db.session() as s:
        web = store_inventory(s, Inventory("web-1", (shared, pkg("bash", "5.2-1")), DEBIAN), now=T0)
        db_host = store_inventory(s, Inventory("db-1", (shared,), DEBIAN), now=T0)
        refresh_findings(s, now=T0)
    assert _findings(db) == []
    with db.session() as s:  # the advisory arrives; its refresh has not run yet
        import_advisories(s, [dsa("DSA-1-1", "openssl", "3.0.11-1")])
    later = T0 + timedelta(hours=1)
    with db.session() as s:  # web-1 reports an unrelated change
        stored = store_inventory(
            s, Inventory("web-1", (shared, pkg("bash", "5.2-2")), DEBIAN), now=later
        )
        result = refresh_findings(
            s, now=later, asset_ids=[web.asset_id], packages=stored.added + stored.removed
        )
    assert result.packages_matched == 2  # openssl again, and the new bash
    assert {(row[0], row[3]) for row in _findings(db)} == {
        (web.asset_id, "open"),
        (db_host.asset_id, "open"),
    }


def test_an_unchanged_inventory_names_no_packages(db: Database) -> None:
    same = Inventory("web-1", (pkg("bash", "5.2-1"),), DEBIAN)
    with db.session() as s:
        first = store_inventory(s, same, now=T0)
        again = store_inventory(s, same, now=T0 + timedelta(hours=1), asset_id=first.asset_id)
    assert first.changed
    assert len(first.added) == 1
    assert not first.removed
    assert (again.changed, again.added, again.removed) == (False, (), ())
