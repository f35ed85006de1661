"""Debian package versions, ordered exactly as dpkg orders them.

A version is ``[epoch:]upstream[-revision]``. The epoch is the part before the first
colon, the revision the part after the last hyphen; a missing revision compares like
``0``. Upstream and revision are compared by dpkg's ``verrevcmp``: alternately a run of
non-digits, compared character by character where ``~`` sorts before everything (even
the end of the string), then the end, then ASCII letters, then every other character;
and a run of digits, compared as a number (so ``1.0000-1`` equals ``1.0-1``).

Validation follows dpkg's ``parseversion``. Surrounding whitespace is ignored, as dpkg
does. A canonical version is one ``dpkg-deb`` and the archive accept: the upstream
version starts with a digit and holds only ``[A-Za-z0-9.+~:-]``, the revision only
``[A-Za-z0-9.+~]``. What dpkg only *warns* about — an upstream version that does not
start with a digit, other characters in either part (``kernel-image-2.4.17-ia64``,
``5.#``) — is ordered as ``dpkg --compare-versions`` orders it, through the same
``verrevcmp``; a non-ASCII character counts as its UTF-8 bytes, which dpkg on amd64
(where ``char`` is signed) ranks above letters and below the other ASCII characters.
What dpkg reports as an *error* cannot be ordered and raises ``InvalidVersion``: an
empty version, embedded whitespace, an empty, non-numeric, negative or too big epoch,
nothing after the epoch colon, an empty upstream version or revision; so does a
version holding a control character. dpkg's ``strtol`` would also take a sign in the
epoch (``+1:2``); patchwarden requires plain digits.

The key writes each non-digit run through a table that puts ``~`` first, then a
terminator standing for "end of this run", then letters, then non-ASCII bytes (two
characters each: a marker and the byte), then the other characters in ASCII order;
each digit run becomes an order-preserving number. The end of a part
compares like an empty run, so it is written as the terminator too. Keys of pieces and
of whole parts are remembered, since versions share most of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import (
    MAX_LENGTH,
    PieceKeys,
    VersionKey,
    number,
    refuse_control,
    too_long,
)

SCHEME = "dpkg"

_WHITESPACE = " \t\n\v\f\r"  # C isspace() in the C locale, which dpkg uses
_INT_MAX = 2**31 - 1

# After the epoch: the upstream version starts with a digit, and every character
# is one dpkg allows there; the revision (after the last hyphen) allows the same
# but the colon, checked separately.
_VALID_REST = re.compile(r"[0-9][A-Za-z0-9.+~:-]*")
_HAS_WHITESPACE = re.compile(r"[ \t\n\v\f\r]")
_SPLIT_DIGITS = re.compile(r"([0-9]+)").split

_TERMINATOR = "\x02"  # ends a non-digit run; the end of a part is an empty run
_NON_ASCII = "\x7b"  # just above "z": starts the two characters of a non-ASCII byte
_ZERO = number("0")


def _build_table() -> dict[int, str]:
    table = {ord("~"): "\x01"}
    for code in range(128):
        char = chr(code)
        if not char.isalnum() and char != "~":
            table[code] = chr(0x7C + code)  # above "z" and the escape below, in ASCII order
    # Bytes of non-ASCII text (see _piece_key): dpkg reads them as negative chars, whose
    # order (the byte value) falls between letters and the other ASCII characters.
    for byte in range(0x80, 0x100):
        table[byte] = _NON_ASCII + chr(byte)
    return table


_TABLE = _build_table()


def _piece_key(piece: str) -> str:
    if "0" <= piece[:1] <= "9":  # the split keeps digit runs whole
        return number(piece)
    if not piece.isascii():  # dpkg compares bytes: one character per UTF-8 byte
        piece = piece.encode("utf-8", "surrogatepass").decode("latin-1")
    return piece.translate(_TABLE) + _TERMINATOR


_PIECES = PieceKeys(_piece_key)
_piece = _PIECES.__getitem__


def _part_key(part: str) -> str:
    """verrevcmp order of an upstream version or a revision, as a string."""
    pieces = _SPLIT_DIGITS(part or "0")  # dpkg compares a missing revision equal to "0"
    # The split alternates runs and digits and ends with a run; a part that ends in a
    # non-digit run continues with an implicit 0 before its end.
    tail = _ZERO + _TERMINATOR if pieces[-1] else ""
    return "".join(map(_piece, pieces)) + tail


# Upstream versions and revisions recur across versions ("1", "1+deb12u1"...).
_PARTS = PieceKeys(_part_key)
_part = _PARTS.__getitem__


@dataclass(frozen=True, slots=True)
class DpkgVersion:
    """The three parts of a Debian version (``revision`` is ``""`` when absent)."""

    epoch: int
    upstream: str
    revision: str

    def sort_key(self) -> VersionKey:
        """The key of these parts without validating them."""
        return VersionKey(number(str(self.epoch)) + _part(self.upstream) + _part(self.revision))

    def __str__(self) -> str:
        text = f"{self.epoch}:{self.upstream}" if self.epoch else self.upstream
        return f"{text}-{self.revision}" if self.revision else text


def _epoch_too_big(epoch: str) -> bool:
    significant = epoch.lstrip("0")
    return len(significant) > 10 or int(significant or "0") > _INT_MAX


def _lax_split(version: str, stripped: str) -> tuple[str, str, str]:
    """Split a non-canonical version as dpkg's lax parser does, or raise dpkg's error."""

    def bad(reason: str) -> InvalidVersion:
        return InvalidVersion(SCHEME, version, reason)

    if not stripped:
        raise bad("version string is empty")
    if _HAS_WHITESPACE.search(stripped):
        raise bad("version string has embedded spaces")
    epoch, colon, rest = stripped.partition(":")
    if colon:
        if not epoch:
            raise bad("epoch in version is empty")
        if epoch.startswith("-") and epoch[1:].isdigit():
            raise bad("epoch in version is negative")
        if not (epoch.isascii() and epoch.isdigit()):
            raise bad("epoch in version is not number")
        if _epoch_too_big(epoch):
            raise bad("epoch in version is too big")
        if not rest:
            raise bad("nothing after colon in version number")
    else:
        epoch, rest = "", stripped
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    elif not revision:
        raise bad("revision number is empty")
    if not upstream:
        raise bad("version number is empty")
    refuse_control(SCHEME, version)
    return epoch, upstream, revision


def _split(version: str) -> tuple[str, str, str]:
    """Validate ``version``; return (epoch digits or "", upstream, revision or "")."""
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    stripped = version.strip(_WHITESPACE)
    epoch, colon, rest = stripped.partition(":")
    if not colon:
        epoch, rest = "", stripped
    elif not (epoch.isdigit() and epoch.isascii()) or (len(epoch) > 9 and _epoch_too_big(epoch)):
        return _lax_split(version, stripped)
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    if _VALID_REST.fullmatch(rest) is None or (hyphen and not revision) or (":" in revision):
        return _lax_split(version, stripped)
    return epoch, upstream, revision


def is_canonical(version: str) -> bool:
    """Whether ``version`` is one ``dpkg-deb`` accepts (see the module documentation)."""
    try:
        _epoch, upstream, revision = _split(version)
    except InvalidVersion:
        return False
    # What dpkg only warns about: the characters (and leading digit) of each part.
    rest = f"{upstream}-{revision}" if revision else upstream
    return _VALID_REST.fullmatch(rest) is not None and ":" not in revision


def parse(version: str) -> DpkgVersion:
    """Split a Debian version as dpkg does; raises ``InvalidVersion`` on dpkg's errors."""
    epoch, upstream, revision = _split(version)
    return DpkgVersion(int(epoch or "0"), upstream, revision)


def key(version: str) -> VersionKey:
    """The sort key of a Debian version; raises ``InvalidVersion``."""
    epoch, upstream, revision = _split(version)
    return VersionKey(number(epoch) + _part(upstream) + _part(revision))
