"""four eyes by user id: requests and approvals remember the user behind them

Until now exceptions, rollouts and approvals named their requester and approver only by
a display name ("bob", "bob (token ci)", "cli:bob"), and four eyes compared names: the
CLI's name came from the Unix login, so anyone could claim to be someone else, and the
same person through the API and the CLI counted as two. The user id is now recorded.
Existing rows get the id of the user their name designates, where one does (names of
the old CLI form "cli:<login>" designate no patchwarden user and stay without one).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, name column, new user-id column)
_COLUMNS = (
    ("risk_exception", "requested_by", "requested_by_user"),
    ("risk_exception", "approved_by", "approved_by_user"),
    ("rollout", "requested_by", "requested_by_user"),
    ("approval", "approver", "approver_user"),
)


def _username(display: str) -> str:
    """The user a stored display name designates ("bob (token ci)" → "bob")."""
    return display.split(" (token", 1)[0]


def upgrade() -> None:
    for table, _name, column in _COLUMNS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.Integer(), nullable=True))
    connection = op.get_bind()
    users: dict[str, int] = {
        str(name): int(user_id)
        for name, user_id in connection.execute(sa.text("SELECT username, id FROM app_user"))
    }
    for table, name, column in _COLUMNS:
        rows = connection.execute(sa.text(f"SELECT id, {name} FROM {table}")).all()  # noqa: S608 - fixed names
        for row_id, display in rows:
            user_id = users.get(_username(display or ""))
            if user_id is not None:
                connection.execute(
                    sa.text(f"UPDATE {table} SET {column} = :u WHERE id = :i"),  # noqa: S608 - fixed names
                    {"u": user_id, "i": row_id},
                )


def downgrade() -> None:
    for table, _name, column in reversed(_COLUMNS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
