"""dpkg ordering against dpkg's own test vectors and against the real ``dpkg``."""

from __future__ import annotations

import csv
import itertools
import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.core import versions
from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions import dpkg
from tests.core.test_versions_strategies import dpkg_like_strings, dpkg_versions, sign
from tests.support import data_file


def _load_json(relative: str) -> dict[str, object]:
    return json.loads(data_file(relative).read_text())  # type: ignore[no-any-return]


# --- dpkg's vectors ---------------------------------------------------------------


def test_compare_vectors_from_dpkg_version_t() -> None:
    text = data_file("dpkg-version/dpkg_version_compare.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    assert len(rows) == 43
    for row in rows:
        expected = int(row["expected"])
        assert versions.compare("Debian", row["a"], row["b"]) == expected, row
        assert versions.compare("Debian", row["b"], row["a"]) == -expected, row


def _parse_cases() -> list[dict[str, object]]:
    cases = _load_json("dpkg-version/dpkg_version_c_parse_and_compare.json")["parse_cases"]
    return cases  # type: ignore[return-value]


def test_parse_ok_cases_split_like_parseversion() -> None:
    cases = [c for c in _parse_cases() if c["result"] == "ok"]
    assert len(cases) == 17
    for case in cases:
        parsed = dpkg.parse(str(case["input"]))
        assert (parsed.epoch, parsed.upstream, parsed.revision) == (
            case["epoch"],
            case["upstream"],
            case["revision"],
        ), case


def test_parse_error_cases_raise() -> None:
    cases = [c for c in _parse_cases() if c["result"] == "error"]
    assert len(cases) == 12
    for case in cases:
        with pytest.raises(InvalidVersion):
            dpkg.parse(str(case["input"]))
        assert not versions.is_valid("Debian", str(case["input"]))


def test_parse_warning_cases_are_ordered_like_real_dpkg() -> None:
    # dpkg only warns about these, and `dpkg --compare-versions` still orders them:
    # they are non-canonical, not unorderable. Sorting them among canonical versions
    # and checking each neighbour pair with dpkg checks the whole order.
    cases = [str(c["input"]) for c in _parse_cases() if c["result"] == "warning"]
    assert len(cases) == 51
    for case in cases:
        dpkg.parse(case)
        assert not versions.is_canonical("Debian", case)
    anchors = ["0:0-0", "0:0a-0", "0:0-1", "0:1", "0:0-0+1", "0:abc3", "0:0~-0"]
    ordered = sorted(cases + anchors, key=versions.key_function("Debian"))
    pairs = list(itertools.pairwise(ordered))
    for (a, b), want in zip(pairs, dpkg_compare_many(pairs), strict=True):
        assert versions.compare("Debian", a, b) == want, (a, b)
        assert want <= 0, (a, b)


def test_component_compare_cases() -> None:
    # Components straight into dpkg_version_compare(), bypassing the parser (two of
    # them have an upstream "a" that the parser would refuse).
    data = _load_json("dpkg-version/dpkg_version_c_parse_and_compare.json")
    cases = data["component_compare_cases"]
    assert len(cases) == 10  # type: ignore[arg-type]
    for case in cases:  # type: ignore[attr-defined]
        a = dpkg.DpkgVersion(*case["a"]).sort_key()
        b = dpkg.DpkgVersion(*case["b"]).sort_key()
        assert sign((a > b) - (a < b)) == case["cmp"], case


def _sort_cases() -> dict[str, dict[str, list[str]]]:
    data = _load_json("dpkg-version/dpkg_version_perl_sort_and_validity.json")
    return data["sort_cases"]  # type: ignore[return-value]


@pytest.mark.parametrize("prefix", ["version_compare ", "version_compare_part "])
def test_perl_sort_cases(prefix: str) -> None:
    # version_compare_part sorts upstream versions alone, which are full versions too.
    (case,) = (c for name, c in _sort_cases().items() if name.startswith(prefix))
    unsorted = case["unsorted"]
    assert sorted(unsorted, key=versions.key_function("Debian")) == case["expected_ascending"]


def test_perl_version_compare_string_case_is_not_applicable() -> None:
    # Dpkg::Version's version_compare_string orders raw strings by a Perl helper that
    # gives digits their own order; dpkg never compares digits that way (digit runs
    # are numbers), and the strings ("~000", "Z0z") are not versions. Nothing of ours
    # corresponds, so this only pins that the case exists and stays out of scope.
    (name,) = (n for n in _sort_cases() if n.startswith("version_compare_string"))
    assert "non-digit string segment" in name


def test_perl_validity_cases() -> None:
    data = _load_json("dpkg-version/dpkg_version_perl_sort_and_validity.json")
    cases = data["validity_cases"]
    assert len(cases) == 14  # type: ignore[arg-type]
    for case in cases:  # type: ignore[attr-defined]
        version = case["version"]
        if "valid" in case:
            # Dpkg::Version's validity is the canonical grammar; what it calls invalid
            # only for a character or a missing leading digit is still ordered.
            assert versions.is_canonical("Debian", version) is case["valid"], case
            dpkg_error = case.get("note") not in {
                "invalid character",
                "does not start with digit",
                "does not start with digit (with epoch)",
            }
            assert versions.is_valid("Debian", version) is not dpkg_error, case
        else:
            parsed = dpkg.parse(version)
            assert (parsed.epoch != 0) is case["has_epoch"], case
            assert bool(parsed.revision) is case["has_revision"], case


# --- behaviour worth pinning --------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0000-1", "1.0-1", 0),  # digit runs are numbers
        ("1.0", "1.0-0", 0),  # a missing revision is "0"
        ("1.0~rc1", "1.0", -1),  # ~ sorts before the end
        ("1.0~rc1", "1.0~", 1),
        ("1.0", "1.0a", -1),  # the end sorts before letters
        ("1.0a", "1.0+", -1),  # letters sort before other characters
        ("1:0.1", "2.0", 1),  # epoch first
        ("3.0.11-1~deb12u2", "3.0.11-1", -1),  # Debian security update below base
        ("3.0.11-1~deb12u2", "3.0.11-1~deb12u10", -1),
        ("2.36-9+deb12u7", "2.36-9", 1),
        ("0", "0:0-0", 0),  # OSV's "0" parses
    ],
)
def test_examples(a: str, b: str, expected: int) -> None:
    assert versions.compare("Debian", a, b) == expected
    assert (versions.sort_key("Debian", a) == versions.sort_key("Debian", b)) is (expected == 0)


def test_surrounding_whitespace_is_ignored_like_dpkg() -> None:
    assert versions.sort_key("Debian", " \t1.0-1\n") == versions.sort_key("Debian", "1.0-1")


def test_str_round_trips() -> None:
    for text in ("1.0", "1:2.3-4", "2.0-1~bpo1", "1:1.0:1.0-1"):
        assert str(dpkg.parse(text)) == text


def test_overlong_and_huge_numbers() -> None:
    long_number = "1" + "0" * 200
    assert versions.compare("Debian", long_number, "9" * 200) == 1
    with pytest.raises(InvalidVersion, match="longer than 256"):
        versions.sort_key("Debian", "1" * 257)


# --- the real dpkg --------------------------------------------------------------------

# "--" keeps a version that starts with "-" from reading as an option; dpkg exits 2 on
# a version it refuses, which must never reach the oracle.
_DPKG_ORACLE = """
while IFS="$(printf '\\t')" read -r a b; do
  dpkg --compare-versions -- "$a" lt "$b"; lt=$?
  dpkg --compare-versions -- "$a" eq "$b"; eq=$?
  if [ $lt -gt 1 ] || [ $eq -gt 1 ]; then echo refused
  elif [ $lt -eq 0 ]; then echo -1
  elif [ $eq -eq 0 ]; then echo 0
  else echo 1
  fi
done
"""


def dpkg_compare_many(pairs: list[tuple[str, str]]) -> list[int]:
    """``dpkg --compare-versions`` for many pairs in one shell (dpkg runs per pair)."""
    if shutil.which("dpkg") is None:
        pytest.skip("dpkg is not installed; the real-tool comparison needs it")
    stdin = "".join(f"{a}\t{b}\n" for a, b in pairs)
    done = subprocess.run(
        ["sh", "-c", _DPKG_ORACLE], input=stdin, capture_output=True, text=True, check=True
    )
    lines = done.stdout.split()
    assert "refused" not in lines, done.stderr
    results = [int(line) for line in lines]
    assert len(results) == len(pairs), done.stderr
    return results


@settings(max_examples=12, deadline=None)
@given(st.lists(dpkg_versions(), min_size=8, max_size=10))
def test_agrees_with_real_dpkg_on_generated_versions(generated: list[str]) -> None:
    # Every pair of the list, plus each version against a respelling of itself.
    pairs = list(itertools.combinations(generated, 2))
    pairs += [(a, a.replace(".", ".0", 1).replace("~", "~~", 1)) for a in generated]
    expected = dpkg_compare_many(pairs)
    for (a, b), want in zip(pairs, expected, strict=True):
        assert versions.compare("Debian", a, b) == want, (a, b)


@settings(max_examples=12, deadline=None)
@given(st.lists(dpkg_like_strings(), min_size=8, max_size=10))
def test_agrees_with_real_dpkg_on_non_canonical_versions(generated: list[str]) -> None:
    # What dpkg only warns about (no leading digit, odd or non-ASCII characters) is
    # ordered as dpkg orders it; what dpkg refuses with an error is not ordered at all.
    orderable = [v for v in generated if versions.is_valid("Debian", v)]
    pairs = list(itertools.combinations(orderable, 2))
    if not pairs:
        return
    for (a, b), want in zip(pairs, dpkg_compare_many(pairs), strict=True):
        assert versions.compare("Debian", a, b) == want, (a, b)


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        ("", "version string is empty"),
        ("1.0 1", "embedded spaces"),
        ("a:1", "epoch in version is not number"),
        ("1:", "nothing after colon"),
        ("1.0-", "revision number is empty"),
        ("-1", "version number is empty"),
        ("1.0\x01", "control character"),
    ],
)
def test_what_dpkg_refuses_is_not_ordered(version: str, reason: str) -> None:
    with pytest.raises(InvalidVersion, match=reason):
        versions.sort_key("Debian", version)


def _real_versions() -> list[str]:
    text = data_file("local-dpkg/this-machine.tsv").read_text()
    rows = csv.reader(text.splitlines(), delimiter="\t")
    found = {version for row in rows for version in (row[1], row[4])}
    for path in ("DSA_list.parsed.json", "DLA_list.parsed.json"):
        advisories = json.loads(data_file(f"debian-security-tracker/{path}").read_text())
        for advisory in advisories:
            found.update(f["fixed_version"] for f in advisory["fixed"] if f.get("fixed_version"))
    return sorted(found)


def test_real_versions_parse() -> None:
    real = _real_versions()
    assert len(real) > 10_000
    assert all(versions.is_valid("Debian", v) for v in real)
    # The one DSA entry that names a package instead of a version is non-canonical;
    # dpkg orders it (with a warning), so patchwarden does too.
    assert [v for v in real if not versions.is_canonical("Debian", v)] == [
        "kernel-image-2.4.17-ia64"
    ]


def test_real_versions_sort_like_real_dpkg() -> None:
    # Sorting by key and checking each neighbour pair with dpkg checks the whole order.
    sample = random.Random(440).sample(
        [v for v in _real_versions() if versions.is_valid("Debian", v)], 300
    )
    ordered = sorted(sample, key=versions.key_function("Debian"))
    pairs = list(itertools.pairwise(ordered))
    expected = dpkg_compare_many(pairs)
    for (a, b), want in zip(pairs, expected, strict=True):
        assert versions.compare("Debian", a, b) == want, (a, b)
        assert want <= 0, (a, b)


def test_real_status_file_versions_parse() -> None:
    status: Path = data_file("local-dpkg/var_lib_dpkg_status")
    found = [
        line.split(":", 1)[1].strip()
        for line in status.read_text().splitlines()
        if line.startswith("Version:")
    ]
    assert len(found) > 700
    assert all(versions.is_valid("Debian:12", v) for v in found)


def test_non_ascii_characters_rank_like_real_dpkg() -> None:
    # dpkg compares bytes; on amd64 a UTF-8 byte ranks between letters and the other
    # ASCII characters (its char is signed), which no canonical version exercises.
    found = ["1.0", "1.0a", "1.0z", "1.0é", "1.0ü", "1.0.", "1.0+", "1.0~", "1.0-é", "1.0-a"]
    ordered = sorted(found, key=versions.key_function("Debian"))
    assert ordered.index("1.0z") < ordered.index("1.0é") < ordered.index("1.0.")
    pairs = list(itertools.combinations(found, 2))
    for (a, b), want in zip(pairs, dpkg_compare_many(pairs), strict=True):
        assert versions.compare("Debian", a, b) == want, (a, b)
