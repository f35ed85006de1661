"""advisories remember the feed that imported them

``feeds status`` showed the record count of each feed's last import ("osv:AlmaLinux 3"
while 1,783 were stored). Each advisory now names the feed (its feed-state name) that
last imported it, so the status counts what is stored. Existing rows are attributed as
the importer named them: by source kind, and OSV records by their base ecosystems.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _osv_feed(affected: Any) -> str:
    # The importer's naming (feeds.importer.feed_name), applied per record.
    bases = sorted(
        {
            str(item.get("ecosystem", "")).partition(":")[0]
            for item in affected or []
            if isinstance(item, dict) and item.get("ecosystem")
        }
    )
    if not bases:
        return "osv"
    if len(bases) > 3:
        return "osv:mixed"
    return "osv:" + ",".join(bases)


def upgrade() -> None:
    with op.batch_alter_table("advisory", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("feed", sa.String(length=200), nullable=False, server_default="")
        )
        batch_op.create_index("ix_advisory_feed", ["feed"])
    advisory = sa.table(
        "advisory",
        sa.column("id", sa.Integer),
        sa.column("source", sa.String),
        sa.column("feed", sa.String),
        sa.column("affected", sa.JSON),
    )
    bind = op.get_bind()
    bind.execute(advisory.update().where(advisory.c.source != "osv").values(feed=advisory.c.source))
    rows = bind.execute(
        sa.select(advisory.c.id, advisory.c.affected).where(advisory.c.source == "osv")
    ).all()
    by_feed: dict[str, list[int]] = {}
    for row_id, affected in rows:
        by_feed.setdefault(_osv_feed(affected), []).append(row_id)
    for feed, ids in by_feed.items():
        for start in range(0, len(ids), 1000):
            bind.execute(
                advisory.update()
                .where(advisory.c.id.in_(ids[start : start + 1000]))
                .values(feed=feed)
            )


def downgrade() -> None:
    with op.batch_alter_table("advisory", schema=None) as batch_op:
        batch_op.drop_index("ix_advisory_feed")
        batch_op.drop_column("feed")
