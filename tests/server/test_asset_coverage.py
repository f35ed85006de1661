"""The asset API and page say when no loaded advisory covers a host's ecosystem."""

from __future__ import annotations

from datetime import UTC, datetime

from patchwarden.core.model import (
    Advisory,
    Affected,
    AffectedRange,
    Event,
    InstalledPackage,
    Inventory,
    OsInfo,
)
from patchwarden.server.context import AppContext
from patchwarden.store.advisories import import_advisories
from patchwarden.store.findings import refresh_findings
from patchwarden.store.inventory import record_inventory
from tests.server.conftest import SignedIn

BOOKWORM = OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")
HINT = (
    "load one with: patchwarden feeds sync --ecosystem Debian:12 "
    "(or patchwarden feeds import an OSV file for it)"
)


def advisory(ident: str, ecosystem: str) -> Advisory:
    return Advisory(
        id=ident,
        modified=datetime(2026, 1, 1, tzinfo=UTC),
        affected=(
            Affected(
                ecosystem,
                "openssl",
                (AffectedRange("ECOSYSTEM", (Event("introduced", "0"), Event("fixed", "1.0"))),),
            ),
        ),
    )


def seed(ctx: AppContext) -> int:
    """A Debian 12 host while only a Debian 11 advisory is loaded (an older DSA list)."""
    packages = (
        InstalledPackage("libssl3", "3.0.9-1", "Debian:12", "amd64", "openssl", "3.0.9-1"),
        InstalledPackage("bash", "5.2.15-2", "Debian:12", "amd64", "bash", "5.2.15-2"),
    )
    with ctx.db.session() as session:
        import_advisories(session, [advisory("DSA-11-1", "Debian:11")])
        asset_id, _ = record_inventory(
            session, Inventory("bookworm", packages, os=BOOKWORM), now=ctx.now()
        )
        refresh_findings(session, now=ctx.now())
    return asset_id


def test_uncovered_host_is_not_reported_clean(ctx: AppContext, admin: SignedIn) -> None:
    asset_id = seed(ctx)
    detail = admin.client.get(f"/api/v1/assets/{asset_id}").json()
    assert detail["coverage"] == [
        {"ecosystem": "Debian:12", "packages": 2, "covered": False, "hint": HINT}
    ]
    report = admin.client.get(f"/api/v1/assets/{asset_id}/report").json()
    assert report["coverage"] == detail["coverage"]

    page = admin.client.get(f"/assets/{asset_id}")
    assert page.status_code == 200
    html = page.text
    assert 'id="coverage"' in html
    assert "no loaded advisory covers\n    <strong>Debian:12</strong> (2 packages)" in html
    assert "patchwarden feeds sync --ecosystem Debian:12" in html
    assert "No open findings." not in html
    assert "no package of this host was checked" in html

    # An advisory for plain "Debian" applies to every release: the host is covered.
    with ctx.db.session() as session:
        import_advisories(session, [advisory("DEBIAN-ALL-1", "Debian")])
    detail = admin.client.get(f"/api/v1/assets/{asset_id}").json()
    assert detail["coverage"] == [
        {"ecosystem": "Debian:12", "packages": 2, "covered": True, "hint": None}
    ]
    html = admin.client.get(f"/assets/{asset_id}").text
    assert 'id="coverage"' not in html
    assert "No open findings." in html
