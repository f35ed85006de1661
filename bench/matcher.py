"""Measures 1 and 2: the in-memory matcher over distinct triples, and the naive way.

Measure 1 builds ``AdvisoryIndex`` exactly as ``store.advisories`` feeds it (through
``core.osv.flatten_affected``) and times ``AdvisoryIndex.match`` over every distinct
(ecosystem, name, version) lookup the fleet needs — cold (fresh index, empty version
key cache) and warm — then ``match_package`` over the distinct packages and the
in-memory fan-out of those results to every host.

Measure 2 is the naive per-host approach: for every host and every installed package,
every advisory naming the package is evaluated with the specification's reference
algorithm ``core.osv.includes``, with no sharing of work between hosts. It runs on a
sample of hosts and is extrapolated to the fleet; its results are checked against the
index's for the same hosts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bench.common import median, timed, timed_cpu
from bench.synth import Fleet, Host, host_sample
from patchwarden.core import ecosystems, versions
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.matching import AdvisoryIndex
from patchwarden.core.model import Advisory, Affected, InstalledPackage, Match
from patchwarden.core.osv import flatten_affected, includes

Triple = tuple[str, str, str]


def build_index(advisories: Iterable[Advisory]) -> AdvisoryIndex:
    """The match index, built the way ``import_advisories`` + ``load_index`` build it."""
    index = AdvisoryIndex()
    for advisory in advisories:
        if advisory.withdrawn is not None:
            continue
        for affected in advisory.affected:
            if not ecosystems.is_supported(affected.ecosystem):
                continue
            flat = flatten_affected(advisory.id, affected)
            name = ecosystems.normalize_name(affected.ecosystem, affected.name)
            for interval in flat.intervals:
                index.add_interval(advisory.id, affected.ecosystem, name, interval, affected.note)
            for version in dict.fromkeys(affected.versions):
                index.add_version(advisory.id, affected.ecosystem, name, version)
    return index


def lookup_triples(packages: Iterable[InstalledPackage]) -> list[Triple]:
    """The distinct (ecosystem, name, version) lookups ``match_package`` makes: the
    source for by-source ecosystems, the binary (and a differing source) otherwise."""
    triples: dict[Triple, None] = {}
    for p in packages:
        info = ecosystems.info(p.ecosystem)
        source = (p.ecosystem, p.source_name or p.name, p.source_version or p.version)
        if info.by_source:
            triples[source] = None
            continue
        triples[(p.ecosystem, p.name, p.version)] = None
        if info.also_source and p.source_name and p.source_name != p.name:
            triples[source] = None
    return list(triples)


def _match_all(index: AdvisoryIndex, triples: Sequence[Triple]) -> int:
    found = 0
    match = index.match
    for ecosystem, name, version in triples:
        found += len(match(ecosystem, name, version))
    return found


@dataclass
class MatcherResult:
    """Figures of measure 1 (seconds, counts, rates per second on one core)."""

    advisories: int = 0
    index_names: int = 0
    index_intervals: int = 0
    index_build_s: list[float] = field(default_factory=list)
    distinct_packages: int = 0
    distinct_triples: int = 0
    triples_with_matches: int = 0
    matches_per_pass: int = 0
    cold_s: list[float] = field(default_factory=list)
    cold_cpu_s: list[float] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)
    warm_cpu_s: list[float] = field(default_factory=list)
    packages_warm_s: list[float] = field(default_factory=list)
    fanout_s: list[float] = field(default_factory=list)
    host_package_pairs: int = 0
    findings: int = 0
    findings_per_host: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Medians and rates, ready for the report."""
        cold, warm = median(self.cold_s), median(self.warm_s)
        cold_cpu, warm_cpu = median(self.cold_cpu_s), median(self.warm_cpu_s)
        packages_warm = median(self.packages_warm_s)
        return {
            "index_build_median_s": median(self.index_build_s),
            "cold_median_s": cold,
            "warm_median_s": warm,
            "cold_triples_per_s": self.distinct_triples / cold,
            "warm_triples_per_s": self.distinct_triples / warm,
            "cold_triples_per_cpu_s": self.distinct_triples / cold_cpu,
            "warm_triples_per_cpu_s": self.distinct_triples / warm_cpu,
            "packages_warm_median_s": packages_warm,
            "warm_packages_per_s": self.distinct_packages / packages_warm,
            "fanout_median_s": median(self.fanout_s),
            "fleet_in_memory_s": cold + packages_warm + median(self.fanout_s),
        }


def measure_matcher(
    fleet: Fleet, advisories: Sequence[Advisory], repeat: int
) -> tuple[MatcherResult, AdvisoryIndex, dict[InstalledPackage, tuple[Match, ...]]]:
    """Measure 1; also returns the (warm) index and every distinct package's matches."""
    result = MatcherResult(advisories=len(advisories))
    packages = fleet.distinct_packages()
    triples = lookup_triples(packages)
    result.distinct_packages = len(packages)
    result.distinct_triples = len(triples)
    index = AdvisoryIndex()
    for _ in range(max(1, repeat)):
        # Cold: a fresh index whose buckets are built on first lookup, and no cached
        # version keys (flatten_affected fills the cache while building, so clear it).
        index, seconds = timed(lambda: build_index(advisories))
        result.index_build_s.append(seconds)
        versions.cache_clear()
        one_pass = partial(_match_all, index, triples)
        found, seconds, cpu = timed_cpu(one_pass)
        result.cold_s.append(seconds)
        result.cold_cpu_s.append(cpu)
        result.matches_per_pass = found
        for _ in range(2):
            _found, seconds, cpu = timed_cpu(one_pass)
            result.warm_s.append(seconds)
            result.warm_cpu_s.append(cpu)
    stats = index.stats()
    result.index_names, result.index_intervals = stats.names, stats.intervals
    result.triples_with_matches = sum(1 for t in triples if index.match(*t))

    by_package: dict[InstalledPackage, tuple[Match, ...]] = {}

    def match_packages() -> None:
        for package in packages:
            by_package[package] = index.match_package(package)

    for _ in range(max(1, repeat)):
        _none, seconds = timed(match_packages)
        result.packages_warm_s.append(seconds)

    per_host: list[int] = []

    def fan_out() -> None:
        per_host.clear()
        for host in fleet.hosts:
            per_host.append(sum(len(by_package[p]) for p in host.inventory.packages))

    for _ in range(max(1, repeat)):
        _none, seconds = timed(fan_out)
        result.fanout_s.append(seconds)
    result.host_package_pairs = sum(len(h.inventory.packages) for h in fleet.hosts)
    result.findings = sum(per_host)
    ordered = sorted(per_host)
    result.findings_per_host = {
        "min": ordered[0],
        "median": median([float(v) for v in ordered]),
        "p90": ordered[int(len(ordered) * 0.9)],
        "max": ordered[-1],
        "mean": result.findings / len(ordered),
    }
    for profile in fleet.profiles:
        counts = [n for n, h in zip(per_host, fleet.hosts, strict=True) if h.profile == profile]
        if counts:
            result.findings_per_host[f"median {profile}"] = median([float(v) for v in counts])
    return result, index, by_package


# --------------------------------------------------------------------------- naive


class NaiveMatcher:
    """The per-host reference approach: every advisory naming a package, evaluated
    with ``osv.includes`` for every package of every host, nothing shared."""

    def __init__(self, advisories: Iterable[Advisory]) -> None:
        # Grouping advisories by name is the one concession to speed: without it every
        # package would scan all advisories. Ecosystem rules are applied per advisory.
        self.by_name: dict[str, list[tuple[str, Affected]]] = {}
        for advisory in advisories:
            if advisory.withdrawn is not None:
                continue
            for affected in advisory.affected:
                if not ecosystems.is_supported(affected.ecosystem):
                    continue
                name = ecosystems.normalize_name(affected.ecosystem, affected.name)
                self.by_name.setdefault(name, []).append((advisory.id, affected))

    def _advisories_for(self, ecosystem: str, name: str, version: str) -> set[str]:
        found: set[str] = set()
        for advisory_id, affected in self.by_name.get(
            ecosystems.normalize_name(ecosystem, name), ()
        ):
            if not ecosystems.applies_to(affected.ecosystem, ecosystem):
                continue
            if version in affected.versions:
                found.add(advisory_id)
                continue
            for rng in affected.ranges:
                try:
                    if includes(ecosystem, version, rng):
                        found.add(advisory_id)
                        break
                except ValidationFailed:
                    continue  # unparsable event or version: the range cannot match
        return found

    def match_package(self, p: InstalledPackage) -> set[str]:
        """Advisory ids affecting one installed package (same rules as the index)."""
        info = ecosystems.info(p.ecosystem)
        source = (p.source_name or p.name, p.source_version or p.version)
        if info.by_source:
            return self._advisories_for(p.ecosystem, *source)
        found = self._advisories_for(p.ecosystem, p.name, p.version)
        if info.also_source and p.source_name and p.source_name != p.name:
            found |= self._advisories_for(p.ecosystem, *source)
        return found


@dataclass
class NaiveResult:
    """Figures of measure 2."""

    sample_hosts: int = 0
    sample_packages: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    cpu_s: float = 0.0
    per_host_s: float = 0.0
    fleet_extrapolated_s: float = 0.0
    agree: int = 0
    disagree: list[str] = field(default_factory=list)


def measure_naive(
    fleet: Fleet,
    advisories: Sequence[Advisory],
    by_package: dict[InstalledPackage, tuple[Match, ...]],
    sample: int,
) -> NaiveResult:
    """Measure 2 on ``sample`` hosts spread over the fleet, checked against the index."""
    naive = NaiveMatcher(advisories)
    hosts: list[Host] = host_sample(fleet.hosts, sample)
    result = NaiveResult(sample_hosts=len(hosts))
    answers: list[tuple[InstalledPackage, set[str]]] = []

    def run() -> None:
        for host in hosts:
            for package in host.inventory.packages:
                answers.append((package, naive.match_package(package)))

    _none, result.seconds, result.cpu_s = timed_cpu(run)
    result.sample_packages = len(answers)
    for package, found in answers:
        expected = {m.advisory_id for m in by_package[package]}
        if found == expected:
            result.agree += 1
        elif len(result.disagree) < 10:
            result.disagree.append(
                f"{package.ecosystem} {package.name} {package.version}: naive "
                f"{sorted(found - expected)[:3]} vs index {sorted(expected - found)[:3]}"
            )
    result.evaluations = sum(
        _candidates(naive, package) for host in hosts for package in host.inventory.packages
    )
    result.per_host_s = result.seconds / max(1, len(hosts))
    result.fleet_extrapolated_s = result.per_host_s * len(fleet.hosts)
    return result


def _candidates(naive: NaiveMatcher, p: InstalledPackage) -> int:
    """How many affected entries the naive approach looks at for one package."""
    info = ecosystems.info(p.ecosystem)
    names = [p.source_name or p.name] if info.by_source else [p.name]
    if not info.by_source and info.also_source and p.source_name and p.source_name != p.name:
        names.append(p.source_name)
    return sum(len(naive.by_name.get(ecosystems.normalize_name(p.ecosystem, n), ())) for n in names)
