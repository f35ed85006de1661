"""Every version the real feeds and inventories in ../shared/data contain is ordered.

``feed_versions`` extracts every version string, per source, from the OSV records
(PyPI, AlmaLinux, Rocky Linux, Red Hat, Ubuntu, Alpine, Go, npm; SEMVER ranges of
other ecosystems count as npm, whose ordering they use), the Debian security tracker,
the Alpine secdb and the real inventories (dpkg status files, rpm databases, apk
databases). For each source the tests then check that

- no version raises (``is_valid``), and exactly the expected ones are non-canonical:
  the strings the strict grammars (the only ones before) refused, now ordered by the
  ecosystem tool's own rule; the table of counts is printed (``pytest -s``) and pinned;
- every non-canonical version sits where the ecosystem's real tool puts it: checked
  against ``dpkg --compare-versions`` next to each neighbour in the sorted list,
  against the apk-tools model for Alpine, and against the legacy order packaging 21.3
  gives (pinned below, in full) for PyPI; the small rpm sources against rpm itself;
- sorting by key is a total order (the same whatever the input order) and agrees with
  each scheme's comparison vectors placed among the feed versions.
"""

from __future__ import annotations

import csv
import itertools
import json
import random
from collections.abc import Iterable, Iterator
from functools import cache
from pathlib import Path

import pytest
import yaml

from patchwarden.core import ecosystems, versions
from tests.core.test_versions_apk import COMPARISONS as APK_COMPARISONS
from tests.core.test_versions_apk import model_compare
from tests.core.test_versions_dpkg import dpkg_compare_many
from tests.core.test_versions_rpm import rpm_vercmp_many
from tests.core.test_versions_strategies import sign
from tests.support import data_file

# Source label -> the ecosystem whose ordering its versions use.
SOURCES = {
    "Debian": "Debian",
    "Ubuntu": "Ubuntu",
    "AlmaLinux": "AlmaLinux",
    "Rocky Linux": "Rocky Linux",
    "Red Hat": "Red Hat",
    "rpm inventories": "Red Hat",
    "Alpine": "Alpine",
    "PyPI": "PyPI",
    "npm": "npm",
    "Go": "Go",
}

# What the strict grammars refused, per source: these are all ordered now.
NON_CANONICAL_COUNTS = {
    "Debian": 3,
    "Ubuntu": 0,
    "AlmaLinux": 0,
    "Rocky Linux": 0,
    "Red Hat": 0,
    "rpm inventories": 0,
    "Alpine": 15,
    "PyPI": 78,
    "npm": 0,
    "Go": 0,
}


# --- extraction ---------------------------------------------------------------------------


def _osv_versions(record: dict[str, object]) -> Iterator[tuple[str, str]]:
    """(source label, version) of every event and listed version of one OSV record."""
    for affected in record.get("affected") or []:  # type: ignore[attr-defined]
        ecosystem = (affected.get("package") or {}).get("ecosystem", "")
        base = ecosystem.split(":")[0]
        for rng in affected.get("ranges") or []:
            if rng.get("type") == "GIT":
                continue  # commit hashes, not versions
            semver_range = rng.get("type") == "SEMVER" and base not in ("npm", "Go")
            label = "npm" if semver_range else base  # npm's ordering is SemVer's
            for event in rng.get("events") or []:
                for kind, version in event.items():
                    if (kind, version) in (("introduced", "0"), ("limit", "*")):
                        continue  # OSV's markers for "since the start" and "no limit"
                    yield label, version
        for version in affected.get("versions") or []:
            yield base, version


def _json_files(relative: str, pattern: str) -> Iterator[dict[str, object]]:
    for path in sorted(data_file(relative).glob(pattern)):
        yield json.loads(path.read_text())


def _control_fields(path: Path) -> Iterator[str]:
    """Versions of a dpkg status (or apk installed) database: own and source versions."""
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("Version:"):
            yield line.split(":", 1)[1].strip()
        elif line.startswith("Source:") and "(" in line:
            yield line[line.index("(") + 1 : line.rindex(")")].strip()


def _rows(relative: str, delimiter: str) -> list[list[str]]:
    return list(csv.reader(data_file(relative).read_text().splitlines(), delimiter=delimiter))


@cache
def feed_versions() -> dict[str, frozenset[str]]:
    """Every distinct version string of every source, as the feeds spell it."""
    found: dict[str, set[str]] = {label: set() for label in SOURCES}

    def add(pairs: Iterable[tuple[str, str]]) -> None:
        for label, version in pairs:
            if label in found:  # Maven, RubyGems... have no ordering here
                found[label].add(version)

    # OSV records.
    for line in data_file("pypa-advisory-database/pypi_osv_all.jsonl").read_text().splitlines():
        add(_osv_versions(json.loads(line)))
    for record in _json_files("osv-almalinux/advisories", "*/*.json"):
        add(_osv_versions(record))
    vunnel = "vunnel-fixtures/tests/unit/providers"
    for pattern in ("alma/**/*.json", "rocky/**/*.json", "ubuntu/test-fixtures/osv*/**/*.json"):
        for record in _json_files(vunnel, pattern):
            add(_osv_versions(record))
    for record in _json_files("osv-schema", "**/*.json"):
        if isinstance(record, dict) and "affected" in record:
            add(_osv_versions(record))

    # Debian: the security tracker's DSA/DLA lists and its JSON, and dpkg databases.
    for name in ("DSA_list.parsed.json", "DLA_list.parsed.json"):
        for advisory in json.loads(data_file(f"debian-security-tracker/{name}").read_text()):
            add(("Debian", f["fixed_version"]) for f in advisory["fixed"] if f.get("fixed_version"))
    tracker = json.loads(data_file(f"{vunnel}/debian/test-fixtures/input/debian.json").read_text())
    for cves in tracker.values():
        for cve in cves.values():
            for release in dict(cve.get("releases") or {}).values():  # [] when there are none
                fixed = release.get("fixed_version")
                if fixed:
                    add([("Debian", fixed)])
                add(("Debian", v) for v in release.get("repositories", {}).values())
    for row in _rows("local-dpkg/this-machine.tsv", "\t"):
        add([("Debian", row[1]), ("Debian", row[4])])
    status_files = [data_file("local-dpkg/var_lib_dpkg_status")]
    status_files += sorted(data_file("trivy-fixtures").glob("*dpkg_status"))
    status_files += sorted(
        p for p in data_file("syft-fixtures").rglob("*") if p.is_file() and "dpkg" in str(p)
    )
    for path in status_files:
        add(("Debian", v) for v in _control_fields(path))

    # rpm databases of real images (go-rpmdb, CBL-Mariner).
    for path in sorted(data_file("rpm-inventories").glob("go-rpmdb_*.csv")):
        for row in csv.DictReader(path.read_text().splitlines()):
            epoch = f"{row['epoch']}:" if row["epoch"] else ""
            add([("rpm inventories", f"{epoch}{row['version']}-{row['release']}")])
    dump = data_file("rpm-inventories/cbl-mariner-2.0_rpmdb-dump.tsv").read_text()
    for row in csv.DictReader(dump.splitlines(), delimiter="\t"):
        epoch = "" if row["epochnum"] in ("", "0") else f"{row['epochnum']}:"
        add([("rpm inventories", f"{epoch}{row['version']}-{row['release']}")])
    for row in _rows("trivy-fixtures/mariner-azurelinux_container-manifest-2.tsv", "\t"):
        add([("rpm inventories", row[1])])

    # Alpine: secdb (JSON of v3.3-v3.11, YAML of v3.15) and apk databases.
    for secdb in _json_files("alpine-secdb", "*/*.json"):
        for package in secdb.get("packages") or []:  # type: ignore[attr-defined]
            add(("Alpine", v) for v in package["pkg"].get("secfixes") or {})
    for path in sorted(data_file(f"{vunnel}/alpine").rglob("*.yaml")):
        for package in yaml.safe_load(path.read_text()).get("packages") or []:
            add(("Alpine", str(v)) for v in package["pkg"].get("secfixes") or {})
    for path in sorted(data_file("syft-fixtures").rglob("installed")):
        for line in path.read_text().splitlines():
            if line.startswith("V:"):
                add([("Alpine", line[2:].strip())])
    return {label: frozenset(found_versions) for label, found_versions in found.items()}


def _non_canonical(label: str) -> list[str]:
    ecosystem = SOURCES[label]
    odd = [v for v in feed_versions()[label] if not versions.is_canonical(ecosystem, v)]
    return sorted(odd, key=versions.key_function(ecosystem))


# --- every version is ordered; the counts --------------------------------------------------


def test_counts_of_non_canonical_versions_per_source() -> None:
    table = {label: len(_non_canonical(label)) for label in SOURCES}
    lines = [f"{'source':16} {'versions':>9} {'non-canonical':>14}"]
    lines += [f"{label:16} {len(feed_versions()[label]):9} {table[label]:14}" for label in SOURCES]
    print("\n" + "\n".join(lines))  # the table is the point: pytest -s shows it
    assert table == NON_CANONICAL_COUNTS, "\n".join(lines)


@pytest.mark.parametrize("label", list(SOURCES))
def test_no_feed_version_is_refused(label: str) -> None:
    found = feed_versions()[label]
    ecosystem = SOURCES[label]
    assert found, f"no {label} versions found in the shared data"
    assert [v for v in found if not versions.is_valid(ecosystem, v)] == []
    print(f"\n{label}: {len(found)} versions, non-canonical in order:")
    for version in _non_canonical(label):
        print(f"  {version}")


@pytest.mark.parametrize("label", list(SOURCES))
def test_sorting_is_a_total_order(label: str) -> None:
    # The same order whatever the input order, and compare agrees with the keys.
    ecosystem = SOURCES[label]
    key = versions.key_function(ecosystem)
    found = sorted(feed_versions()[label])
    ordered = [key(v) for v in sorted(found, key=key)]
    for seed in range(3):
        shuffled = found[:]
        random.Random(seed).shuffle(shuffled)
        assert [key(v) for v in sorted(shuffled, key=key)] == ordered
    for a, b in itertools.pairwise(sorted(found, key=key)):
        assert versions.compare(ecosystem, a, b) <= 0
        assert versions.compare(ecosystem, b, a) >= 0


# --- where the non-canonical ones go --------------------------------------------------------

# All non-canonical versions of the feeds, in order. Debian's as dpkg orders them
# (checked below against the real dpkg), Alpine's as apk-tools' walk does (checked
# below against the model), PyPI's as packaging 21.3's LegacyVersion (pip's legacy
# ordering) orders them, checked once with that release: strictly increasing.
# fmt: off
NON_CANONICAL_IN_ORDER = {
    "Debian": ["5.#", "kernel-image-2.4.17-ia64", "1:5.#"],
    "Alpine": [
        "0.8.21.r2", "0.12.5.-r0", "1.0.4.-r0", "1.7.5.-r1", "1.11-20-r0", "1.18.-r2",
        "2.7.16-33", "2.15.r-r1", "4.8.0.-r1", "4.10-1-r1", "6.6.2p1-r0", "10.2.22.r0",
        "10.2.24.r0", "10.2.26.r0", "57-1-r2",
    ],
    "PyPI": [
        "a3", "-class.-jw.util.version.Version-", "trunk", "0.1-bulbasaur", "0.1-charmander",
        "0.2.0-n653", "0.3m1", "0.3m2", "0.3m3", "0.3m4", "0.3m5", "0.3.1-p1", "0.3.2d.dev",
        "0.3.2d", "0.3.2e.dev", "0.3.2f.dev", "0.3.2f", "0.3.2g.dev", "0.4.0-p1", "0.4m1",
        "0.4m2", "0.4m3", "0.4m4", "0.4m5", "0.5m1", "0.5m2", "0.5m3", "0.5m4", "0.5m5",
        "0.6m1", "0.6m2", "0.6m3", "0.6m4", "0.6m5", "0.6m6", "0.7.0d", "0.7.1.fix1",
        "0.7.4.svn.r2010", "0.7.10p1", "0.7.11p1", "0.7.11p2", "0.7.11p3", "0.8.1p1", "0.8.3p1",
        "0.8.4p1", "0.8.4p2", "0.8.6p1", "0.8.7p1", "0.9-doduo", "0.9-eevee", "0.9-fearow",
        "0.9-gyarados", "0.9-horsea", "0.9-ivysaur", "1.0beta6.1", "2.0.0-final",
        "2.0.1rc2-git", "3.0.0b3-", "4.11-final", "4.36.-1", "5.0-final",
        "2013-01-21T20:33:09+0100", "2013-01-23T17:11:52+0100", "2013-02-01T20:50:46+0100",
        "2013-02-02T19:59:03+0100", "2013-02-02T20:23:17+0100", "2013-02-08T17:40:57+0000",
        "2013-03-27T16:32:26+0100", "2013-05-09T12:47:53+0200", "2013-05-10T17:55:56+0200",
        "2013-05-14T20:16:05+0200", "2013-06-01T10:32:51+0200", "2013-07-19T09:11:08+0000",
        "2013-08-12T21:48:56+0200", "2013-09-11T19-27-10", "2013-12-23T17-51-15",
        "2014-01-12T15-52-10", "2019-09-12",
    ],
}
# fmt: on


@pytest.mark.parametrize("label", list(NON_CANONICAL_IN_ORDER))
def test_non_canonical_versions_in_order(label: str) -> None:
    expected = NON_CANONICAL_IN_ORDER[label]
    assert _non_canonical(label) == expected
    for low, high in itertools.pairwise(expected):
        assert versions.compare(SOURCES[label], low, high) == -1, (low, high)


def _neighbours(label: str) -> list[tuple[str, str]]:
    """Each non-canonical version with the versions just below and above it."""
    key = versions.key_function(SOURCES[label])
    ordered = sorted(feed_versions()[label], key=key)
    pairs = set()
    for at, version in enumerate(ordered):
        if not versions.is_canonical(SOURCES[label], version):
            pairs.update(zip(ordered[max(at - 1, 0) : at + 1], ordered[at : at + 2], strict=False))
    return sorted(pairs)


def test_debian_non_canonical_versions_sit_where_real_dpkg_puts_them() -> None:
    pairs = _neighbours("Debian") + list(itertools.combinations(_non_canonical("Debian"), 2))
    assert len(pairs) >= 6
    for (a, b), want in zip(pairs, dpkg_compare_many(pairs), strict=True):
        assert versions.compare("Debian", a, b) == want, (a, b)


def test_alpine_order_agrees_with_the_apk_model_everywhere() -> None:
    ordered = sorted(feed_versions()["Alpine"], key=versions.key_function("Alpine"))
    for a, b in itertools.pairwise(ordered):
        assert versions.compare("Alpine", a, b) == model_compare(a, b), (a, b)


def test_pypi_legacy_versions_sort_below_every_pep_440_version() -> None:
    key = versions.key_function("PyPI")
    found = feed_versions()["PyPI"]
    legacy = [key(v) for v in found if not versions.is_canonical("PyPI", v)]
    pep440 = [key(v) for v in found if versions.is_canonical("PyPI", v)]
    assert max(legacy) < min(pep440)


def test_rpm_sources_sort_like_real_rpm() -> None:
    # The smaller rpm sources in full (the big ones are sampled in test_versions_rpm).
    found = feed_versions()["Red Hat"] | feed_versions()["Rocky Linux"]
    ordered = sorted(found, key=versions.key_function("Red Hat"))
    pairs = list(itertools.pairwise(ordered))
    for (a, b), want in zip(pairs, rpm_vercmp_many(pairs), strict=True):
        assert versions.compare("Red Hat", a, b) == want, (a, b)


# --- the comparison vectors, placed among the feed versions -----------------------------------


def _vectors(scheme: str) -> list[tuple[str, str, int]]:
    """(a, b, sign of a - b) from each scheme's reference vectors."""
    if scheme == "dpkg":
        rows = csv.DictReader(
            data_file("dpkg-version/dpkg_version_compare.csv").read_text().splitlines()
        )
        return [(r["a"], r["b"], int(r["expected"])) for r in rows]
    if scheme == "rpm":
        rows = csv.DictReader(data_file("rpm-vercmp/rpmvercmp.csv").read_text().splitlines())
        return [(r["a"], r["b"], int(r["expected"])) for r in rows if "-" not in r["a"] + r["b"]]
    if scheme == "apk":
        return [(a, b, {"<": -1, "=": 0, ">": 1}[op]) for a, op, b in APK_COMPARISONS]
    if scheme == "pep440":
        text = data_file("pep440-packaging/pep440_versions_sorted_ascending.txt").read_text()
        return [(a, b, -1) for a, b in itertools.pairwise(text.split())]
    cases = json.loads(data_file("semver-node/comparisons.json").read_text())
    return [(str(greater), str(lesser), 1) for greater, lesser, *_ in cases]


@pytest.mark.parametrize("label", list(SOURCES))
def test_the_order_with_feed_versions_keeps_the_comparison_vectors(label: str) -> None:
    ecosystem = SOURCES[label]
    vectors = _vectors(ecosystems.info(ecosystem).scheme)
    key = versions.key_function(ecosystem)
    merged = sorted(
        set(feed_versions()[label]) | {v for a, b, _ in vectors for v in (a, b)}, key=key
    )
    # Rank = index of the first version with an equal key: equal versions share one.
    rank: dict[str, int] = {}
    for at, version in enumerate(merged):
        same = at > 0 and key(merged[at - 1]) == key(version)
        rank[version] = rank[merged[at - 1]] if same else at
    for a, b, expected in vectors:
        assert sign(rank[a] - rank[b]) == expected, (a, b, expected)
