"""Semantic Versioning 2.0.0 (npm, Go), ordered by SemVer precedence.

``MAJOR.MINOR.PATCH[-prerelease][+build]``, no leading zeros in numbers, identifiers
of ``[0-9A-Za-z-]``. A leading ``v`` is accepted (Go writes ``v1.2.3``) and surrounding
whitespace ignored, as node-semver does. Precedence: major, minor, patch numerically;
a pre-release sorts below its release; pre-release identifiers compare one by one,
numeric ones as numbers and below alphanumeric ones (compared as ASCII), and a shorter
list sorts lower when it is a prefix of the other. Build metadata is ignored, so
``1.2.3+a`` and ``1.2.3+b`` are equal.

A canonical version is SemVer 2.0 within node-semver's limits: at most 256
characters (``MAX_LENGTH``, shared by every scheme) and major, minor and patch at most
2**53 - 1 (JavaScript's largest safe integer).

Other versions with a numeric core are ordered too, the way SemVer's precedence
extends to them and OSV's own matcher (osv-scanner's ``semantic`` package) reads them:

- numbers of any size compare as numbers (Go and SemVer 2.0 set no limit), leading
  zeros ignored (``01.2.3 == 1.2.3``, ``1.0.0-01 == 1.0.0-1``);
- any count of numeric parts: a missing part is 0 (``1.2 == 1.2.0``, Go's shorthand)
  and parts after the third compare after it (``1.2.3 < 1.2.3.4 < 1.2.4``,
  ``1.2.3.0 == 1.2.3``). osv-scanner would move a fourth part into the pre-release,
  ranking ``1.2.3.4`` below ``1.2.3``; node-semver refuses it. Neither helps a range
  whose fix is ``2.1.0.3``, so the parts are compared as numbers;
- node-semver's loose prefix of ``v``, ``=`` and spaces is skipped (``= 1.2.3``,
  ``v 1.2.3``), and text after the numbers that is not ``-pre-release`` or ``+build``
  is the pre-release (``1.2.3beta == 1.2.3-beta``, as node-semver's loose mode and
  osv-scanner read it); an empty pre-release (``1.2.3-``) is none; pre-release
  identifiers may be empty.

A version without a leading number (``""``, ``banana``, ``latest``, ``V1.2.3``), or one
holding whitespace after its numbers or a control character, cannot be ordered and
raises ``InvalidVersion``. ``0`` reads as ``0.0.0``; OSV's ``introduced: "0"`` ("since
the beginning") is still the caller's to handle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import (
    MAX_LENGTH,
    VersionKey,
    number,
    refuse_control,
    too_long,
)

SCHEME = "semver"

MAX_SAFE_INTEGER = 2**53 - 1

_NUMBER = r"(?:0|[1-9][0-9]*)"
_PRERELEASE_ID = r"(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
_VALID = re.compile(
    rf"v?({_NUMBER})\.({_NUMBER})\.({_NUMBER})"
    rf"(?:-({_PRERELEASE_ID}(?:\.{_PRERELEASE_ID})*))?"
    r"(?:\+([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?"
)
_SAFE_DIGITS = len(str(MAX_SAFE_INTEGER))
_LENIENT = re.compile(r"([0-9]+(?:\.[0-9]+)*)")
_LOOSE_PREFIX = "v= \t\n\r\f\v"  # node-semver's loose [v=\s]*
_HAS_SPACE = re.compile(r"\s")

_NO_PRERELEASE = "\x03"  # a release sorts above all its pre-releases
_PRERELEASE = "\x02"
_END = "\x01"  # end of the pre-release list; also ends an alphanumeric identifier
_NUMERIC_ID = "\x02"
_ALPHANUMERIC_ID = "\x03"


@dataclass(frozen=True, slots=True)
class SemVer:
    """A parsed SemVer 2.0 version; numeric pre-release identifiers are ints."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[int | str, ...]
    build: tuple[str, ...]


def _canonical(version: str) -> re.Match[str] | None:
    found = _VALID.fullmatch(version.strip())
    if found is None:
        return None
    for part in found.group(1, 2, 3):
        if len(part) >= _SAFE_DIGITS and int(part) > MAX_SAFE_INTEGER:
            return None
    return found


def _match(version: str) -> re.Match[str]:
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    found = _canonical(version)
    if found is None:
        raise InvalidVersion(SCHEME, version, "not a canonical SemVer 2.0 version")
    return found


def is_canonical(version: str) -> bool:
    """Whether ``version`` is SemVer 2.0 within node-semver's limits."""
    return len(version) <= MAX_LENGTH and _canonical(version) is not None


def parse(version: str) -> SemVer:
    """Parse a canonical SemVer 2.0 version; raises ``InvalidVersion`` for any other."""
    found = _match(version)
    major, minor, patch, prerelease, build = found.groups()
    return SemVer(
        int(major),
        int(minor),
        int(patch),
        tuple(int(i) if i.isdigit() else i for i in prerelease.split(".")) if prerelease else (),
        tuple(build.split(".")) if build else (),
    )


def key(version: str) -> VersionKey:
    """The sort key of a SemVer version (build metadata ignored); raises ``InvalidVersion``."""
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    found = _VALID.fullmatch(version.strip())
    if found is None:
        return _lenient_key(version)
    major, minor, patch, prerelease = found.group(1, 2, 3, 4)
    return _key(number(major) + number(minor) + number(patch), prerelease)


def _key(head: str, prerelease: str | None) -> VersionKey:
    if not prerelease:
        return VersionKey(head + _NO_PRERELEASE)
    out = [head, _PRERELEASE]
    for ident in prerelease.split("."):
        if ident.isdigit() and ident.isascii():
            out += (_NUMERIC_ID, number(ident))
        else:
            out += (_ALPHANUMERIC_ID, ident, _END)
    out.append(_END)
    return VersionKey("".join(out))


def _lenient_key(version: str) -> VersionKey:
    """Key of a version with a numeric core that is not canonical SemVer (see above)."""
    text = version.lstrip(_LOOSE_PREFIX).rstrip()
    found = _LENIENT.match(text)
    if found is None:
        raise InvalidVersion(SCHEME, version, "does not start with a number")
    refuse_control(SCHEME, version)
    if _HAS_SPACE.search(text):
        raise InvalidVersion(SCHEME, version, "holds whitespace")
    parts = found.group(1).split(".")
    parts += ["0"] * (3 - len(parts))
    while len(parts) > 3 and not parts[-1].strip("0"):
        parts.pop()  # 1.2.3.0 is 1.2.3
    rest = text[found.end() :]
    if rest[:1] in ("-", "."):  # "1.2.3-beta", and "1.2.3.beta" where a dot ends the numbers
        rest = rest[1:]
    return _key("".join(map(number, parts)), rest.partition("+")[0])
