"""Request types shared by every route: the boundary where hostile input stops.

Ids, counts, text and free-form JSON documents are checked here, before a handler or
the database sees them, so bad input is a 422 naming the field — never a database
error. The rules follow the storage:

* row ids and counters are ``INTEGER`` columns (32-bit on PostgreSQL): ``Id`` and
  ``Count`` stay within that range (a path id of 2**31 was a 500);
* PostgreSQL text cannot hold NUL characters, and text must encode as UTF-8 (``json``
  decodes ``"\\ud800"`` to a lone surrogate that no driver can send): ``Text``
  refuses both;
* JSON documents stored as they come (filters, rules, policies, job results) hold only
  such text, 64-bit integers and finite numbers (``JsonObject``): ``json.loads``
  accepts ``NaN`` and ``Infinity``, which PostgreSQL's ``json`` refuses, and orjson
  cannot encode integers beyond 64 bits.

Each type carries its bounds into the OpenAPI document too, so clients (and the fuzz
test) see the same rules the server applies.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from annotated_types import Interval
from pydantic import AfterValidator, BaseModel, Field, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

#: Largest value of an ``INTEGER`` column (PostgreSQL's is 32-bit signed).
MAX_ID = 2**31 - 1
#: Range of integers inside stored JSON documents (what orjson and audit hashing encode).
JSON_INT_RANGE = (-(2**63), 2**63 - 1)
#: Nesting allowed in a stored JSON document.
MAX_JSON_DEPTH = 32


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None."""
    if "\x00" in value:
        return "must not contain NUL characters (\\u0000)"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must be valid Unicode (no lone surrogates such as \\ud800)"
    return None


class _StorableText:
    """Marker documenting ``Text`` in the JSON schema (a ``pattern`` without NUL)."""

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        result = handler(schema)
        result["pattern"] = "^[^\\u0000]*$"
        return result


def _storable_text(value: str) -> str:
    problem = text_problem(value)
    if problem:
        raise PydanticCustomError("storable_text", "{problem}", {"problem": problem})
    return value


#: Storable text (no NUL, valid Unicode); give its length with ``Field(max_length=…)``.
Text = Annotated[str, AfterValidator(_storable_text), _StorableText()]


def parse_id(text: str) -> int | None:
    """The row id written in ``text`` (ASCII digits, 1 to 2**31-1), or None.

    ``str.isdigit`` alone is not enough: it accepts ``²``, which ``int`` refuses, and
    any number of digits, which the database refuses."""
    if not text.isascii() or not text.isdigit() or len(text) > len(str(MAX_ID)):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


#: A row id (path, query or body): 1 to 2**31-1.
Id = Annotated[int, Interval(ge=1, le=MAX_ID)]

#: A non-negative count or amount stored in an ``INTEGER`` column.
Count = Annotated[int, Interval(ge=0, le=MAX_ID)]

#: A page size and offset of listings.
Limit = Annotated[int, Interval(ge=1, le=1000)]
Offset = Annotated[int, Interval(ge=0, le=MAX_ID)]

#: A float that is a number (no NaN, no infinities).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


def _json_problem(value: Any, where: str, depth: int) -> str | None:
    """Why ``value`` cannot be stored as JSON, or None."""
    if depth > MAX_JSON_DEPTH:
        return f"{where}: nested deeper than {MAX_JSON_DEPTH} levels"
    if isinstance(value, str):
        problem = text_problem(value)
        return f"{where}: text {problem}" if problem else None
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        low, high = JSON_INT_RANGE
        return None if low <= value <= high else f"{where}: integer outside the 64-bit range"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where}: numbers must be finite (not NaN)"
    if isinstance(value, dict):
        for key, item in value.items():
            problem = text_problem(key)
            if problem:
                return f"{where}: keys {problem}"
            problem = _json_problem(item, f"{where}.{key}", depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, list):
        for index, item in enumerate(value):
            problem = _json_problem(item, f"{where}[{index}]", depth + 1)
            if problem:
                return problem
        return None
    return f"{where}: unsupported value of type {type(value).__name__}"


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    problem = _json_problem(value, "$", 0)
    if problem:
        raise PydanticCustomError("json_document", "{problem}", {"problem": problem})
    return value


#: A JSON object stored as it comes: NUL-free strings, 64-bit integers, finite numbers.
JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]


def json_problem(value: Any) -> str | None:
    """Why ``value`` (a parsed JSON document) cannot be stored, or None.

    For payloads parsed outside pydantic (agent uploads)."""
    return _json_problem(value, "$", 0)


class ErrorBody(BaseModel):
    """Every refusal: what went wrong, how to fix it, and the error's class."""

    error: str = Field(description="What went wrong.")
    hint: str | None = Field(description="How to fix it, when the message alone does not.")
    type: str = Field(description="The error class, e.g. ValidationFailed, NotFound.")
