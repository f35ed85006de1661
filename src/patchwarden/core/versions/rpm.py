"""RPM versions (``[epoch:]version[-release]``), ordered exactly as rpm 4.18 orders them.

``rpmvercmp`` compares one version or release string. It skips every character that
is not an ASCII letter, an ASCII digit, ``~`` or ``^`` (so ``1.0`` equals ``1_0``, and
non-ASCII letters are separators), and walks the rest as a sequence of tokens: a run of
digits (a number; leading zeros ignored), a run of letters (compared as bytes), ``~`` or
``^``. At the first difference, in increasing order: ``~`` (sorts before anything, even
the end), the end of the string, ``^`` (after the base version but before anything
added with a separator: ``1.0 < 1.0^git1 < 1.0.1``), a letter run, a digit run (a
number always beats letters). The key writes exactly that order.

A full EVR compares like rpm's ``rpmverCmp`` (what ``rpm.vercmp`` in rpm's Lua and
``rpm.labelCompare`` use): the epoch numerically (missing means 0), then the version,
then the release, where a missing release sorts below any present one.

The epoch is the run of digits before the first colon, the release what follows the
last hyphen, as in rpm's ``parseEVR``. Validation is stricter than rpm's parser, which
takes anything: the version and the release must be non-empty and use only the
characters rpmbuild allows in them (ASCII letters and digits and ``._+%{}~^``), and an
epoch colon must follow at least one digit. Real package versions always pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import MAX_LENGTH, PieceKeys, VersionKey, number, too_long

SCHEME = "rpm"

_SPLIT_DIGITS = re.compile(r"([0-9]+)").split
_NON_DIGIT_TOKENS = re.compile(r"[A-Za-z]+|[~^]").findall
# Epoch digits were checked apart; one hyphen at most, since neither part may hold one.
_VALID_REST = re.compile(r"[A-Za-z0-9._+%{}~^]+(?:-[A-Za-z0-9._+%{}~^]+)?")

_TILDE = "\x01"
_END = "\x02"  # end of a string, and end of a letter run: below every letter
_CARET = "\x03"
_RELEASE_ABSENT = "\x01"
_RELEASE_PRESENT = "\x02"
_TOKEN_KEYS = {"~": _TILDE, "^": _CARET}


def _piece_key(piece: str) -> str:
    """Key of a digit run, or of the tokens in a run of other characters.

    Letter runs end with a terminator below every letter; numbers start with a length
    character above every letter, so a number beats letters. Separators vanish.
    """
    if "0" <= piece[:1] <= "9":  # the split keeps digit runs whole
        return number(piece)
    return "".join([_TOKEN_KEYS.get(token) or token + _END for token in _NON_DIGIT_TOKENS(piece)])


_PIECES = PieceKeys(_piece_key)
_piece = _PIECES.__getitem__


def _encode(text: str) -> str:
    return "".join(map(_piece, _SPLIT_DIGITS(text))) + _END


# Versions and releases recur across packages ("1.0.0", "1.el9"...).
_PARTS = PieceKeys(_encode)
_part = _PARTS.__getitem__


def rpmvercmp(a: str, b: str) -> int:
    """rpm's segment comparison of two version (or release) strings: -1, 0 or 1.

    Any string is accepted, as rpm does; no epoch or release is split off. Like a C
    string, a string ends at its first NUL character.
    """
    ka = _encode(a.partition("\x00")[0])
    kb = _encode(b.partition("\x00")[0])
    return (ka > kb) - (ka < kb)


@dataclass(frozen=True, slots=True)
class Evr:
    """Epoch, version and release of an RPM version (``release`` None when absent)."""

    epoch: int
    version: str
    release: str | None


def _reject(evr: str) -> InvalidVersion:
    def bad(reason: str) -> InvalidVersion:
        return InvalidVersion(SCHEME, evr, reason)

    if not evr:
        return bad("empty version")
    epoch, colon, rest = evr.partition(":")
    if colon:
        if not epoch:
            return bad("empty epoch before ':'")
        if not (epoch.isascii() and epoch.isdigit()):
            return bad("the epoch before ':' must be a number")
    else:
        rest = evr
    version, hyphen, release = rest.rpartition("-")
    if not hyphen:
        version = rest
    elif not release:
        return bad("empty release after '-'")
    if not version:
        return bad("empty version")
    return bad("only ASCII letters, digits and ._+%{}~^ are allowed in version and release")


def _split(evr: str) -> tuple[str, str, str | None]:
    """Validate ``evr``; return (epoch digits or "", version, release or None)."""
    if len(evr) > MAX_LENGTH:
        raise too_long(SCHEME, evr)
    epoch, colon, rest = evr.partition(":")
    if not colon:
        epoch, rest = "", evr
    elif not (epoch.isdigit() and epoch.isascii()):
        raise _reject(evr)
    if _VALID_REST.fullmatch(rest) is None:
        raise _reject(evr)
    version, hyphen, release = rest.partition("-")
    return epoch, version, release if hyphen else None


def parse(evr: str) -> Evr:
    """Split and validate an RPM ``[epoch:]version[-release]``; raises ``InvalidVersion``."""
    epoch, version, release = _split(evr)
    return Evr(int(epoch or "0"), version, release)


def key(evr: str) -> VersionKey:
    """The sort key of an RPM ``[epoch:]version[-release]``; raises ``InvalidVersion``."""
    epoch, version, release = _split(evr)
    if release is None:
        return VersionKey(number(epoch) + _part(version) + _RELEASE_ABSENT)
    return VersionKey(number(epoch) + _part(version) + _RELEASE_PRESENT + _part(release))
