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
    """The sort key of a PEP 440 version; raises ``InvalidVersion``."""
    if len(version) > MAX_LENGTH:
        raise too_long(SCHEME, version)
    if _PLAIN.fullmatch(version):  # most versions are a bare release: skip the big pattern
        return VersionKey(_NO_EPOCH + _release_key(version) + _PLAIN_TAIL)
    found = _match(version)
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
