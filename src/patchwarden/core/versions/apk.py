"""Alpine package versions, ordered as apk-tools orders them.

The canonical grammar is ``digits{.digits}...{letter}{_suffix{digits}}...{~hash}{-rN}``:
one lowercase letter at most, suffixes from ``alpha beta pre rc`` (pre-releases, below
the plain version) and ``cvs svn git hg p`` (above it), a lowercase hexadecimal commit
hash and a package release ``-rN`` (apk-tools' ``apk_version_validate``).

apk compares token by token. Tokens of the same kind compare by value: numbers
numerically (as apk's unsigned 64-bit integers, so absurdly long numbers wrap as they
do in apk), except that a dotted component with a leading zero on either side is
compared as a string (``1.02 < 1.1``, ``8.2.0 < 8.2.001``); letters and hashes as bytes;
suffixes in the order listed above. Where the kinds differ, a pre-release suffix is
lowest; otherwise the version whose token comes later in the grammar is lower — which
makes ``1.0 < 1.0.1``, ``1.0a < 1.0.1``, ``1.0 < 1.0_p1 < 1.0a`` and ``1.0 < 1.0-r1``.

This follows apk-tools 3 (and 2.14 apart from ``~hash``, which 2.14 lacks, and a bare
``_`` with no suffix name, which 2.14 took as "no suffix" and apk-tools 3 rejects).

Non-canonical versions are ordered too, since real secdb files and databases hold them
(``6.6.2p1-r0``, ``0.12.5.-r0``, ``2.7.16-33``):

- a run of digits straight after the letter (``1.8.28p1-r1``) is read as apk-tools up
  to 2.12 read it, as one more number of the version: ``1.8.28p < 1.8.28p1 < 1.8.28p2``
  and ``1.8.28-r1 < 1.8.28p1-r1``. apk-tools 3 stops at that digit instead, which would
  make ``1.8.28p1-r0`` equal to ``1.8.28p2-r5``;
- anywhere else, a character the grammar does not allow ends the walk the way
  apk-tools 3 ends it: the tokens before it compare as usual, and at that point the
  version sorts below every continuation except a pre-release suffix (``0.12.5.-r0`` is
  below ``0.12.5-r0`` and above ``0.12.4``). Two versions that break at the same point
  after equal tokens are equal, as they are to apk.

A version that does not start with a digit (``""``, ``r1``, `` 1.0``) cannot be ordered
at all — apk ranks every such string equal to every other — and raises
``InvalidVersion``, as does one holding a control character.
"""

from __future__ import annotations

import re

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import (
    MAX_LENGTH,
    VersionKey,
    number,
    refuse_control,
    too_long,
)

SCHEME = "apk"

_VALID = re.compile(
    r"([0-9]+)((?:\.[0-9]+)*)([a-z]?)"
    r"((?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*)"
    r"(?:~([0-9a-f]+))?(?:-r([0-9]+))?"
)
_SUFFIXES = re.compile(r"_([a-z]+)([0-9]*)")
_DIGITS_AT = re.compile(r"[0-9]+").match
_NAME_AT = re.compile(r"[a-z]+").match
_HEX_AT = re.compile(r"[0-9a-f]+").match

# Token classes, lowest first: the order in which apk ranks tokens of different kinds
# where two versions first differ in kind. A broken walk ranks just above a pre-release.
_PRE_SUFFIX = "\x01"
_BROKEN = "\x02"
_END = "\x03"
_RELEASE = "\x04"
_HASH = "\x05"
_SUFFIX_NUMBER = "\x06"
_POST_SUFFIX = "\x07"
_LETTER = "\x08"
_DIGITS = "\x09"
_INITIAL_DIGITS = "\x0a"

# apk's suffix order; "" stands where a version without suffix sits.
_SUFFIX_ORDER = ("alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p")
_SUFFIX_RANK = {
    name: (_PRE_SUFFIX if rank < _SUFFIX_ORDER.index("") else _POST_SUFFIX) + chr(0x30 + rank)
    for rank, name in enumerate(_SUFFIX_ORDER)
    if name
}

# Within a dotted component: leading-zero values (compared as text) sort below the
# others, since "0" is the lowest digit.
_AS_TEXT = "\x01"
_AS_NUMBER = "\x02"
_TEXT_END = "\x01"  # ends a value compared as text: below every digit and letter

_UINT64 = 2**64

# Where the lenient walk is, in apk-tools' token order: what may follow depends on it.
_AT_INITIAL, _AT_DIGIT, _AT_LETTER, _AT_SUFFIX, _AT_SUFFIX_NUMBER, _AT_HASH, _AT_RELEASE = range(7)


def _uint64(digits: str) -> str:
    """``number`` of the value apk reads: the digits modulo 2**64."""
    if len(digits) < 20:  # 19 digits always fit
        return number(digits)
    value = 0
    for start in range(0, len(digits), 18):
        chunk = digits[start : start + 18]
        value = (value * 10 ** len(chunk) + int(chunk)) % _UINT64
    return number(str(value))


def _dotted(part: str) -> tuple[str, ...]:
    """Key of one dotted component (``part`` has no dot)."""
    if part[0] == "0":
        return (_DIGITS, _AS_TEXT, part, _TEXT_END)
    return (_DIGITS, _AS_NUMBER, _uint64(part))


def key(version: str) -> VersionKey:
    """The sort key of an Alpine package version; raises ``InvalidVersion``."""
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    found = _VALID.fullmatch(version)
    if found is None:
        return _lenient_key(version)
    initial, dotted, letter, suffixes, commit, release = found.groups()
    out = [_INITIAL_DIGITS, _uint64(initial)]
    if dotted:
        for part in dotted[1:].split("."):
            out += _dotted(part)
    if letter:
        out += (_LETTER, letter)
    if suffixes:
        for name, digits in _SUFFIXES.findall(suffixes):
            out.append(_SUFFIX_RANK[name])
            if digits:
                out += (_SUFFIX_NUMBER, _uint64(digits))
    if commit is not None:
        out += (_HASH, commit, _TEXT_END)
    if release is not None:
        out += (_RELEASE, _uint64(release))
    out.append(_END)
    return VersionKey("".join(out))


def is_canonical(version: str) -> bool:
    """Whether ``version`` is a valid apk-tools 3 version (``apk_version_validate``)."""
    return len(version) <= MAX_LENGTH and _VALID.fullmatch(version) is not None


def _lenient_key(version: str) -> VersionKey:
    """Key of a non-canonical version: apk-tools' token walk, extended as documented."""
    initial = _DIGITS_AT(version)
    if initial is None:
        raise InvalidVersion(SCHEME, version, "does not start with a digit")
    refuse_control(SCHEME, version)
    out = [_INITIAL_DIGITS, _uint64(initial.group())]
    state, at, size = _AT_INITIAL, initial.end(), len(version)
    # Each branch takes one token where apk-tools 3 allows it; anything else breaks the
    # walk (``apk_version_compare`` stops at an invalid token).
    while at < size:
        char = version[at]
        if "a" <= char <= "z" and state <= _AT_DIGIT:
            out += (_LETTER, char)
            state, at = _AT_LETTER, at + 1
            if (digits := _DIGITS_AT(version, at)) is not None:  # apk-tools 2's reading
                out.append(_uint64(digits.group()))
                at = digits.end()
        elif char == "." and state <= _AT_DIGIT and (digits := _DIGITS_AT(version, at + 1)):
            out += _dotted(digits.group())
            state, at = _AT_DIGIT, digits.end()
        elif state == _AT_SUFFIX and (digits := _DIGITS_AT(version, at)):
            out += (_SUFFIX_NUMBER, _uint64(digits.group()))
            state, at = _AT_SUFFIX_NUMBER, digits.end()
        elif (
            char == "_"
            and state <= _AT_SUFFIX_NUMBER
            and (name := _NAME_AT(version, at + 1))
            and (rank := _SUFFIX_RANK.get(name.group()))
        ):
            out.append(rank)
            state, at = _AT_SUFFIX, name.end()
        elif char == "~" and state < _AT_HASH and (commit := _HEX_AT(version, at + 1)):
            out += (_HASH, commit.group(), _TEXT_END)
            state, at = _AT_HASH, commit.end()
        elif (
            version.startswith("-r", at)
            and state < _AT_RELEASE
            and (digits := _DIGITS_AT(version, at + 2))
        ):
            out += (_RELEASE, _uint64(digits.group()))
            state, at = _AT_RELEASE, digits.end()
        else:
            break
    out.append(_END if at == size else _BROKEN)
    return VersionKey("".join(out))
