"""Python package versions, ordered as PEP 440 (and the ``packaging`` library) orders them.

``[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`` with every spelling PEP 440 accepts
and normalizes: case-insensitive, an optional leading ``v``, surrounding whitespace,
``alpha``/``beta``/``c``/``pre``/``preview`` for the pre-release letters, ``rev``/``r``
and ``-N`` for post-releases, ``-``, ``_`` or ``.`` as separators, omitted numbers (0)
and leading zeros. Only ASCII digits and letters count.

Order: epoch, then the release with trailing zeros dropped (``1.0 == 1.0.0``), then
a dev release of a final version (``1.0.dev0``) below any pre-release, pre-releases
(``a < b < rc``) below the final release, post-releases above it, a dev release below
the same version without it, and finally the local version: none is lowest, then
segment by segment, where numeric segments compare as numbers and sort above
alphanumeric ones (compared case-insensitively), and more segments sort higher.

A string that is not PEP 440 (``0.9-doduo``, ``1.0-beta-custom``, ``0.3m1``, ``trunk``)
is a *legacy* version, ordered as pip and setuptools ordered every version before
PEP 440 (``packaging``'s ``LegacyVersion``, removed in packaging 22): all legacy
versions sort below all PEP 440 versions (PEP 440 asks for exactly that), and among
themselves by their parts. The lowercased string splits into digit runs, letter runs
and runs of other characters (dots dropped); digit runs are zero-padded to eight
characters and compared as text, other parts compare as text after ``pre``,
``preview`` and ``rc`` become ``c``, ``dev`` becomes ``@`` and ``-`` becomes
``final-``; ``final`` closes the list, trailing zeros of each numeric series are
dropped and a ``-`` before a pre-release tag is forgotten. So
``0.9-doduo < 0.9-eevee < 0.9-final`` among legacy versions, and every one of them is
below ``0.1``. The quirks are pip's: a number of nine digits or more compares as text.
A legacy version must be printable ASCII without spaces; an empty string, or one
with spaces or other characters, cannot be ordered and raises ``InvalidVersion``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions._keys import MAX_LENGTH, VersionKey, number, too_long

SCHEME = "pep440"

_VALID = re.compile(
    r"""
    v?
    (?:(?P<epoch>[0-9]+)!)?
    (?P<release>[0-9]+(?:\.[0-9]+)*)
    (?:[-_.]?(?P<pre_l>alpha|a|beta|b|preview|pre|c|rc)[-_.]?(?P<pre_n>[0-9]+)?)?
    (?:
        -(?P<post_implicit>[0-9]+)
      | [-_.]?(?P<post_l>post|rev|r)[-_.]?(?P<post_n>[0-9]+)?
    )?
    (?:[-_.]?(?P<dev_l>dev)[-_.]?(?P<dev_n>[0-9]+)?)?
    (?:\+(?P<local>[a-z0-9]+(?:[-_.][a-z0-9]+)*))?
    """,
    re.VERBOSE | re.IGNORECASE | re.ASCII,
)
_LOCAL_SEPARATORS = re.compile(r"[-_.]")
_PRE_LETTER = {"a": "a", "alpha": "a", "b": "b", "beta": "b"}  # every other spelling: rc

# Markers; each compares only against markers at the same place in another key.
_LOW = "\x01"
_MID = "\x02"
_HIGH = "\x03"
# Pre-release letters after _MID: a < b < rc.
_PRE_RANK = {"a": "a", "b": "b", "rc": "c"}
_ZERO = number("0")


@dataclass(frozen=True, slots=True)
class Pep440Version:
    """A parsed PEP 440 version; ``str()`` gives the normalized form."""

    epoch: int
    release: tuple[int, ...]
    pre: tuple[str, int] | None
    post: int | None
    dev: int | None
    local: tuple[int | str, ...] | None

    def __str__(self) -> str:
        text = f"{self.epoch}!" if self.epoch else ""
        text += ".".join(str(part) for part in self.release)
        if self.pre is not None:
            text += f"{self.pre[0]}{self.pre[1]}"
        if self.post is not None:
            text += f".post{self.post}"
        if self.dev is not None:
            text += f".dev{self.dev}"
        if self.local is not None:
            text += "+" + ".".join(str(part) for part in self.local)
        return text


def is_canonical(version: str) -> bool:
    """Whether ``version`` is a PEP 440 version (any spelling PEP 440 normalizes)."""
    return len(version) <= MAX_LENGTH and _VALID.fullmatch(version.strip()) is not None


def _match(version: str) -> re.Match[str]:
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    found = _VALID.fullmatch(version.strip())
    if found is None:
        raise InvalidVersion(SCHEME, version, "not a PEP 440 version")
    return found


def parse(version: str) -> Pep440Version:
    """Parse and normalize a PEP 440 version; raises ``InvalidVersion``."""
    found = _match(version)
    pre_l, post_l, local = found["pre_l"], found["post_l"], found["local"]
    post_n = found["post_implicit"] or found["post_n"]
    return Pep440Version(
        epoch=int(found["epoch"] or 0),
        release=tuple(int(part) for part in found["release"].split(".")),
        pre=(_PRE_LETTER.get(pre_l.lower(), "rc"), int(found["pre_n"] or 0)) if pre_l else None,
        post=int(post_n or 0) if (post_l or post_n) else None,
        dev=int(found["dev_n"] or 0) if found["dev_l"] else None,
        local=tuple(
            int(part) if part.isdigit() else part.lower() for part in _LOCAL_SEPARATORS.split(local)
        )
        if local
        else None,
    )


_PLAIN = re.compile(r"[0-9]+(?:\.[0-9]+)*")
# After a bare release: no pre-release, no post, no dev, no local version.
_PLAIN_TAIL = _HIGH + _LOW + _MID + _LOW
_NO_EPOCH = number("")


def _release_key(release: str) -> str:
    parts = list(map(number, release.split(".")))
    while parts and parts[-1] == _ZERO:
        parts.pop()
    parts.append(_LOW)  # end of release: a shorter release is lower
    return "".join(parts)


def key(version: str) -> VersionKey:
    """The sort key of a PEP 440 or legacy version; raises ``InvalidVersion``."""
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    if _PLAIN.fullmatch(version):  # most versions are a bare release: skip the big pattern
        return VersionKey(_NO_EPOCH + _release_key(version) + _PLAIN_TAIL)
    found = _VALID.fullmatch(version.strip())
    if found is None:
        return _legacy_key(version)
    epoch, release, pre_l, pre_n, post_implicit, post_l, post_n, dev_l, dev_n, local = (
        found.groups()
    )
    out = [number(epoch or ""), _release_key(release)]

    has_post = post_implicit is not None or post_l is not None
    if pre_l is not None:
        out += (_MID, _PRE_RANK[_PRE_LETTER.get(pre_l.lower(), "rc")], number(pre_n or ""))
    elif dev_l is not None and not has_post:
        out.append(_LOW)  # 1.0.dev0 sorts below 1.0a0
    else:
        out.append(_HIGH)

    if has_post:
        out += (_MID, number(post_implicit or post_n or ""))
    else:
        out.append(_LOW)

    if dev_l is not None:
        out += (_LOW, number(dev_n or ""))
    else:
        out.append(_MID)

    if local is None:
        out.append(_LOW)
    else:
        out.append(_MID)
        for part in _LOCAL_SEPARATORS.split(local):
            if part.isdigit():
                out += (_HIGH, number(part))
            else:
                out += (_MID, part.lower(), _LOW)
    return VersionKey("".join(out))


# Legacy versions: digit runs, letter runs, single dots and hyphens, and runs of the
# remaining characters, in the order they appear (the pieces setuptools split on).
_LEGACY_PIECES = re.compile(r"[0-9]+|[a-z]+|\.|-|[^0-9a-z.-]+").findall
_LEGACY_SPELLING = {"pre": "c", "preview": "c", "rc": "c", "dev": "@", "-": "final-"}
_LEGACY_PRINTABLE = re.compile(r"[!-~]+")  # printable ASCII, no space
# Below the first character of every PEP 440 key (``number`` of the epoch, >= 0x80);
# it also ends each legacy part, below every character a part can hold.
_LEGACY = "\x01"


def _legacy_key(version: str) -> VersionKey:
    """Key of a pre-PEP 440 version, as described in the module documentation."""
    if _LEGACY_PRINTABLE.fullmatch(version) is None:
        raise InvalidVersion(
            SCHEME,
            version,
            "not a PEP 440 version, and not a legacy one either (those are printable "
            "ASCII without spaces)",
        )
    parts: list[str] = []
    for piece in [*_LEGACY_PIECES(version.lower()), "final"]:
        if piece == ".":
            continue
        if "0" <= piece[0] <= "9":
            parts.append(piece.zfill(8))
            continue
        part = "*" + _LEGACY_SPELLING.get(piece, piece)
        if part < "*final":  # a pre-release tag: drop the hyphens before it
            while parts and parts[-1] == "*final-":
                parts.pop()
        while parts and parts[-1] == "00000000":  # trailing zeros of a numeric series
            parts.pop()
        parts.append(part)
    return VersionKey(_LEGACY + _LEGACY.join(parts) + _LEGACY)
