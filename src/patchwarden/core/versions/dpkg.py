"""Debian package versions, ordered exactly as dpkg orders them.

A version is ``[epoch:]upstream[-revision]``. The epoch is the part before the first
colon, the revision the part after the last hyphen; a missing revision compares like
``0``. Upstream and revision are compared by dpkg's ``verrevcmp``: alternately a run of
non-digits, compared character by character where ``~`` sorts before everything (even
the end of the string), then the end, then ASCII letters, then every other character;
and a run of digits, compared as a number (so ``1.0000-1`` equals ``1.0-1``).

Validation follows dpkg's ``parseversion``. Surrounding whitespace is ignored, as dpkg
does. What dpkg reports as an *error* is rejected (empty version, embedded whitespace,
empty, non-numeric, negative or too big epoch, nothing after the epoch colon, empty
upstream or revision). What dpkg only *warns* about — an upstream version that does not
start with a digit, or a character outside ``[A-Za-z0-9.+~:-]`` in the upstream part or
``[A-Za-z0-9.+~]`` in the revision — is rejected too: dpkg's lax parser accepts such
versions only in an existing status database, ``dpkg-deb`` and the archive refuse them,
and Dpkg::Version calls them invalid. A version patchwarden cannot order is reported as
data instead of being compared by guess. dpkg's ``strtol`` would also take a sign in
the epoch (``+1:2``); patchwarden requires plain digits.

The key writes each non-digit run through a table that puts ``~`` first, then a
terminator standing for "end of this run", then letters, then the other characters in
ASCII order; each digit run becomes an order-preserving number. The end of a part
compares like an empty run, so it is written as the terminator too. Keys of pieces and
of whole parts are remembered, since versions share most of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import MAX_LENGTH, PieceKeys, VersionKey, number, too_long

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
_ZERO = number("0")


def _build_table() -> dict[int, str]:
    table = {ord("~"): "\x01"}
    for code in range(128):
        char = chr(code)
        if not (char.isalnum() or char == "~"):
            table[code] = chr(0x7B + code)  # above "z", still in ASCII order
    return table


_TABLE = _build_table()


def _piece_key(piece: str) -> str:
    if "0" <= piece[:1] <= "9":  # the split keeps digit runs whole
        return number(piece)
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
        """The key of these parts without validating them (ASCII parts only)."""
        return VersionKey(number(str(self.epoch)) + _part(self.upstream) + _part(self.revision))

    def __str__(self) -> str:
        text = f"{self.epoch}:{self.upstream}" if self.epoch else self.upstream
        return f"{text}-{self.revision}" if self.revision else text


def _epoch_too_big(epoch: str) -> bool:
    significant = epoch.lstrip("0")
    return len(significant) > 10 or int(significant or "0") > _INT_MAX


def _reject(version: str, stripped: str) -> InvalidVersion:
    """Why ``stripped`` is not a valid version, in dpkg's words."""

    def bad(reason: str) -> InvalidVersion:
        return InvalidVersion(SCHEME, version, reason)

    if not stripped:
        return bad("version string is empty")
    if _HAS_WHITESPACE.search(stripped):
        return bad("version string has embedded spaces")
    epoch, colon, rest = stripped.partition(":")
    if colon:
        if not epoch:
            return bad("epoch in version is empty")
        if epoch.startswith("-") and epoch[1:].isdigit():
            return bad("epoch in version is negative")
        if not (epoch.isascii() and epoch.isdigit()):
            return bad("epoch in version is not number")
        if _epoch_too_big(epoch):
            return bad("epoch in version is too big")
        if not rest:
            return bad("nothing after colon in version number")
    else:
        rest = stripped
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    elif not revision:
        return bad("revision number is empty")
    if not upstream:
        return bad("version number is empty")
    if not ("0" <= upstream[0] <= "9"):
        return bad("version number does not start with digit")
    if not _VALID_REST.fullmatch(upstream):
        return bad("invalid character in version number")
    return bad("invalid character in revision number")


def _split(version: str) -> tuple[str, str, str]:
    """Validate ``version``; return (epoch digits or "", upstream, revision or "")."""
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    stripped = version.strip(_WHITESPACE)
    epoch, colon, rest = stripped.partition(":")
    if not colon:
        epoch, rest = "", stripped
    elif not (epoch.isdigit() and epoch.isascii()) or (len(epoch) > 9 and _epoch_too_big(epoch)):
        raise _reject(version, stripped)
    upstream, hyphen, revision = rest.rpartition("-")
    if not hyphen:
        upstream, revision = rest, ""
    if _VALID_REST.fullmatch(rest) is None or (hyphen and not revision) or (":" in revision):
        raise _reject(version, stripped)
    return epoch, upstream, revision


def parse(version: str) -> DpkgVersion:
    """Split and validate a Debian version; raises ``InvalidVersion``."""
    epoch, upstream, revision = _split(version)
    return DpkgVersion(int(epoch or "0"), upstream, revision)


def key(version: str) -> VersionKey:
    """The sort key of a Debian version; raises ``InvalidVersion``."""
    epoch, upstream, revision = _split(version)
    return VersionKey(number(epoch) + _part(upstream) + _part(revision))
