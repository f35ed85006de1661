"""Alpine package versions, ordered exactly as current apk-tools orders them.

The grammar is ``digits{.digits}...{letter}{_suffix{digits}}...{~hash}{-rN}``: one
lowercase letter at most, suffixes from ``alpha beta pre rc`` (pre-releases, below the
plain version) and ``cvs svn git hg p`` (above it), a lowercase hexadecimal commit hash
and a package release ``-rN``. Anything else is invalid (apk-tools' ``apk_version_validate``).

apk compares token by token. Tokens of the same kind compare by value: numbers
numerically (as apk's unsigned 64-bit integers, so absurdly long numbers wrap as they
do in apk), except that a dotted component with a leading zero on either side is
compared as a string (``1.02 < 1.1``, ``8.2.0 < 8.2.001``); letters and hashes as bytes;
suffixes in the order listed above. Where the kinds differ, a pre-release suffix is
lowest; otherwise the version whose token comes later in the grammar is lower — which
makes ``1.0 < 1.0.1``, ``1.0a < 1.0.1``, ``1.0 < 1.0_p1 < 1.0a`` and ``1.0 < 1.0-r1``.

This follows apk-tools 3 (and 2.14 apart from ``~hash``, which 2.14 lacks, and a bare
``_`` with no suffix name, which 2.14 took as "no suffix" and apk-tools 3 rejects).
"""

from __future__ import annotations

import re

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import MAX_LENGTH, VersionKey, number, too_long

SCHEME = "apk"

_VALID = re.compile(
    r"([0-9]+)((?:\.[0-9]+)*)([a-z]?)"
    r"((?:_(?:alpha|beta|pre|rc|cvs|svn|git|hg|p)[0-9]*)*)"
    r"(?:~([0-9a-f]+))?(?:-r([0-9]+))?"
)
_SUFFIXES = re.compile(r"_([a-z]+)([0-9]*)")

# Token classes, lowest first: the order in which apk ranks tokens of different kinds.
_PRE_SUFFIX = "\x01"
_END = "\x02"
_RELEASE = "\x03"
_HASH = "\x04"
_SUFFIX_NUMBER = "\x05"
_POST_SUFFIX = "\x06"
_LETTER = "\x07"
_DIGITS = "\x08"
_INITIAL_DIGITS = "\x09"

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


def _uint64(digits: str) -> str:
    """``number`` of the value apk reads: the digits modulo 2**64."""
    if len(digits) < 20:  # 19 digits always fit
        return number(digits)
    value = 0
    for start in range(0, len(digits), 18):
        chunk = digits[start : start + 18]
        value = (value * 10 ** len(chunk) + int(chunk)) % _UINT64
    return number(str(value))


def key(version: str) -> VersionKey:
    """The sort key of an Alpine package version; raises ``InvalidVersion``."""
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    found = _VALID.fullmatch(version)
    if found is None:
        raise InvalidVersion(
            SCHEME,
            version,
            "expected digits{.digits}...{letter}{_suffix{N}}...{~hash}{-rN}",
        )
    initial, dotted, letter, suffixes, commit, release = found.groups()
    out = [_INITIAL_DIGITS, _uint64(initial)]
    if dotted:
        for part in dotted[1:].split("."):
            if part[0] == "0":
                out += (_DIGITS, _AS_TEXT, part, _TEXT_END)
            else:
                out += (_DIGITS, _AS_NUMBER, _uint64(part))
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
