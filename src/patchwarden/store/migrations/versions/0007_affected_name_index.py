"""affected ranges and versions indexed by package name

Matching a host's new packages loads the advisory index for their names only
(``store.advisories.load_index``), across ecosystems, so the lookup is by name alone;
the (ecosystem, name) indexes cannot serve it and PostgreSQL scanned both tables for
every applied inventory report (about 30 ms each at 200,000 advisories).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_affected_range_name", "affected_range", ["name"])
    op.create_index("ix_affected_version_name", "affected_version", ["name"])


def downgrade() -> None:
    op.drop_index("ix_affected_version_name", table_name="affected_version")
    op.drop_index("ix_affected_range_name", table_name="affected_range")
