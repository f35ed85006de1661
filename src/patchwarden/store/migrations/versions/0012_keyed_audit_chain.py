"""the audit chain is keyed; TRUNCATE and head removal refused

Event hashes become HMAC-SHA256 under a key kept outside the database; ``key_id``
names the key of each event (empty for the events written before this revision, which
keep their plain sha256 hashes and stay verifiable as the chain's prefix) and the key
the chain is written with (``audit_head.key_id``). The append-only triggers of 0002
refused UPDATE and DELETE of events; PostgreSQL's TRUNCATE fires no row trigger, so a
statement trigger now refuses it too, and the head row can no longer be deleted or
truncated (SQLite has no TRUNCATE: its ``DELETE FROM`` without WHERE fires the row
triggers).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy): a copied SQLite table would lose its triggers.
    for table in ("audit_event", "audit_head"):
        op.add_column(
            table, sa.Column("key_id", sa.String(length=16), server_default="", nullable=False)
        )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()"
        )
        op.execute(
            """
            CREATE FUNCTION audit_head_kept() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION 'audit_head cannot be removed';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
            "FOR EACH ROW EXECUTE FUNCTION audit_head_kept()"
        )
        op.execute(
            "CREATE TRIGGER audit_head_no_truncate BEFORE TRUNCATE ON audit_head "
            "FOR EACH STATEMENT EXECUTE FUNCTION audit_head_kept()"
        )
    else:
        op.execute(
            "CREATE TRIGGER audit_head_no_delete BEFORE DELETE ON audit_head "
            "BEGIN SELECT RAISE(ABORT, 'audit_head cannot be removed'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_head_no_truncate ON audit_head")
        op.execute("DROP TRIGGER IF EXISTS audit_head_no_delete ON audit_head")
        op.execute("DROP FUNCTION IF EXISTS audit_head_kept()")
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
    else:
        op.execute("DROP TRIGGER IF EXISTS audit_head_no_delete")
    # Keyed events cannot be verified by the code of older revisions; their key ids go.
    for table in ("audit_head", "audit_event"):
        op.drop_column(table, "key_id")
