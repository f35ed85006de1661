"""How fast version keys are, per scheme, over real version strings.

Run from the checkout: ``.venv/bin/python bench/bench_versions.py``. It reads real
versions from the shared data folder (``PATCHWARDEN_TEST_DATA`` or ``../shared/data``)
and prints, per scheme, the median over several rounds of:

- ``first``: ns per key for the first half of the versions, every cache empty (the
  key cache and the tables of common pieces such as ``.``, ``-r``, ``el9``, ``12``);
- ``cold``: ns per key for the other half, never seen before, as a matcher meets new
  versions once the process has warmed those tables;
- ``hit``: ns per key when the key function finds the version in its cache;
- ``sort``: ms to sort all versions by key, against the naive sort that compares
  pairs (``cmp_to_key(compare)``); both start with an empty key cache.
"""

from __future__ import annotations

import csv
import functools
import gc
import json
import os
import re
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from patchwarden.core import versions  # noqa: E402  (after the path set-up above)
from patchwarden.core.versions import apk, dpkg, pep440, rpm, semver  # noqa: E402

ROUNDS = 7


def data_dir() -> Path:
    configured = os.environ.get("PATCHWARDEN_TEST_DATA")
    return Path(configured) if configured else ROOT.parent / "shared" / "data"


def _dpkg_versions(data: Path) -> Iterator[str]:
    for row in csv.reader((data / "local-dpkg/this-machine.tsv").open(), delimiter="\t"):
        yield row[1]
        yield row[4]
    for path in ("DSA_list.parsed.json", "DLA_list.parsed.json"):
        for advisory in json.loads((data / "debian-security-tracker" / path).read_text()):
            for fixed in advisory.get("fixed", []):
                yield fixed.get("fixed_version") or ""


def _rpm_versions(data: Path) -> Iterator[str]:
    for path in sorted((data / "rpm-inventories").glob("go-rpmdb_*.csv")):
        for row in csv.DictReader(path.open()):
            epoch = f"{row['epoch']}:" if row["epoch"] else ""
            yield f"{epoch}{row['version']}-{row['release']}"
    for path in sorted((data / "osv-almalinux/advisories").glob("*/*.json")):
        yield from _osv_versions(json.loads(path.read_text()))


def _apk_versions(data: Path) -> Iterator[str]:
    for path in sorted((data / "alpine-secdb").glob("*/*.json")):
        for package in json.loads(path.read_text()).get("packages") or []:
            yield from package["pkg"].get("secfixes") or {}


def _pypi_versions(data: Path) -> Iterator[str]:
    with (data / "pypa-advisory-database/pypi_osv_all.jsonl").open() as lines:
        for line in lines:
            record = json.loads(line)
            yield from _osv_versions(record)
            for affected in record.get("affected", []):
                yield from affected.get("versions", [])


def _semver_versions(data: Path) -> Iterator[str]:
    # Few npm/Go records are in the shared data; PyPI's many MAJOR.MINOR.PATCH
    # versions are real SemVer strings too.
    shape = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+(?:[-+].*)?")
    for version in _pypi_versions(data):
        if shape.fullmatch(version):
            yield version


def _osv_versions(record: dict[str, object]) -> Iterator[str]:
    for affected in record.get("affected", []) or []:  # type: ignore[attr-defined]
        for rng in affected.get("ranges", []):
            for event in rng.get("events", []):
                yield from event.values()


SOURCES: dict[str, tuple[str, Callable[[Path], Iterator[str]], Callable[[str], object]]] = {
    "dpkg": ("Debian", _dpkg_versions, dpkg.key),
    "rpm": ("AlmaLinux", _rpm_versions, rpm.key),
    "apk": ("Alpine", _apk_versions, apk.key),
    "pep440": ("PyPI", _pypi_versions, pep440.key),
    "semver": ("npm", _semver_versions, semver.key),
}


def valid_distinct(ecosystem: str, raw: Iterator[str]) -> list[str]:
    seen = dict.fromkeys(v for v in raw if v and v != "0")
    return [v for v in seen if versions.is_valid(ecosystem, v)]


def clear_all() -> None:
    versions.cache_clear()
    for module in (dpkg, rpm):  # bench only: measure a process that has seen nothing
        module._PIECES.clear()
        module._PARTS.clear()


def per_key_ns(fn: Callable[[str], object], sample: list[str]) -> float:
    gc.disable()
    start = time.perf_counter_ns()
    for version in sample:
        fn(version)
    elapsed = time.perf_counter_ns() - start
    gc.enable()
    return elapsed / len(sample)


def measure(scheme: str) -> dict[str, float] | None:
    ecosystem, source, compute = SOURCES[scheme]
    try:
        sample = valid_distinct(ecosystem, source(data_dir()))
    except OSError as exc:
        print(f"{scheme:7} skipped: {exc}")
        return None
    key = versions.key_function(ecosystem)
    naive = functools.cmp_to_key(functools.partial(versions.compare, ecosystem))
    first, cold, hit, sort_key, sort_cmp = [], [], [], [], []
    half = len(sample) // 2
    for _ in range(ROUNDS):
        clear_all()
        first.append(per_key_ns(compute, sample[:half]))
        cold.append(per_key_ns(compute, sample[half:]))
        versions.cache_clear()
        per_key_ns(key, sample)
        hit.append(per_key_ns(key, sample))
        clear_all()
        start = time.perf_counter_ns()
        sorted(sample, key=key)
        sort_key.append((time.perf_counter_ns() - start) / 1e6)
        start = time.perf_counter_ns()
        sorted(sample, key=naive)  # cache warm: only the pairwise comparisons cost
        sort_cmp.append((time.perf_counter_ns() - start) / 1e6)
    return {
        "versions": len(sample),
        "first": statistics.median(first),
        "cold": statistics.median(cold),
        "hit": statistics.median(hit),
        "sort_key": statistics.median(sort_key),
        "sort_cmp": statistics.median(sort_cmp),
    }


EXAMPLES = [
    ("dpkg", "3.0.11-1~deb12u2"),
    ("rpm", "1:2.9.14-5.el9_4"),
    ("apk", "3.0.11-r0"),
    ("pep440", "2.31.0"),
    ("semver", "2.31.0"),
]


def example_ns(compute: Callable[[str], object], version: str) -> tuple[float, float]:
    """Median ns of one key: with every table empty, and with the piece tables warm."""
    empty = []
    for _ in range(201):
        clear_all()
        start = time.perf_counter_ns()
        compute(version)
        empty.append(time.perf_counter_ns() - start)
    warm = []
    for _ in range(201):
        start = time.perf_counter_ns()
        for _ in range(100):
            compute(version)
        warm.append((time.perf_counter_ns() - start) / 100)
    return statistics.median(empty), statistics.median(warm)


def main() -> None:
    print(f"python {sys.version.split()[0]}, median of {ROUNDS} rounds, data {data_dir()}")
    header = ("scheme", "versions", "first ns", "cold ns", "hit ns", "sort key ms", "sort cmp ms")
    print("{:7} {:>9} {:>9} {:>8} {:>7} {:>12} {:>12}".format(*header))
    for scheme in SOURCES:
        result = measure(scheme)
        if result is not None:
            print(
                f"{scheme:7} {result['versions']:9.0f} {result['first']:9.0f} "
                f"{result['cold']:8.0f} {result['hit']:7.0f} {result['sort_key']:12.1f} "
                f"{result['sort_cmp']:12.1f}"
            )
    print("\ntypical versions, ns per key (uncached):")
    for scheme, version in EXAMPLES:
        empty, warm = example_ns(SOURCES[scheme][2], version)
        print(f"{scheme:7} {version:20} tables empty {empty:7.0f}   tables warm {warm:7.0f}")


if __name__ == "__main__":
    main()
