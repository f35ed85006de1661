"""enrollment tokens can be bound to one asset (re-enroll tokens)

An ordinary enrollment no longer attaches to an asset whose agent credential is live,
so replacing a host's agent needs a token an administrator bound to that asset. The
token goes with its asset when the asset is deleted.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("asset_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_enrollment_token_asset_id_asset", "asset", ["asset_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("enrollment_token", schema=None) as batch_op:
        batch_op.drop_constraint("fk_enrollment_token_asset_id_asset", type_="foreignkey")
        batch_op.drop_column("asset_id")
