"""agent reports remember when they were claimed

A report is claimed ('processing') in one transaction and applied in the next; when the
process applying it dies in between, the report stayed 'processing' for ever, and the
host's next uploads of the same inventory were taken for re-sends of it. With the claim
time recorded, reports claimed long ago go back to 'pending'.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("agent_report", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agent_report", schema=None) as batch_op:
        batch_op.drop_column("claimed_at")
