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
(the Linux kernel has thousands). Matching never raises for a version: non-canonical
versions are ordered like any other (``patchwarden.core.versions``), and a version no
rule can order is matched only against explicit ``versions`` lists, as DESIGN.md asks.
It is reported in ``AdvisoryIndex.problems`` with the reason and the advisories whose
ranges could not be checked, and the ``why`` of a listed match says so too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from patchwarden.core import ecosystems
from patchwarden.core.errors import InvalidVersion, UnsupportedEcosystem, ValidationFailed
from patchwarden.core.model import InstalledPackage, Match
from patchwarden.core.osv import Interval, ordering_for

_NO_MATCHES: tuple[Match, ...] = ()
#: Advisories named in one "could not be ordered" problem before "and N more".
_NAMED_ADVISORIES = 3


@dataclass(frozen=True, slots=True)
class _Entry:
    advisory_id: str
    ecosystem: str
    interval: Interval
    note: str

    def why_tail(self) -> str:
        """The constant part of every ``why`` this entry produces."""
        tail = f"is in {self.interval.describe()} of {self.advisory_id} for {self.ecosystem}"
        return f"{tail} ({self.note})" if self.note else tail


#: One advisory's best hit in a region: (advisory id, fixed version or None, fixed key,
#: why tail). Precomputed per region, so a lookup only formats the ``why`` sentence.
_Hit = tuple[str, str | None, Any, str]


@dataclass(slots=True)
class _Bucket:
    """Every interval of one (ecosystem, name, ordering), lazily turned into regions."""

    key: Callable[[str], Any]
    problems: list[str]
    entries: list[_Entry] = field(default_factory=list)
    breakpoints: list[Any] | None = None
    spans: list[tuple[int, int]] = field(default_factory=list)
    fixed_keys: list[Any] = field(default_factory=list)
    regions: dict[int, tuple[_Hit, ...]] = field(default_factory=dict)

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
        fixed_keys: list[Any] = []
        for item in keyed:
            if item is None:
                spans.append((1, 0))  # empty span: never matches
                fixed_keys.append(None)
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
            fixed_keys.append(fx)
        self.spans = spans
        self.fixed_keys = fixed_keys
        self.breakpoints = points
        return points

    def _region_hits(self, region: int) -> tuple[_Hit, ...]:
        """Covering intervals reduced to one per advisory (the highest fix wins)."""
        best: dict[str, int] = {}
        fixed_keys = self.fixed_keys
        for idx, (first, last) in enumerate(self.spans):
            if first <= region <= last:
                held = best.get(self.entries[idx].advisory_id)
                if held is None or _better(fixed_keys[idx], fixed_keys[held]):
                    best[self.entries[idx].advisory_id] = idx
        return tuple(
            (
                advisory_id,
                self.entries[idx].interval.fixed or None,
                fixed_keys[idx],
                self.entries[idx].why_tail(),
            )
            for advisory_id, idx in best.items()
        )

    def lookup(self, version_key: Any) -> tuple[_Hit, ...]:
        """The advisories covering ``version_key`` (one best hit each), cached by region."""
        points = self.breakpoints
        if points is None:
            points = self._build()
        i = bisect_left(points, version_key)
        region = 2 * i + 1 if i < len(points) and points[i] == version_key else 2 * i
        hit = self.regions.get(region)
        if hit is None:
            hit = self.regions[region] = self._region_hits(region)
        return hit


@dataclass(slots=True)
class _Name:
    """Everything the index knows about one (ecosystem, name): interval buckets (one
    per version ordering) and explicitly listed versions."""

    buckets: list[_Bucket] = field(default_factory=list)
    listed: dict[str, list[str]] = field(default_factory=dict)

    def single(self) -> _Bucket | None:
        """The one bucket when there is nothing else to merge (the fast path)."""
        return self.buckets[0] if len(self.buckets) == 1 and not self.listed else None


@dataclass(frozen=True, slots=True)
class IndexStats:
    """Size of an index, for progress output and benchmarks."""

    names: int
    intervals: int
    listed_versions: int


class AdvisoryIndex:
    """Advisories' affected intervals, indexed for fast lookup of installed versions."""

    def __init__(self) -> None:
        self._names: dict[tuple[str, str], _Name] = {}
        self._intervals = 0
        self._versions = 0
        self._plans: dict[str, tuple[str | None, bool]] = {}
        self._unorderable: set[tuple[str, str, str]] = set()
        self.problems: list[str] = []

    # ------------------------------------------------------------------ building

    def add_interval(
        self, advisory_id: str, ecosystem: str, name: str, interval: Interval, note: str = ""
    ) -> None:
        """Add one flattened interval of ``advisory_id`` for (ecosystem, name)."""
        if not ecosystems.is_supported(ecosystem):
            self.problems.append(f"{advisory_id}: unsupported ecosystem {ecosystem!r} skipped")
            return
        entry = self._names.setdefault(
            (ecosystem, ecosystems.normalize_name(ecosystem, name)), _Name()
        )
        key = ordering_for(ecosystem, interval.range_type)
        for bucket in entry.buckets:
            if bucket.key is key:
                break
        else:
            bucket = _Bucket(key, self.problems)
            entry.buckets.append(bucket)
        bucket.entries.append(_Entry(advisory_id, ecosystem, interval, note))
        bucket.breakpoints = None
        bucket.regions.clear()
        self._intervals += 1

    def add_version(self, advisory_id: str, ecosystem: str, name: str, version: str) -> None:
        """Add one explicitly listed affected version."""
        if not ecosystems.is_supported(ecosystem):
            return
        entry = self._names.setdefault(
            (ecosystem, ecosystems.normalize_name(ecosystem, name)), _Name()
        )
        entry.listed.setdefault(version, []).append(advisory_id)
        self._versions += 1

    def stats(self) -> IndexStats:
        """How many names, intervals and listed versions the index holds."""
        return IndexStats(len(self._names), self._intervals, self._versions)

    def has_name(self, ecosystem: str, name: str) -> bool:
        """Whether any advisory names this package in this ecosystem (or its base)."""
        norm = ecosystems.normalize_name(ecosystem, name)
        base, release = ecosystems.split(ecosystem)
        keys = [(ecosystem, norm)] + ([(base, norm)] if release else [])
        return any(k in self._names for k in keys)

    # ------------------------------------------------------------------ matching

    def _probe(self, ecosystem: str) -> tuple[str | None, bool]:
        """(base ecosystem to probe too, whether names need PEP 503 normalization).

        Raises ``UnsupportedEcosystem`` for an ecosystem without an ordering: a host
        package in such an ecosystem is an error to report, not a silent miss.
        """
        plan = self._plans.get(ecosystem)
        if plan is None:
            ecosystems.info(ecosystem)
            base, release = ecosystems.split(ecosystem)
            plan = self._plans[ecosystem] = (base if release else None, base == "PyPI")
        return plan

    def match(self, ecosystem: str, name: str, version: str) -> tuple[Match, ...]:
        """Every advisory affecting ``name`` at ``version`` in host ``ecosystem``.

        One match per advisory. When an advisory covers the version through several
        intervals, the one with the highest fixed version wins (fixing that fixes all).
        A version no rule can order is matched only by explicit version lists and
        reported in ``problems``. Raises ``UnsupportedEcosystem`` for an ecosystem
        without an ordering, and nothing for any version.
        """
        base, pypi = self._probe(ecosystem)
        norm = ecosystems.normalize_name(ecosystem, name) if pypi else name
        names = self._names
        entry = names.get((ecosystem, norm))
        other = names.get((base, norm)) if base is not None else None
        if entry is None:
            if other is None:
                return _NO_MATCHES
            entry, other = other, None
        prefix = f"{name} {version} "
        bucket = entry.single() if other is None else None
        if bucket is not None:
            # The common case: one ordering, hits already reduced per advisory.
            try:
                hits = bucket.lookup(bucket.key(version))
            except InvalidVersion as exc:
                self._report_unorderable(ecosystem, name, version, exc.reason, [bucket])
                return _NO_MATCHES  # only explicit version lists could match it
            if not hits:
                return _NO_MATCHES
            return tuple(
                [
                    Match(advisory_id, ecosystem, name, version, fixed, prefix + tail)
                    for advisory_id, fixed, _key, tail in hits
                ]
            )
        sources = [s for s in (entry, other) if s is not None]
        best: dict[str, _Hit] = {}
        skipped: list[_Bucket] = []
        reason = ""
        for each in (b for source in sources for b in source.buckets):
            try:
                hits = each.lookup(each.key(version))
            except InvalidVersion as exc:
                skipped.append(each)
                reason = exc.reason
                continue
            for hit in hits:
                held = best.get(hit[0])
                if held is None or _better(hit[2], held[2]):
                    best[hit[0]] = hit
        note = ""
        if skipped:
            self._report_unorderable(ecosystem, name, version, reason, skipped)
            note = f"; its version cannot be ordered ({reason}), so ranges were not checked"
        for source in sources:
            for advisory_id in source.listed.get(version, ()):
                tail = f"is listed as an affected version in {advisory_id}{note}"
                best.setdefault(advisory_id, (advisory_id, None, None, tail))
        return tuple(
            [
                Match(advisory_id, ecosystem, name, version, fixed, prefix + tail)
                for advisory_id, fixed, _key, tail in best.values()
            ]
        )

    def _report_unorderable(
        self, ecosystem: str, name: str, version: str, reason: str, skipped: list[_Bucket]
    ) -> None:
        """Add one problem for a version no rule can order (once per triple)."""
        triple = (ecosystem, name, version)
        if triple in self._unorderable:
            return
        self._unorderable.add(triple)
        ids = sorted({e.advisory_id for bucket in skipped for e in bucket.entries})
        named = ", ".join(ids[:_NAMED_ADVISORIES])
        if len(ids) > _NAMED_ADVISORIES:
            named += f" and {len(ids) - _NAMED_ADVISORIES} more"
        self.problems.append(
            f"{name} {version!r} ({ecosystem}): version cannot be ordered ({reason}); "
            f"the version ranges of {named} were not checked, only explicit version lists"
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


def match_inventory(
    index: AdvisoryIndex, packages: Iterable[InstalledPackage]
) -> tuple[dict[InstalledPackage, tuple[Match, ...]], list[str]]:
    """Match every package of an inventory.

    The problems are the unsupported ecosystems met (once each) and what the index
    reported while matching: versions no rule can order, advisory intervals skipped.
    """
    results: dict[InstalledPackage, tuple[Match, ...]] = {}
    problems: list[str] = []
    reported: set[str] = set()
    already = len(index.problems)
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
    return results, problems + index.problems[already:]
