"""finding without foreign keys

Bulk-writing millions of findings with three referential-integrity checks per row was
the largest cost of a fleet refresh (docs/performance.md). Findings are derived data:
the store deletes an asset's findings with the asset, and packages and advisories are
never deleted, so the constraints bought nothing a test does not already prove.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REFERENCES = (("asset_id", "asset"), ("package_id", "package"), ("advisory_id", "advisory"))


def _finding(with_keys: bool) -> sa.Table:
    """The finding table as a batch-mode template (SQLite rebuilds the table from it)."""
    keys = (
        [
            sa.ForeignKeyConstraint([column], [f"{table}.id"], ondelete="CASCADE")
            for column, table in _REFERENCES
        ]
        if with_keys
        else []
    )
    return sa.Table(
        "finding",
        sa.MetaData(),
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("package_id", sa.Integer(), nullable=False),
        sa.Column("advisory_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("resolved_at", sa.DateTime(), nullable=True),
        sa.Column("risk_score", sa.Float(), nullable=False),
        sa.Column("priority", sa.String(length=2), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        *keys,
        sa.UniqueConstraint("asset_id", "package_id", "advisory_id", name="uq_finding"),
        sa.Index("ix_finding_advisory_id", "advisory_id"),
        sa.Index("ix_finding_asset_state", "asset_id", "state"),
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column, _table in _REFERENCES:
            op.execute(f"ALTER TABLE finding DROP CONSTRAINT IF EXISTS finding_{column}_fkey")
        return
    with op.batch_alter_table("finding", recreate="always", copy_from=_finding(False)):
        pass


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for column, table in _REFERENCES:
            op.create_foreign_key(
                f"finding_{column}_fkey", "finding", table, [column], ["id"], ondelete="CASCADE"
            )
        return
    with op.batch_alter_table("finding", recreate="always", copy_from=_finding(True)):
        pass
