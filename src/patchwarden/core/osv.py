"""OSV range semantics: the specification's evaluation, and its flattened form.

The OSV specification evaluates a version against a range by walking the range's events
in version order (``introduced`` switches "affected" on, ``fixed`` switches it off at the
fixed version, ``last_affected`` switches it off above that version) and then applying
the range's ``limit`` events (affected only below some limit). ``includes`` is that
algorithm, written straight from the specification.

For matching at scale the walk is done once per range, at import time: ``flatten``
turns a range into the disjoint intervals it describes (``Interval``), which are
stored and indexed.

The specification leaves the order of events at the *same* version open; patchwarden
sorts ``introduced`` before ``fixed`` before ``last_affected``. With that order the
flattened intervals equal the specification's walk for every version, including the
boundary itself (``introduced X, fixed X`` affects nothing; a ``fixed X`` beside a
``last_affected X`` wins). A hypothesis property test holds the two to this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from patchwarden.core import versions
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import Affected, AffectedRange, Event

_KIND_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 2, "limit": 3}


@dataclass(frozen=True, slots=True)
class Interval:
    """A flattened affected interval.

    Affected when ``introduced <= v`` (``"0"``: always), and ``v < fixed`` or
    ``v <= last_affected`` (neither set: no upper bound, no fix known), and
    ``v < limit`` when a limit is set. ``range_type`` picks the ordering: SEMVER ranges
    compare with SemVer whatever the ecosystem, ECOSYSTEM ranges with the ecosystem's.
    """

    introduced: str = "0"
    fixed: str = ""
    last_affected: str = ""
    limit: str = ""
    range_type: str = "ECOSYSTEM"

    def describe(self) -> str:
        """Human form, e.g. ``[introduced 0, fixed 1.2.3)``."""
        lower = f"introduced {self.introduced}"
        if self.fixed:
            text = f"[{lower}, fixed {self.fixed})"
        elif self.last_affected:
            text = f"[{lower}, last_affected {self.last_affected}]"
        else:
            text = f"[{lower}, no fix)"
        if self.limit:
            text += f" below limit {self.limit}"
        return text


def ordering_for(ecosystem: str, range_type: str) -> Callable[[str], Any]:
    """The version key function a range of ``range_type`` uses in ``ecosystem``."""
    if range_type == "SEMVER":
        return versions.key_function("npm")
    return versions.key_function(ecosystem)


def _is_unbounded_limit(version: str) -> bool:
    return "*" in version


def includes(ecosystem: str, version: str, rng: AffectedRange) -> bool:
    """The OSV specification's ``IncludedInRanges`` for one range (reference form).

    Raises ``InvalidVersion`` when the version or an event version cannot be ordered
    at all (non-canonical versions are ordered like any other). GIT ranges never
    include a package version.
    """
    if rng.type == "GIT":
        return False
    key = ordering_for(ecosystem, rng.type)
    v = key(version)
    limits = [e.version for e in rng.events if e.kind == "limit"]
    if limits and not any(_is_unbounded_limit(lim) or v < key(lim) for lim in limits):
        return False
    affected = False
    for evt in _sorted_events(rng.events, key):
        if evt.kind == "introduced" and (evt.version == "0" or v >= key(evt.version)):
            affected = True
        elif (evt.kind == "fixed" and v >= key(evt.version)) or (
            evt.kind == "last_affected" and v > key(evt.version)
        ):
            affected = False
    return affected


def _sorted_events(events: Iterable[Event], key: Callable[[str], Any]) -> list[Event]:
    def order(evt: Event) -> tuple[int, Any, int]:
        if evt.kind == "introduced" and evt.version == "0":
            return (0, (), 0)
        return (1, key(evt.version), _KIND_ORDER[evt.kind])

    return sorted((e for e in events if e.kind != "limit"), key=order)


def flatten(ecosystem: str, rng: AffectedRange) -> tuple[Interval, ...]:
    """The disjoint intervals a range describes, in version order.

    Raises ``InvalidVersion`` when an event version cannot be ordered at all (the
    caller reports the range and keeps going). GIT ranges flatten to nothing.
    """
    if rng.type == "GIT":
        return ()
    key = ordering_for(ecosystem, rng.type)
    limits = [e.version for e in rng.events if e.kind == "limit"]
    limit = ""
    if limits and not any(_is_unbounded_limit(lim) for lim in limits):
        limit = max(limits, key=key)
    result: list[Interval] = []
    start: str | None = None
    for evt in _sorted_events(rng.events, key):
        if evt.kind == "introduced":
            if start is None:
                start = evt.version
        elif start is not None:
            if evt.kind == "fixed":
                result.append(Interval(start, fixed=evt.version, limit=limit, range_type=rng.type))
            else:
                result.append(
                    Interval(start, last_affected=evt.version, limit=limit, range_type=rng.type)
                )
            start = None
    if start is not None:
        result.append(Interval(start, limit=limit, range_type=rng.type))
    return tuple(result)


def interval_includes(ecosystem: str, version: str, interval: Interval) -> bool:
    """Whether ``version`` lies in ``interval`` (``InvalidVersion`` if it cannot be ordered)."""
    key = ordering_for(ecosystem, interval.range_type)
    v = key(version)
    if interval.introduced != "0" and v < key(interval.introduced):
        return False
    if interval.fixed and v >= key(interval.fixed):
        return False
    if interval.last_affected and v > key(interval.last_affected):
        return False
    return not (interval.limit and v >= key(interval.limit))


@dataclass(frozen=True, slots=True)
class FlatAffected:
    """One ``Affected`` entry flattened: its intervals, explicit versions and problems."""

    ecosystem: str
    name: str
    intervals: tuple[Interval, ...]
    versions: tuple[str, ...]
    note: str
    problems: tuple[str, ...]


def flatten_affected(advisory_id: str, affected: Affected) -> FlatAffected:
    """Flatten every range of one affected package; a range with an event version no
    rule can order becomes a problem naming it, the reason and the range."""
    intervals: list[Interval] = []
    problems: list[str] = []
    for index, rng in enumerate(affected.ranges):
        try:
            intervals.extend(flatten(affected.ecosystem, rng))
        except ValidationFailed as exc:
            problems.append(
                f"{advisory_id}: {affected.ecosystem} {affected.name} range {index} skipped: {exc}"
            )
    return FlatAffected(
        ecosystem=affected.ecosystem,
        name=affected.name,
        intervals=tuple(intervals),
        versions=affected.versions,
        note=affected.note,
        problems=tuple(problems),
    )
