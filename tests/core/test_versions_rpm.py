"""rpm ordering against rpm's own test vectors and against the real rpm 4.18."""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
import subprocess
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.core import versions
from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions import rpm
from patchwarden.core.versions.rpm import rpmvercmp
from tests.core.test_versions_strategies import rpm_like_strings, rpm_versions
from tests.support import data_file


def _csv_rows(relative: str) -> list[dict[str, str]]:
    return list(csv.DictReader(data_file(relative).read_text().splitlines()))


# --- rpm's vectors --------------------------------------------------------------------


def test_rpmvercmp_vectors_from_rpmvercmp_at() -> None:
    rows = _csv_rows("rpm-vercmp/rpmvercmp.csv")
    assert len(rows) == 91
    for row in rows:
        assert rpmvercmp(row["a"], row["b"]) == int(row["expected"]), row


def test_rpmvercmp_vectors_as_versions() -> None:
    # The same strings as full versions (no epoch, no release) order the same way.
    rows = [r for r in _csv_rows("rpm-vercmp/rpmvercmp.csv") if "-" not in r["a"] + r["b"]]
    assert len(rows) == 91
    for row in rows:
        if versions.is_valid("Fedora", row["a"]) and versions.is_valid("Fedora", row["b"]):
            assert versions.compare("Fedora", row["a"], row["b"]) == int(row["expected"]), row


def test_disabled_oddities_document_current_behaviour() -> None:
    # rpmvercmp.at keeps these commented out as "arguably buggy" current behaviour:
    # a letter right after a number starts a new segment ("1b.fc17" < "1.fc17"), and
    # non-ASCII letters are separators, so "1.1.<alpha>" equals "1.1.<beta>". rpmvercmp here is
    # rpm's, so it shows the same behaviour; the real rpm confirms it below.
    rows = _csv_rows("rpm-vercmp/rpmvercmp_disabled_oddities.csv")
    assert len(rows) == 12
    for row in rows:
        assert rpmvercmp(row["a"], row["b"]) == int(row["expected"]), row
    pairs = [(r["a"], r["b"]) for r in rows]
    assert rpm_vercmp_many(pairs) == [int(r["expected"]) for r in rows]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0.", 0),  # trailing separators do not count
        ("1.0", "1..0", 0),
        ("ab.cd", "abcd", -1),  # a separator splits letter runs
        ("ab1", "ab.1", 0),  # letter/digit boundaries split anyway
        ("1.0", "1.0~", 1),
        ("1.0~", "1.0~~", 1),
        ("1.0^", "1.0^^", -1),
        ("1.0^", "1.0~", 1),
        ("1.a", "1.1", -1),  # a number beats letters
        ("010", "10", 0),
        ("1\x00zz", "1", 0),  # a C string ends at NUL
        ("", "", 0),
        ("", "~", 1),
    ],
)
def test_rpmvercmp_edges(a: str, b: str, expected: int) -> None:
    assert rpmvercmp(a, b) == expected
    assert rpmvercmp(b, a) == -expected


# --- EVR ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1:1.0-1", "2.0-1", 1),  # epoch first
        ("0:1.0-1", "1.0-1", 0),  # a missing epoch is 0
        ("00:1.0-1", "0:1.0-1", 0),
        ("1.0", "1.0-1", -1),  # a missing release sorts below any release
        ("1.0", "1.0-~1", -1),
        ("1.0-1", "1.0-1.el9", -1),
        ("1:2.9.14-5.el9_4", "1:2.9.14-5.el9", 1),
        ("1:2.9.14-5.el9_4", "1:2.9.14-5.el9_4.1", -1),
        ("6.12.0-55.38.1.el10_0", "6.12.0-55.9.1.el10_0", 1),
        ("140.7.0-1.el10_1.alma.1", "140.7.0-1.el10_1", 1),
        ("0", "0:0", 0),  # OSV's "0" parses
    ],
)
def test_evr_examples(a: str, b: str, expected: int) -> None:
    assert versions.compare("AlmaLinux", a, b) == expected
    assert versions.compare("AlmaLinux", b, a) == -expected


def test_parse_splits_evr() -> None:
    assert rpm.parse("1:2.9.14-5.el9_4") == rpm.Evr(1, "2.9.14", "5.el9_4")
    assert rpm.parse("2.9.14") == rpm.Evr(0, "2.9.14", None)
    assert rpm.parse("0") == rpm.Evr(0, "0", None)


@pytest.mark.parametrize(
    ("evr", "reason"),
    [
        ("", "empty version"),  # rpm itself refuses it
        ("-", "no letter, digit"),
        (":", "no letter, digit"),
        ("..-", "no letter, digit"),
        ("1.0\x00", "control character"),
        ("1.0-1\n", "control character"),
    ],
)
def test_unorderable_evrs(evr: str, reason: str) -> None:
    with pytest.raises(InvalidVersion, match=reason):
        rpm.parse(evr)
    assert not versions.is_valid("Rocky Linux:9", evr)


# Strings rpmbuild would refuse, which rpm still orders (and so does patchwarden).
NON_CANONICAL = [
    ":1.0",  # an empty epoch is 0
    "a:1.0",  # no digits before the colon: no epoch, the version is "a:1.0"
    "x:1-1",
    "1:",  # an empty version
    "1.0-",  # an empty release: above no release, below any other
    "1-",
    "-1",
    "1.0-1-2",  # the release follows the last hyphen
    "1 .0",
    "1.0-1.α",  # non-ASCII letters are separators
    "1.0#git-1",  # a character rpmbuild refuses: a separator to rpmvercmp
]


def test_non_canonical_evrs_split_like_rpm() -> None:
    assert rpm.parse("a:1.0") == rpm.Evr(0, "a:1.0", None)
    assert rpm.parse(":1.0") == rpm.Evr(0, "1.0", None)
    assert rpm.parse("1.0-") == rpm.Evr(0, "1.0", "")
    assert rpm.parse("1.0-1-2") == rpm.Evr(0, "1.0-1", "2")
    assert rpm.parse("1:") == rpm.Evr(1, "", None)
    for evr in NON_CANONICAL:
        assert not versions.is_canonical("AlmaLinux:9", evr), evr
        assert versions.is_valid("AlmaLinux:9", evr), evr


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1-", "1-0", -1),
        ("1-", "1", 1),
        ("1", "1-0", -1),
        ("a:1", "1", -1),  # the version "a:1": a number beats letters
        ("a:1", "0:1", -1),
        ("a:1", "b:1", -1),
        (":1", "0:1", 0),
        ("1:", "1", 1),  # epoch 1 wins, whatever the version
    ],
)
def test_non_canonical_examples(a: str, b: str, expected: int) -> None:
    assert versions.compare("AlmaLinux", a, b) == expected
    assert versions.compare("AlmaLinux", b, a) == -expected


# --- the real rpm ---------------------------------------------------------------------


def _lua_string(text: str) -> str:
    # Lua long brackets take the text literally; generated versions hold no "]".
    assert "]" not in text
    return f"[==[{text}]==]"


def rpm_vercmp_many(pairs: list[tuple[str, str]]) -> list[int]:
    """rpm 4.18's ``rpm.vercmp`` (full EVR comparison) for many pairs in one process.

    ``rpm.vercmp`` parses both arguments as ``[epoch:]version[-release]`` and compares
    them with ``rpmverCmp``, which uses ``rpmvercmp`` on each part: for strings with no
    ``:`` or ``-`` it is the plain ``rpmvercmp``.
    """
    if shutil.which("rpm") is None:
        pytest.skip("rpm is not installed; the real-tool comparison needs it")
    lines = [f"{{{_lua_string(a)}, {_lua_string(b)}}}," for a, b in pairs]
    script = (
        "local pairs_ = {\n" + "\n".join(lines) + "\n}\n"
        "for _, p in ipairs(pairs_) do io.write(rpm.vercmp(p[1], p[2]), '\\n') end\n"
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as handle:
        handle.write(script)
        handle.flush()
        done = subprocess.run(
            ["rpm", "--eval", f"%{{lua: dofile('{handle.name}')}}"],
            capture_output=True,
            text=True,
            check=True,
        )
    results = [int(line) for line in done.stdout.split()]
    assert len(results) == len(pairs), done.stderr
    return results


def test_rpm_oracle_compares_full_evrs() -> None:
    # Check the oracle first: it must see epochs and releases, not plain strings.
    assert rpm_vercmp_many([("1:1.0", "2.0"), ("1.0-1", "1.0"), ("1.0", "1.0-~1")]) == [1, 1, -1]


def test_non_canonical_evrs_order_like_real_rpm() -> None:
    anchors = ["0", "1", "1-0", "1.0", "1.0-1", "1:1.0", "a", "1.0-1.a"]
    found = NON_CANONICAL + anchors
    pairs = list(itertools.combinations(found, 2))
    for (a, b), want in zip(pairs, rpm_vercmp_many(pairs), strict=True):
        assert versions.compare("AlmaLinux", a, b) == want, (a, b)


@settings(max_examples=25, deadline=None)
@given(st.lists(rpm_like_strings(), min_size=10, max_size=15))
def test_agrees_with_real_rpm_on_any_string(generated: list[str]) -> None:
    orderable = [v for v in generated if versions.is_valid("Red Hat", v)]
    pairs = list(itertools.combinations(orderable, 2))
    if not pairs:
        return
    for (a, b), want in zip(pairs, rpm_vercmp_many(pairs), strict=True):
        assert versions.compare("Red Hat", a, b) == want, (a, b)


def test_vectors_agree_with_real_rpm() -> None:
    rows = _csv_rows("rpm-vercmp/rpmvercmp.csv")
    assert rpm_vercmp_many([(r["a"], r["b"]) for r in rows]) == [int(r["expected"]) for r in rows]


@settings(max_examples=25, deadline=None)
@given(st.lists(rpm_versions(), min_size=10, max_size=15))
def test_agrees_with_real_rpm_on_generated_versions(generated: list[str]) -> None:
    pairs = list(itertools.combinations(generated, 2))
    pairs += [(a, a.replace(".", "_", 1).replace("1", "01", 1)) for a in generated]
    expected = rpm_vercmp_many(pairs)
    for (a, b), want in zip(pairs, expected, strict=True):
        assert versions.compare("Red Hat", a, b) == want, (a, b)


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.text(alphabet="0129aZ._+~^-:", min_size=1, max_size=6), min_size=10, max_size=15)
)
def test_rpmvercmp_agrees_with_real_rpm_on_raw_strings(generated: list[str]) -> None:
    # Raw strings with any separators; rpm.vercmp splits ":" and "-" off first, so only
    # strings without them are plain rpmvercmp calls (and it refuses empty strings).
    plain = [s for s in generated if ":" not in s and "-" not in s]
    pairs = list(itertools.combinations(plain, 2))
    if not pairs:
        return
    expected = rpm_vercmp_many(pairs)
    for (a, b), want in zip(pairs, expected, strict=True):
        assert rpmvercmp(a, b) == want, (a, b)


def _real_versions() -> list[str]:
    found: set[str] = set()
    for path in sorted(data_file("rpm-inventories").glob("go-rpmdb_*.csv")):
        for row in csv.DictReader(path.read_text().splitlines()):
            epoch = f"{row['epoch']}:" if row["epoch"] else ""
            found.add(f"{epoch}{row['version']}-{row['release']}")
    for path in sorted(data_file("osv-almalinux/advisories").glob("*/*.json")):
        for affected in json.loads(path.read_text()).get("affected", []):
            for rng in affected.get("ranges", []):
                for event in rng.get("events", []):
                    found.update(event.values())
    return sorted(found)


def test_real_versions_parse_and_sort_like_real_rpm() -> None:
    real = _real_versions()
    assert len(real) > 4000
    assert [v for v in real if not versions.is_canonical("Red Hat", v)] == []
    ordered = sorted(real, key=versions.key_function("Red Hat"))
    pairs = list(itertools.pairwise(ordered))
    expected = rpm_vercmp_many(pairs)
    for (a, b), want in zip(pairs, expected, strict=True):
        assert versions.compare("Red Hat", a, b) == want, (a, b)
        assert want <= 0


def test_real_versions_sort_identically_after_shuffling() -> None:
    real = _real_versions()
    shuffled = real[:]
    random.Random(4).shuffle(shuffled)
    key = versions.key_function("CentOS")
    assert [key(v) for v in sorted(shuffled, key=key)] == [key(v) for v in sorted(real, key=key)]
