"""Matching installed packages against advisories, at fleet scale.

``AdvisoryIndex`` holds flattened affected intervals keyed by (exact OSV ecosystem,
normalized package name). A lookup for one (ecosystem, name, version) triple costs two
dictionary probes for the common case of a package with no advisories, and a binary
search plus a cached result otherwise:

* all interval bounds of one (ecosystem, name) are sorted once into breakpoints
  ``b0 < b1 < … < bn-1``, which cut the version line into ``2n + 1`` regions (the open
  gaps and the breakpoints themselves);
* each interval covers a contiguous run of regions, computed once;
* a version maps to its region with ``bisect``; the set of intervals covering a region
  is computed the first time that region is hit and cached.

The cost per triple is therefore independent of how many advisories a package has
(the Linux kernel has thousands). Versions that cannot be parsed are reported and
matched only against explicit ``versions`` lists, as DESIGN.md asks.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from patchwarden.core import ecosystems
from patchwarden.core.errors import UnsupportedEcosystem, ValidationFailed
from patchwarden.core.model import InstalledPackage, Match
from patchwarden.core.osv import Interval, ordering_for

_NO_MATCHES: tuple[Match, ...] = ()


@dataclass(frozen=True, slots=True)
class _Entry:
    advisory_id: str
    ecosystem: str
    interval: Interval
    note: str


@dataclass(slots=True)
class _Bucket:
    """Every interval of one (ecosystem, name, ordering), lazily turned into regions."""

    key: Callable[[str], Any]
    problems: list[str]
    entries: list[_Entry] = field(default_factory=list)
    breakpoints: list[Any] | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)
    regions: dict[int, tuple[int, ...]] = field(default_factory=dict)

    def _build(self) -> list[Any]:
        key = self.key
        bounds: set[Any] = set()
        keyed: list[tuple[Any, Any, Any, Any] | None] = []
        for entry in self.entries:
            iv = entry.interval
            try:
                lo = None if iv.introduced == "0" else key(iv.introduced)
                fx = key(iv.fixed) if iv.fixed else None
                la = key(iv.last_affected) if iv.last_affected else None
                lim = key(iv.limit) if iv.limit else None
            except ValidationFailed as exc:
                self.problems.append(f"{entry.advisory_id}: interval skipped: {exc}")
                keyed.append(None)
                continue
            keyed.append((lo, fx, la, lim))
            bounds.update(b for b in (lo, fx, la, lim) if b is not None)
        points = sorted(bounds)
        n = len(points)
        spans: list[tuple[int, int]] = []
        for item in keyed:
            if item is None:
                spans.append((1, 0))  # empty span: never matches
                continue
            lo, fx, la, lim = item
            first = 0 if lo is None else 2 * bisect_left(points, lo) + 1
            last = 2 * n
            if fx is not None:
                last = min(last, 2 * bisect_left(points, fx))
            if la is not None:
                last = min(last, 2 * bisect_left(points, la) + 1)
            if lim is not None:
                last = min(last, 2 * bisect_left(points, lim))
            spans.append((first, last))
        self.spans = spans
        self.breakpoints = points
        return points

    def lookup(self, version_key: Any) -> tuple[int, ...]:
        points = self.breakpoints
        if points is None:
            points = self._build()
        i = bisect_left(points, version_key)
        region = 2 * i + 1 if i < len(points) and points[i] == version_key else 2 * i
        hit = self.regions.get(region)
        if hit is None:
            hit = tuple(
                idx for idx, (first, last) in enumerate(self.spans) if first <= region <= last
            )
            self.regions[region] = hit
        return hit


@dataclass(slots=True)
class _Listed:
    """Explicit ``versions`` entries of one (ecosystem, name)."""

    by_text: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class IndexStats:
    """Size of an index, for progress output and benchmarks."""

    names: int
    intervals: int
    listed_versions: int


class AdvisoryIndex:
    """Advisories' affected intervals, indexed for fast lookup of installed versions."""

    def __init__(self) -> None:
        self._buckets: dict[tuple[str, str], list[_Bucket]] = {}
        self._listed: dict[tuple[str, str], _Listed] = {}
        self._intervals = 0
        self._versions = 0
        self.problems: list[str] = []

    # ------------------------------------------------------------------ building

    def add_interval(
        self, advisory_id: str, ecosystem: str, name: str, interval: Interval, note: str = ""
    ) -> None:
        """Add one flattened interval of ``advisory_id`` for (ecosystem, name)."""
        if not ecosystems.is_supported(ecosystem):
            self.problems.append(f"{advisory_id}: unsupported ecosystem {ecosystem!r} skipped")
            return
        index_key = (ecosystem, ecosystems.normalize_name(ecosystem, name))
        key = ordering_for(ecosystem, interval.range_type)
        buckets = self._buckets.setdefault(index_key, [])
        for bucket in buckets:
            if bucket.key is key:
                break
        else:
            bucket = _Bucket(key, self.problems)
            buckets.append(bucket)
        bucket.entries.append(_Entry(advisory_id, ecosystem, interval, note))
        bucket.breakpoints = None
        bucket.regions.clear()
        self._intervals += 1

    def add_version(self, advisory_id: str, ecosystem: str, name: str, version: str) -> None:
        """Add one explicitly listed affected version."""
        if not ecosystems.is_supported(ecosystem):
            return
        index_key = (ecosystem, ecosystems.normalize_name(ecosystem, name))
        listed = self._listed.setdefault(index_key, _Listed())
        listed.by_text.setdefault(version, []).append((advisory_id, ecosystem))
        self._versions += 1

    def stats(self) -> IndexStats:
        """How many names, intervals and listed versions the index holds."""
        names = set(self._buckets) | set(self._listed)
        return IndexStats(len(names), self._intervals, self._versions)

    def has_name(self, ecosystem: str, name: str) -> bool:
        """Whether any advisory names this package in this ecosystem (or its base)."""
        norm = ecosystems.normalize_name(ecosystem, name)
        base, release = ecosystems.split(ecosystem)
        keys = [(ecosystem, norm)] + ([(base, norm)] if release else [])
        return any(k in self._buckets or k in self._listed for k in keys)

    # ------------------------------------------------------------------ matching

    def match(self, ecosystem: str, name: str, version: str) -> tuple[Match, ...]:
        """Every advisory affecting ``name`` at ``version`` in host ``ecosystem``.

        One match per advisory. When an advisory covers the version through several
        intervals, the one with the highest fixed version wins (fixing that fixes all).
        Raises ``UnsupportedEcosystem`` for an ecosystem without an ordering.
        """
        norm = ecosystems.normalize_name(ecosystem, name)
        base, release = ecosystems.split(ecosystem)
        probe = [(ecosystem, norm)]
        if release:
            probe.append((base, norm))
        buckets: list[_Bucket] = []
        listed: list[_Listed] = []
        for index_key in probe:
            found = self._buckets.get(index_key)
            if found:
                buckets.extend(found)
            extra = self._listed.get(index_key)
            if extra is not None:
                listed.append(extra)
        if not buckets and not listed:
            if not ecosystems.is_supported(ecosystem):
                ecosystems.info(ecosystem)  # raises: unsupported is an error, not a miss
            return _NO_MATCHES
        best: dict[str, tuple[_Entry | None, Any]] = {}
        for bucket in buckets:
            try:
                vkey = bucket.key(version)
            except ValidationFailed:
                continue  # unparsable: only explicit version lists can match it
            for idx in bucket.lookup(vkey):
                entry = bucket.entries[idx]
                fixed_key = bucket.key(entry.interval.fixed) if entry.interval.fixed else None
                current = best.get(entry.advisory_id)
                if current is None or _better(fixed_key, current[1]):
                    best[entry.advisory_id] = (entry, fixed_key)
        for extra in listed:
            for advisory_id, _eco in extra.by_text.get(version, ()):
                best.setdefault(advisory_id, (None, None))
        return tuple(
            _make_match(advisory_id, ecosystem, name, version, entry)
            for advisory_id, (entry, _fixed) in best.items()
        )

    def match_package(self, package: InstalledPackage) -> tuple[Match, ...]:
        """Match one installed package, through its source package where advisories
        name sources (Debian, Ubuntu, Alpine) and through both names for RPM distros."""
        info = ecosystems.info(package.ecosystem)
        source = (
            package.source_name or package.name,
            package.source_version or package.version,
        )
        if info.by_source:
            return self.match(package.ecosystem, *source)
        found = self.match(package.ecosystem, package.name, package.version)
        if info.also_source and package.source_name and package.source_name != package.name:
            seen = {m.advisory_id for m in found}
            extra = tuple(
                m for m in self.match(package.ecosystem, *source) if m.advisory_id not in seen
            )
            found += extra
        return found


def _better(candidate: Any, current: Any) -> bool:
    """A fixed version beats none; a higher fixed version beats a lower one."""
    if candidate is None:
        return False
    if current is None:
        return True
    return bool(candidate > current)


def _make_match(
    advisory_id: str, ecosystem: str, name: str, version: str, entry: _Entry | None
) -> Match:
    if entry is None:
        return Match(
            advisory_id=advisory_id,
            ecosystem=ecosystem,
            name=name,
            version=version,
            fixed_version=None,
            why=f"{name} {version} is listed as an affected version in {advisory_id}",
        )
    iv = entry.interval
    why = f"{name} {version} is in {iv.describe()} of {advisory_id} for {entry.ecosystem}"
    if entry.note:
        why += f" ({entry.note})"
    return Match(
        advisory_id=advisory_id,
        ecosystem=ecosystem,
        name=name,
        version=version,
        fixed_version=iv.fixed or None,
        why=why,
    )


def match_inventory(
    index: AdvisoryIndex, packages: Iterable[InstalledPackage]
) -> tuple[dict[InstalledPackage, tuple[Match, ...]], list[str]]:
    """Match every package of an inventory; unsupported ecosystems become problems."""
    results: dict[InstalledPackage, tuple[Match, ...]] = {}
    problems: list[str] = []
    reported: set[str] = set()
    for package in packages:
        try:
            found = index.match_package(package)
        except UnsupportedEcosystem as exc:
            if package.ecosystem not in reported:
                reported.add(package.ecosystem)
                problems.append(f"{package.name}: {exc}")
            continue
        if found:
            results[package] = found
    return results, problems
