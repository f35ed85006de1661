"""Bulk writes and chunked lookups that stay fast on both backends.

PostgreSQL gets ``COPY`` (an order of magnitude faster than INSERT for millions of
finding rows); SQLite gets the driver's ``executemany`` inside the caller's transaction
(twice as fast as going through SQLAlchemy's parameter processing for finding rows).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import ARRAY, Boolean, ColumnElement, Connection, Date, any_, bindparam
from sqlalchemy.orm import InstrumentedAttribute, Session

from patchwarden.store.models import Base, UtcDateTime, table_of

T = TypeVar("T")

#: Bound parameters per statement stay well under SQLite's 32,766 and PostgreSQL's 65,535.
CHUNK = 900


def chunks(items: Sequence[T] | Iterable[T], size: int = CHUNK) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def one_of(
    session: Session | Connection, column: InstrumentedAttribute[Any], values: Sequence[Any]
) -> ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``column = ANY(:array)``.

    An ``IN`` list is compiled by SQLAlchemy and parsed by psycopg again for every new
    length; the array is one parameter, so the statement text stays the same and both
    come from their caches (a fifth of applying an agent report went there).
    """
    dialect = session.get_bind().dialect if isinstance(session, Session) else session.dialect
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def _converters(
    model: type[Base], columns: Sequence[str], *, sqlite: bool
) -> list[tuple[int, Callable[[Any], Any]]]:
    """Per-column conversions to what the driver stores, as SQLAlchemy's types would do.

    Bulk paths bypass SQLAlchemy's type processing (it costs more than the insert), so
    they convert here: aware datetimes to naive UTC (``UtcDateTime``), and for SQLite
    the same text forms SQLAlchemy writes (``YYYY-MM-DD HH:MM:SS.ffffff``,
    ``YYYY-MM-DD``) and 0/1 for booleans. Values repeat a lot (one first-seen time, a
    few due dates), so each column memoizes its conversions.
    """
    table = table_of(model)
    result: list[tuple[int, Callable[[Any], Any]]] = []
    for index, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, UtcDateTime):

            def to_utc(value: Any) -> Any:
                if isinstance(value, datetime) and value.tzinfo is not None:
                    value = value.astimezone(UTC).replace(tzinfo=None)
                if sqlite and isinstance(value, datetime):
                    return value.strftime("%Y-%m-%d %H:%M:%S.%f")
                return value

            result.append((index, _memoized(to_utc)))
        elif sqlite and isinstance(kind, Date):
            result.append((index, _memoized(lambda v: v.isoformat() if v is not None else None)))
        elif sqlite and isinstance(kind, Boolean):
            result.append((index, lambda v: None if v is None else int(bool(v))))
    return result


def _memoized(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    seen: dict[Any, Any] = {}

    def cached(value: Any) -> Any:
        try:
            return seen[value]
        except KeyError:
            if len(seen) > 10_000:
                seen.clear()
            converted = seen[value] = convert(value)
            return converted

    return cached


def _converted(
    rows: Iterable[Sequence[Any]], converters: list[tuple[int, Callable[[Any], Any]]]
) -> Iterator[Sequence[Any]]:
    if not converters:
        yield from rows
        return
    for row in rows:
        values = list(row)
        for index, convert in converters:
            values[index] = convert(values[index])
        yield values


def insert_rows(
    session: Session, model: type[Base], columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> int:
    """Insert many rows (tuples in ``columns`` order) in the session's transaction.

    PostgreSQL: ``COPY``. SQLite: the driver's ``executemany`` on the same connection.
    """
    table = table_of(model)
    connection = session.connection()
    raw = connection.connection.dbapi_connection
    if raw is None:
        raise RuntimeError("the session has no live database connection")
    column_list = ", ".join(f'"{c}"' for c in columns)
    count = 0
    if connection.dialect.name == "postgresql":
        converters = _converters(model, columns, sqlite=False)
        cursor: Any = raw.cursor()
        with cursor, cursor.copy(f'COPY "{table.name}" ({column_list}) FROM STDIN') as copy:
            for values in _converted(rows, converters):
                copy.write_row(values)
                count += 1
        return count
    converters = _converters(model, columns, sqlite=True)
    placeholders = ", ".join("?" for _ in columns)
    # Table and column names come from the model's metadata, never from input.
    statement = f'INSERT INTO "{table.name}" ({column_list}) VALUES ({placeholders})'  # noqa: S608
    cursor = raw.cursor()
    try:
        for batch in chunks(_converted(rows, converters), 20_000):
            cursor.executemany(statement, batch)
            count += len(batch)
    finally:
        cursor.close()
    return count
