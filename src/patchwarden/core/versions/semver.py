"""Semantic Versioning 2.0.0 (npm, Go), ordered by SemVer precedence.

``MAJOR.MINOR.PATCH[-prerelease][+build]``, no leading zeros in numbers, identifiers
of ``[0-9A-Za-z-]``. A leading ``v`` is accepted (Go writes ``v1.2.3``) and surrounding
whitespace ignored, as node-semver does. Precedence: major, minor, patch numerically;
a pre-release sorts below its release; pre-release identifiers compare one by one,
numeric ones as numbers and below alphanumeric ones (compared as ASCII), and a shorter
list sorts lower when it is a prefix of the other. Build metadata is ignored, so
``1.2.3+a`` and ``1.2.3+b`` are equal.

Choices, so every semver ecosystem behaves alike:

- node-semver's limits apply: at most 256 characters (``MAX_LENGTH``, shared by every
  scheme), and major, minor and patch at most 2**53 - 1 (JavaScript's largest safe
  integer); no real version comes near.
  Numeric pre-release identifiers compare as numbers whatever their size, as SemVer
  says (node-semver would compare huge ones as text).
- ``0`` (the OSV "since the beginning" marker), the shorthands ``v1`` and ``v1.2`` that
  Go's ``x/mod/semver`` accepts, and node-semver's loose forms (``=1.2.3``, ``v 1.2.3``,
  ``1.2.3beta``) are not SemVer 2.0 and are rejected; callers handle OSV's ``0`` first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import MAX_LENGTH, VersionKey, number, too_long

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


def _match(version: str) -> re.Match[str]:
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    found = _VALID.fullmatch(version.strip())
    if found is None:
        raise InvalidVersion(SCHEME, version, "not a SemVer 2.0 version")
    for part in found.group(1, 2, 3):
        if len(part) >= _SAFE_DIGITS and int(part) > MAX_SAFE_INTEGER:
            raise InvalidVersion(SCHEME, version, f"{part} is larger than {MAX_SAFE_INTEGER}")
    return found


def parse(version: str) -> SemVer:
    """Parse a SemVer 2.0 version; raises ``InvalidVersion``."""
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
    """The sort key of a SemVer 2.0 version (build metadata ignored); raises ``InvalidVersion``."""
    found = _match(version)
    major, minor, patch, prerelease = found.group(1, 2, 3, 4)
    head = number(major) + number(minor) + number(patch)
    if prerelease is None:
        return VersionKey(head + _NO_PRERELEASE)
    out = [head, _PRERELEASE]
    for ident in prerelease.split("."):
        if ident.isdigit():
            out += (_NUMERIC_ID, number(ident))
        else:
            out += (_ALPHANUMERIC_ID, ident, _END)
    out.append(_END)
    return VersionKey("".join(out))
