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
last hyphen, as in rpm's ``parseEVR``. A canonical version is what rpmbuild accepts:
the version and the release non-empty and made of ASCII letters and digits and
``._+%{}~^``, and an epoch colon after at least one digit. Real package versions
always are.

Other strings are ordered exactly as rpm orders them, since rpm takes any non-empty
string: an empty release (``1-``) sorts above no release and below every other one
(``1 < 1- < 1-0``); a colon that does not follow digits is no epoch separator, so
``a:1`` is the version ``a:1`` with epoch 0 (below ``1``: a number beats letters);
an empty version (``1:``, ``-1``) compares like rpm's empty string; further hyphens
stay in the version (``1.0-1-2`` is version ``1.0-1``, release ``2``) and characters
rpmbuild refuses are separators. A non-canonical string with nothing rpmvercmp could
compare (no ASCII letter or digit, no ``~`` or ``^``: ``""``, ``-``, ``:``) cannot be
ordered — rpm itself refuses the empty string — nor can one holding a control
character; both raise ``InvalidVersion``.
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

SCHEME = "rpm"

_SPLIT_DIGITS = re.compile(r"([0-9]+)").split
_NON_DIGIT_TOKENS = re.compile(r"[A-Za-z]+|[~^]").findall
# Epoch, version, release; one hyphen at most, since neither part may hold one.
_CANONICAL = re.compile(r"(?:([0-9]+):)?([A-Za-z0-9._+%{}~^]+)(?:-([A-Za-z0-9._+%{}~^]+))?")
_ASCII_DIGITS = "0123456789"
_COMPARABLE = re.compile(r"[A-Za-z0-9~^]")

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


def _split(evr: str) -> tuple[str, str, str | None]:
    """(epoch digits or "", version, release or None), as rpm's ``parseEVR`` splits."""
    if len(evr) > MAX_LENGTH:
        raise too_long(SCHEME, evr)
    found = _CANONICAL.fullmatch(evr)
    if found is not None:
        epoch, version, release = found.groups()
        return epoch or "", version, release
    refuse_control(SCHEME, evr)
    if _COMPARABLE.search(evr) is None:
        raise InvalidVersion(
            SCHEME, evr, "empty version" if not evr else "no letter, digit, '~' or '^' to compare"
        )
    digits = evr[: len(evr) - len(evr.lstrip(_ASCII_DIGITS))]
    if evr.startswith(":", len(digits)):  # ":1" has the epoch "", which compares as 0
        epoch, rest = digits, evr[len(digits) + 1 :]
    else:
        epoch, rest = "", evr
    version, hyphen, release = rest.rpartition("-")
    if not hyphen:
        return epoch, rest, None
    return epoch, version, release


def parse(evr: str) -> Evr:
    """Split an RPM ``[epoch:]version[-release]`` as rpm does; raises ``InvalidVersion``
    only for a string rpm cannot order (see the module documentation)."""
    epoch, version, release = _split(evr)
    return Evr(int(epoch or "0"), version, release)


def is_canonical(evr: str) -> bool:
    """Whether ``evr`` is a version rpmbuild accepts (see the module documentation)."""
    return len(evr) <= MAX_LENGTH and _CANONICAL.fullmatch(evr) is not None


def key(evr: str) -> VersionKey:
    """The sort key of an RPM ``[epoch:]version[-release]``; raises ``InvalidVersion``."""
    epoch, version, release = _split(evr)
    if release is None:
        return VersionKey(number(epoch) + _part(version) + _RELEASE_ABSENT)
    return VersionKey(number(epoch) + _part(version) + _RELEASE_PRESENT + _part(release))
