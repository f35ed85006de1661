"""Version ordering with each ecosystem's exact native semantics.

Each OSV ecosystem maps to one ordering scheme (``patchwarden.core.ecosystems``):

=========  ===========================================================  ==============
scheme     ecosystems                                                   module
=========  ===========================================================  ==============
dpkg       Debian, Ubuntu                                               ``dpkg``
rpm        Red Hat, AlmaLinux, Rocky Linux, openSUSE, SUSE, Fedora, ...  ``rpm``
apk        Alpine                                                       ``apk``
pep440     PyPI                                                         ``pep440``
semver     npm, Go                                                      ``semver``
=========  ===========================================================  ==============

Every version the real feeds and inventories contain is ordered. Each scheme first
reads a version with its canonical grammar (what the ecosystem's packaging tools
produce); a version outside it is still ordered the way the ecosystem's own tool
orders it — dpkg's lax parser (what ``dpkg --compare-versions`` accepts with a
warning), rpm's ``parseEVR`` and ``rpmvercmp`` on any string, apk-tools' token walk,
pip's pre-PEP 440 legacy ordering, SemVer precedence over any count and size of
numbers. ``is_canonical`` tells the two apart; the scheme modules document each rule.

Every scheme turns a version into a ``VersionKey``: a string whose plain ``<`` and
``==`` give the native order, so sorting, ``bisect`` and ``min``/``max`` work on keys at
C speed. Keys of different schemes must not be compared with each other.

Only a version no rule can order raises ``InvalidVersion`` (its ``reason`` says why):
an empty string, one longer than ``MAX_LENGTH`` (256) characters or holding a control
character, and per scheme what even the native tool refuses or cannot rank (dpkg's
parse errors, an apk or SemVer version without a leading number, an rpm string with
nothing to compare, a Python version that is neither PEP 440 nor printable ASCII).
Matching treats such a version as data: it is matched only by explicit ``versions``
lists, and the matcher reports it.

Keys are cached per scheme and version string, invalid outcomes included, so a matcher
pays for each distinct version once. ``key_function`` hands out the cached function for
hot loops; ``sort_key`` and ``compare`` are the one-off forms.

OSV's ``introduced: "0"`` ("since the first version") is the caller's business. ``"0"``
still parses everywhere (as ``0.0.0`` in SemVer).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from patchwarden.core import ecosystems
from patchwarden.core.errors import InvalidVersion, UnsupportedEcosystem
from patchwarden.core.versions import apk, dpkg, pep440, rpm, semver
from patchwarden.core.versions._keys import MAX_LENGTH, VersionKey
from patchwarden.core.versions.rpm import rpmvercmp

__all__ = [
    "CACHE_SIZE",
    "MAX_LENGTH",
    "SCHEMES",
    "VersionKey",
    "cache_clear",
    "cache_info",
    "compare",
    "is_canonical",
    "is_valid",
    "key_function",
    "rpmvercmp",
    "sort_key",
]

CACHE_SIZE = 1 << 18
"""Distinct version strings remembered per scheme (a few tens of MB when full)."""

_COMPUTE: dict[str, Callable[[str], VersionKey]] = {
    dpkg.SCHEME: dpkg.key,
    rpm.SCHEME: rpm.key,
    apk.SCHEME: apk.key,
    pep440.SCHEME: pep440.key,
    semver.SCHEME: semver.key,
}
SCHEMES: tuple[str, ...] = tuple(_COMPUTE)
_CANONICAL: dict[str, Callable[[str], bool]] = {
    dpkg.SCHEME: dpkg.is_canonical,
    rpm.SCHEME: rpm.is_canonical,
    apk.SCHEME: apk.is_canonical,
    pep440.SCHEME: pep440.is_canonical,
    semver.SCHEME: semver.is_canonical,
}


class _Rejected:
    """The cached outcome of a version its scheme cannot parse."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _cached(
    compute: Callable[[str], VersionKey],
) -> functools._lru_cache_wrapper[VersionKey | _Rejected]:
    @functools.lru_cache(maxsize=CACHE_SIZE)
    def outcome(version: str) -> VersionKey | _Rejected:
        if not isinstance(version, str):
            return _Rejected(f"expected a string, got {type(version).__name__}")
        try:
            return compute(version)
        except InvalidVersion as exc:
            # Keep only the reason: a stored exception would grow a traceback per raise.
            return _Rejected(exc.reason)

    return outcome


_OUTCOMES = {scheme: _cached(compute) for scheme, compute in _COMPUTE.items()}


@functools.lru_cache(maxsize=1024)
def key_function(ecosystem: str) -> Callable[[str], VersionKey]:
    """The cached key function of ``ecosystem``'s scheme.

    The function maps a version string to its ``VersionKey`` and raises
    ``InvalidVersion`` (naming ``ecosystem``) for a version no rule can order.
    Ecosystems of one scheme share one cache, so ``key_function("Debian:12")`` and
    ``key_function("Ubuntu")`` reuse each other's work. Raises ``UnsupportedEcosystem``
    for an ecosystem without an ordering.
    """
    scheme = ecosystems.info(ecosystem).scheme
    outcome = _OUTCOMES.get(scheme)
    if outcome is None:
        raise UnsupportedEcosystem(ecosystem, known=ecosystems.known())

    def version_key(version: str) -> VersionKey:
        result = outcome(version)
        if type(result) is _Rejected:
            raise InvalidVersion(ecosystem, version, result.reason)
        return result  # type: ignore[return-value]  # narrowed by the identity check

    version_key.__doc__ = f"Sort key of a {ecosystem} version ({scheme} ordering)."
    return version_key


def sort_key(ecosystem: str, version: str) -> VersionKey:
    """The ``VersionKey`` of ``version`` in ``ecosystem``.

    Keys of one scheme compare with ``<`` and ``==`` exactly as ``compare`` does; equal
    keys mean equal versions (dpkg's ``1.0000-1`` and ``1.0-1`` have one key). Raises
    ``InvalidVersion`` or ``UnsupportedEcosystem``.
    """
    return key_function(ecosystem)(version)


def compare(ecosystem: str, a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` sorts before, equal to or after ``b`` in ``ecosystem``.

    Canonical and non-canonical versions compare alike. Raises ``InvalidVersion`` when
    either version cannot be ordered at all and ``UnsupportedEcosystem`` for an
    ecosystem without an ordering.
    """
    key = key_function(ecosystem)
    ka, kb = key(a), key(b)
    return (ka > kb) - (ka < kb)


def is_valid(ecosystem: str, version: str) -> bool:
    """Whether ``version`` can be ordered in ``ecosystem``, canonical or not.

    ``UnsupportedEcosystem`` still raises.
    """
    try:
        key_function(ecosystem)(version)
    except InvalidVersion:
        return False
    return True


def is_canonical(ecosystem: str, version: str) -> bool:
    """Whether ``version`` follows ``ecosystem``'s canonical grammar.

    A non-canonical version may still be ordered (``is_valid``); this only says whether
    it needed a rule beyond the grammar. ``UnsupportedEcosystem`` raises.
    """
    key_function(ecosystem)  # the one place that refuses an unknown ecosystem
    return isinstance(version, str) and _CANONICAL[ecosystems.info(ecosystem).scheme](version)


def cache_info() -> dict[str, functools._CacheInfo]:
    """Hits, misses and size of each scheme's key cache (for metrics and tuning)."""
    return {scheme: outcome.cache_info() for scheme, outcome in _OUTCOMES.items()}


def cache_clear() -> None:
    """Forget every cached key (benchmarks and tests use this to measure cold work)."""
    for outcome in _OUTCOMES.values():
        outcome.cache_clear()
