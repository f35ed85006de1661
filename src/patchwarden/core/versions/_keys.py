"""The key representation every scheme shares.

A version key is a ``str`` built so that plain string comparison (``<``, ``==``) gives
the scheme's native order. Strings compare in C, hash fast, are compact and need no
wrapper objects, which is what a matcher that orders hundreds of thousands of versions
wants. Each scheme writes its tokens with a few reserved low code points as markers
(their meaning is local to the scheme) and numbers with ``number`` below.

The keys stay within Latin-1 (code points below 256) so each character takes one byte.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import NewType

from patchwarden.core.errors import InvalidVersion

VersionKey = NewType("VersionKey", str)
"""An opaque sort key; keys of the same scheme compare like their versions."""

MAX_LENGTH = 256
"""Longest version string accepted: node-semver's limit, applied to every scheme.

Only node-semver has such a rule natively, but no real version of any ecosystem comes
near it (they stay well under 100 characters), and the bound keeps a hostile feed or
inventory from filling the key caches with huge strings.
"""


def too_long(scheme: str, version: str) -> InvalidVersion:
    """The error for a version over ``MAX_LENGTH`` (callers test ``len`` inline)."""
    return InvalidVersion(scheme, version, f"longer than {MAX_LENGTH} characters")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def refuse_control(scheme: str, version: str) -> None:
    """Raise ``InvalidVersion`` when ``version`` holds a control character (NUL included).

    No package tool is ever handed such a string (a C string even ends at NUL), so it
    is garbage to report, not a version to order. Schemes call this on their lenient
    path only; canonical versions cannot contain one.
    """
    found = _CONTROL.search(version)
    if found is not None:
        raise InvalidVersion(
            scheme, version, f"holds the control character {found.group()!r} at {found.start()}"
        )


# Lengths below this are written as one character (0x80 + length); longer numbers
# use the marker 0xFF followed by the encoded length, so no length is ever too big.
_SHORT_LIMIT = 0x7F
_LONG_MARK = "\xff"
_LENGTH_CHARS = tuple(chr(0x80 + n) for n in range(_SHORT_LIMIT))


def encode_number(digits: str) -> str:
    """Encode an ASCII digit string so that string order is numeric order.

    Leading zeros do not count (``"007"`` encodes like ``"7"``), the empty string
    encodes like ``"0"``, and there is no size limit: the digit count comes first, so a
    longer number always sorts higher, then the digits themselves decide.
    """
    significant = digits.lstrip("0")
    size = len(significant)
    if size < _SHORT_LIMIT:
        return _LENGTH_CHARS[size] + significant
    return _LONG_MARK + encode_number(str(size)) + significant


class PieceKeys(dict[str, str]):
    """Keys of version pieces (digit runs, separator runs), computed once each.

    Versions are built from a small vocabulary of pieces (``.``, ``-``, ``~deb``, ``el``,
    ``12``...), so schemes split a version with one regex call and look every piece up
    here at C speed (``map(keys.__getitem__, pieces)``). A missing piece is computed by
    ``compute`` and kept while the table holds fewer than ``limit`` entries, which
    bounds memory whatever the input.
    """

    __slots__ = ("_compute", "_limit")

    def __init__(self, compute: Callable[[str], str], limit: int = 1 << 16) -> None:
        super().__init__()
        self._compute = compute
        self._limit = limit

    def __missing__(self, piece: str) -> str:
        value = self._compute(piece)
        if len(self) < self._limit:
            self[piece] = value
        return value


# Versions reuse few numbers: ``number(digits)`` is ``encode_number`` remembered, and
# being a dict lookup it also maps at C speed (``map(number, parts)``).
number = PieceKeys(encode_number).__getitem__
