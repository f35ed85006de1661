"""Finding a row by its id or its unique name — the one way every command does it."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import InstrumentedAttribute, Session

from patchwarden.core.errors import NotFound

Row = TypeVar("Row")


def by_id_or_name(
    session: Session,
    model: type[Row],
    ident: int | str,
    *,
    name_column: InstrumentedAttribute[Any],
    what: str,
) -> Row:
    """The row whose id (an int or all-digit string) or name is ``ident``, or NotFound."""
    if isinstance(ident, int) or ident.isdigit():
        row = session.get(model, int(ident))
    else:
        row = session.scalars(select(model).where(name_column == ident)).first()
    if row is None:
        raise NotFound(f"no {what} {ident!r}")
    return row
