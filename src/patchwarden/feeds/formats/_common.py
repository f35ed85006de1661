"""Helpers every format parser shares: decoding, typed field access, timestamps, errors.

Decoded JSON/YAML is handled as ``object`` and narrowed with ``isinstance`` so that a
value of the wrong type becomes a ``FeedError`` with its location, never a TypeError.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TypeVar

import orjson

from patchwarden.core.documents import plain_yaml
from patchwarden.core.errors import FeedError, ValidationFailed

H = TypeVar("H", bound=Hashable)

CVE_ID = re.compile(r"CVE-\d{4}-\d{4,}")

_REDOWNLOAD = "the file may be truncated or corrupt; download it again"
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class Where:
    """The place being parsed: file (``source``) and record, for error messages."""

    source: str
    record: str | None = None

    def at(self, record: str) -> Where:
        """The same file, another record."""
        return Where(self.source, record)

    def error(
        self, message: str, *, field: str | None = None, hint: str | None = None
    ) -> FeedError:
        """A ``FeedError`` located here (the caller raises it)."""
        return FeedError(message, source=self.source, record=self.record, field=field, hint=hint)


def type_name(value: object) -> str:
    """How a decoded JSON/YAML value is called in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --------------------------------------------------------------------------- decoding


def load_json(data: bytes, source: str, *, expected: str, record: str | None = None) -> object:
    """Decode JSON, or raise ``FeedError`` saying what was expected and where it broke."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise FeedError(
            f"not valid JSON ({exc}); expected {expected}",
            source=source,
            record=record,
            hint=_REDOWNLOAD,
        ) from exc


def load_yaml(data: bytes, source: str, *, expected: str) -> object:
    """Decode YAML as plain data (core/documents.py): a downloaded file gets no anchors,
    aliases, tags or deep nesting, so a small hostile file cannot expand in memory."""
    try:
        return plain_yaml(decode_text(data, source), source)
    except ValidationFailed as exc:
        raise FeedError(
            f"not a plain YAML document ({exc.message}); expected {expected}",
            source=source,
            hint=_REDOWNLOAD,
        ) from exc


def decode_text(data: bytes, source: str) -> str:
    """UTF-8 text (a leading byte-order mark is dropped)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedError(
            f"not UTF-8 text (byte {exc.start})", source=source, hint=_REDOWNLOAD
        ) from exc


# ----------------------------------------------------------------------- field access


def as_object(
    value: object, where: Where, field: str | None, *, expected: str
) -> dict[str, object]:
    """``value`` as a JSON object, or a located error."""
    if not isinstance(value, dict):
        raise where.error(f"expected {expected}, found {type_name(value)}", field=field)
    return value


def get_object(
    obj: Mapping[str, object], key: str, where: Where, *, path: str | None = None
) -> dict[str, object]:
    """An optional object field (absent or null gives ``{}``)."""
    value = obj.get(key)
    if value is None:
        return {}
    return as_object(value, where, path or key, expected="an object")


def get_list(
    obj: Mapping[str, object], key: str, where: Where, *, path: str | None = None
) -> list[object]:
    """An optional list field (absent or null gives ``[]``)."""
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.error(f"expected a list, found {type_name(value)}", field=path or key)
    return value


def get_str(
    obj: Mapping[str, object],
    key: str,
    where: Where,
    *,
    path: str | None = None,
    required: bool = False,
) -> str:
    """A string field; absent or null gives ``""`` unless ``required``."""
    value = obj.get(key)
    if value is None:
        if required:
            raise where.error(
                f"missing required field {key!r}",
                field=path or key,
                hint=f"every record must carry a {key!r} string",
            )
        return ""
    if not isinstance(value, str):
        raise where.error(f"expected a string, found {type_name(value)}", field=path or key)
    if required and not value.strip():
        raise where.error(f"required field {key!r} is empty", field=path or key)
    return value


def str_tuple(values: Iterable[object], where: Where, path: str) -> tuple[str, ...]:
    """Every item must be a string."""
    out: list[str] = []
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise where.error(
                f"expected a string, found {type_name(value)}", field=f"{path}[{index}]"
            )
        out.append(value)
    return tuple(out)


def unique(values: Iterable[H]) -> tuple[H, ...]:
    """``values`` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(values))


def english_description(descriptions: list[object], where: Where) -> str:
    """The English text among ``[{lang, value}]`` (``en``, ``en-US``…), else the first."""
    texts: list[tuple[str, str]] = []
    for index, raw in enumerate(descriptions):
        entry = as_object(raw, where, f"descriptions[{index}]", expected="a description object")
        texts.append(
            (
                get_str(entry, "lang", where, path=f"descriptions[{index}].lang"),
                get_str(entry, "value", where, path=f"descriptions[{index}].value"),
            )
        )
    for lang, value in texts:
        if lang.lower().startswith("en"):
            return value
    return texts[0][1] if texts else ""


# ------------------------------------------------------------------------ timestamps


def rfc3339(value: object, where: Where, field: str) -> datetime:
    """An RFC 3339 timestamp with a time zone, as the OSV schema requires.

    YAML decodes unquoted timestamps to ``datetime`` already; those are accepted when
    they carry a time zone.
    """
    hint = "use RFC 3339 with a time zone, e.g. 2024-05-01T12:00:00Z"
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise where.error("timestamp has no time zone", field=field, hint=hint)
        return value
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise where.error(f"not an RFC 3339 timestamp: {value!r}", field=field, hint=hint)
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise where.error(f"invalid timestamp {value!r}: {exc}", field=field, hint=hint) from exc


def iso_timestamp(value: object, where: Where, field: str) -> datetime:
    """An ISO 8601 date-time as NVD and CVE JSON 5 write them; no zone means UTC."""
    if not isinstance(value, str):
        raise where.error(f"expected a timestamp string, found {type_name(value)}", field=field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise where.error(
            f"invalid timestamp {value!r}",
            field=field,
            hint="expected ISO 8601, e.g. 2024-05-01T12:00:00.000",
        ) from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def iso_date(value: object, where: Where, field: str) -> date:
    """A ``YYYY-MM-DD`` calendar date."""
    if isinstance(value, str) and _ISO_DATE.fullmatch(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise where.error(f"invalid date {value!r}", field=field, hint="expected YYYY-MM-DD")


def require_aware(now: datetime) -> datetime:
    """``now`` must carry a time zone: advisories' timestamps are compared across feeds."""
    if now.tzinfo is None:
        raise ValidationFailed(
            "now must be timezone-aware", hint="pass e.g. datetime.now(UTC) from the caller"
        )
    return now
