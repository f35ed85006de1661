"""Migration 0011 attributes the advisories already stored to the feed that imported them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import sqlalchemy as sa

from patchwarden.store.db import make_engine, upgrade


def test_existing_advisories_are_attributed_as_the_importer_names_feeds(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        upgrade(engine, "0008")
        advisory = sa.table(
            "advisory",
            *(
                sa.column(name)
                for name in (
                    "ext_id",
                    "source",
                    "aliases",
                    "related",
                    "summary",
                    "details",
                    "modified",
                    "severity",
                    "database_severity",
                    "references",
                    "affected",
                    "content_hash",
                )
            ),
        )

        def row(ext_id: str, source: str, *ecosystems: str) -> dict[str, object]:
            affected = [{"ecosystem": e, "name": "demo"} for e in ecosystems]
            return {
                "ext_id": ext_id,
                "source": source,
                "aliases": "[]",
                "related": "[]",
                "summary": "",
                "details": "",
                "modified": datetime(2026, 1, 1),
                "severity": "[]",
                "database_severity": "",
                "references": "[]",
                "affected": sa.func.json(sa.literal(str(affected).replace("'", '"'))),
                "content_hash": "",
            }

        with engine.begin() as connection:
            for values in (
                row("ALSA-1", "osv", "AlmaLinux:9", "AlmaLinux:10"),
                row("PYSEC-1", "osv", "PyPI"),
                row("GHSA-1", "osv", "PyPI", "npm"),
                row("GHSA-2", "osv", "PyPI", "npm", "Go", "Maven"),
                row("GIT-1", "osv"),
                row("DSA-1-1", "debian-dsa", "Debian:12"),
            ):
                connection.execute(advisory.insert().values(**values))
        upgrade(engine)
        with engine.connect() as connection:
            feeds = dict(connection.execute(sa.text("SELECT ext_id, feed FROM advisory")).all())
    finally:
        engine.dispose()
    assert feeds == {
        "ALSA-1": "osv:AlmaLinux",
        "PYSEC-1": "osv:PyPI",
        "GHSA-1": "osv:PyPI,npm",
        "GHSA-2": "osv:mixed",
        "GIT-1": "osv",
        "DSA-1-1": "debian-dsa",
    }
