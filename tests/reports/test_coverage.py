"""Which of a host's ecosystems the loaded advisories cover, as matching applies them."""

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
from patchwarden.reports.scan import ecosystem_coverage
from patchwarden.store.advisories import import_advisories
from patchwarden.store.db import Database
from patchwarden.store.inventory import record_inventory

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BOOKWORM = OsInfo(id="debian", version_id="12", name="Debian", ecosystem="Debian:12")


def advisory(ident: str, ecosystem: str, *, versions: tuple[str, ...] = ()) -> Advisory:
    ranges = () if versions else (AffectedRange("ECOSYSTEM", (Event("introduced", "0"),)),)
    return Advisory(
        id=ident,
        modified=NOW,
        source="osv",
        affected=(Affected(ecosystem, "demo", ranges, versions=versions),),
    )


def host(db: Database, name: str = "bookworm") -> int:
    """A Debian 12 host with two Debian packages and one Python package."""
    packages = (
        InstalledPackage("bash", "5.2.15-2", "Debian:12", "amd64", "bash", "5.2.15-2"),
        InstalledPackage("libz1", "1.2.13", "Debian:12", "amd64", "zlib", "1.2.13"),
        InstalledPackage("requests", "2.31.0", "PyPI"),
    )
    with db.session() as s:
        return record_inventory(s, Inventory(name, packages, os=BOOKWORM), now=NOW)[0]


def covered(db: Database, asset_id: int) -> dict[str, tuple[int, bool]]:
    with db.session() as s:
        return {c.ecosystem: (c.packages, c.covered) for c in ecosystem_coverage(s, asset_id)}


def test_other_releases_and_ecosystems_do_not_cover_a_host(db: Database) -> None:
    asset = host(db)
    assert covered(db, asset) == {"Debian:12": (2, False), "PyPI": (1, False)}
    with db.session() as s:
        import_advisories(
            s,
            [
                advisory("DSA-1", "Debian:11"),
                advisory("USN-1", "Ubuntu:22.04:LTS"),
                advisory("DEBIAN-X", "Debian:12:security"),  # another ecosystem, not a release
            ],
        )
    assert covered(db, asset) == {"Debian:12": (2, False), "PyPI": (1, False)}


def test_the_release_or_the_plain_ecosystem_covers_a_host(db: Database) -> None:
    asset = host(db)
    with db.session() as s:
        import_advisories(s, [advisory("DSA-12", "Debian:12", versions=("1.0",))])
    assert covered(db, asset) == {"Debian:12": (2, True), "PyPI": (1, False)}

    other = host(db, "other")
    with db.session() as s:
        import_advisories(s, [advisory("DEBIAN-ALL", "Debian"), advisory("PYSEC-1", "PyPI")])
    assert covered(db, other) == {"Debian:12": (2, True), "PyPI": (1, True)}
