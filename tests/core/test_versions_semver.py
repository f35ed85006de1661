"""SemVer 2.0 ordering against node-semver's fixtures and a direct reading of the spec."""

from __future__ import annotations

import itertools
import json
import re

import pytest
from hypothesis import given, settings

from patchwarden.core import versions
from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions import semver
from tests.core.test_versions_strategies import semver_like_strings, semver_versions, sign
from tests.support import data_file


def _fixture(name: str) -> list[list[object]]:
    return json.loads(data_file(f"semver-node/{name}").read_text())  # type: ignore[no-any-return]


def _is_loose(options: object) -> bool:
    return options is True or (isinstance(options, dict) and bool(options.get("loose")))


# --- node-semver's fixtures -------------------------------------------------------------


def test_comparisons() -> None:
    cases = _fixture("comparisons.json")
    assert len(cases) == 31
    for greater, lesser, *_ in cases:
        # The cases marked loose only add a "v" prefix, which strict SemVer here
        # accepts too (Go writes it), so every case applies.
        assert versions.compare("npm", str(greater), str(lesser)) == 1, (greater, lesser)
        assert versions.compare("Go", str(lesser), str(greater)) == -1, (greater, lesser)


def test_equality() -> None:
    cases = _fixture("equality.json")
    assert len(cases) == 37
    loose_only = 0
    for a, b, *options in cases:
        # node-semver's loose mode also reads "=1.2.3", "v 1.2.3" and "= 1.2.3": not
        # canonical SemVer, and ordered the same way here.
        if not versions.is_canonical("npm", str(b)):
            assert options, b
            assert _is_loose(options[0]), b
            loose_only += 1
        assert versions.compare("npm", str(a), str(b)) == 0, (a, b)
        assert versions.sort_key("npm", str(a)) == versions.sort_key("npm", str(b))
    assert loose_only == 26


def test_invalid_versions() -> None:
    cases = _fixture("invalid-versions.json")
    strings = [(str(c[0]), str(c[1])) for c in cases if isinstance(c[0], str)]
    # The others are JavaScript objects (not strings), outside a typed str API.
    assert len(cases) - len(strings) == 3
    for version, reason in strings:
        assert not versions.is_canonical("Go", version), reason
        if reason == "too big":  # beyond node-semver's limit, still a number
            assert versions.compare("npm", version, "0.0.0") == 1
            continue
        with pytest.raises(InvalidVersion):
            versions.sort_key("npm", version)
        assert not versions.is_valid("Go", version), reason


def test_valid_versions() -> None:
    cases = _fixture("valid-versions.json")
    assert len(cases) == 22
    for version, major, minor, patch, prerelease, build in cases:
        parsed = semver.parse(str(version))
        assert parsed == semver.SemVer(
            major,  # type: ignore[arg-type]
            minor,  # type: ignore[arg-type]
            patch,  # type: ignore[arg-type]
            tuple(prerelease),  # type: ignore[arg-type]
            tuple(build),  # type: ignore[arg-type]
        ), version


# --- spec examples and choices ----------------------------------------------------------


def test_spec_precedence_example() -> None:
    # The ordered list from semver.org, section 11.
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "2.0.0",
        "2.1.0",
        "2.1.1",
    ]
    shuffled = ordered[::2] + ordered[1::2]
    assert sorted(shuffled, key=versions.key_function("npm")) == ordered
    for low, high in itertools.pairwise(ordered):
        assert versions.compare("npm", low, high) == -1


@pytest.mark.parametrize(
    ("version", "same_as"),
    [
        ("0", "0.0.0"),
        ("1", "1.0.0"),
        ("v1.2", "1.2.0"),  # Go's shorthand
        ("1.2", "1.2.0"),
        ("01.2.3", "1.2.3"),
        ("1.02.3", "1.2.3"),
        ("1.2.3-01", "1.2.3-1"),
        ("1.2.3-", "1.2.3"),
        ("1.2.3+", "1.2.3"),
        ("=1.2.3", "1.2.3"),
        ("1.2.3beta", "1.2.3-beta"),
        ("1.2.3.beta", "1.2.3-beta"),
        ("1.2.3.0", "1.2.3"),
        ("1.2.3.0.0-rc.1", "1.2.3-rc.1"),
        ("1.2.3.4+build", "1.2.3.4"),
    ],
)
def test_non_canonical_versions_read_as(version: str, same_as: str) -> None:
    assert not versions.is_canonical("Go", version)
    assert versions.compare("Go", version, same_as) == 0
    assert versions.sort_key("Go", version) == versions.sort_key("Go", same_as)


def test_more_than_three_parts_and_big_numbers() -> None:
    ordered = [
        "1.2.3-rc.1",
        "1.2.3",
        "1.2.3.4-beta",
        "1.2.3.4",
        "1.2.3.4.1",
        "1.2.3.5",
        "1.2.3.10",
        "1.2.4",
        str(2**53 - 1) + ".0.0",
        str(2**53) + ".0.0",  # beyond node-semver and 64 bits, still a number
        str(2**64) + ".0.0",
        "9" * 40 + ".0.0",
    ]
    shuffled = ordered[::-1]
    assert sorted(shuffled, key=versions.key_function("npm")) == ordered
    for low, high in itertools.pairwise(ordered):
        assert versions.compare("npm", low, high) == -1, (low, high)
    assert versions.compare("npm", "1." + str(2**64) + ".0", "1." + str(2**64 + 1) + ".0") == -1


@pytest.mark.parametrize(
    "version", ["", "banana", "V1.2.3", "latest", "1.2.3 beta", "1.2.3-\x00", "-1.2.3"]
)
def test_unorderable(version: str) -> None:
    with pytest.raises(InvalidVersion):
        versions.sort_key("Go", version)


def test_huge_prerelease_numbers_compare_as_numbers() -> None:
    # SemVer's rule (node-semver would compare identifiers past 2**53 - 1 as text).
    assert versions.compare("npm", "1.0.0-" + "9" * 30, "1.0.0-" + "1" + "0" * 30) == -1
    assert versions.compare("npm", "1.0.0-" + "9" * 30, "1.0.0-a") == -1


# --- a direct reading of the spec as the oracle -------------------------------------------


def spec_compare(a: str, b: str) -> int:
    """SemVer 2.0 section 11, written out plainly over the strings."""

    def split(text: str) -> tuple[list[int], list[str] | None]:
        core, _, _build = text.strip().removeprefix("v").partition("+")
        release, dash, pre = core.partition("-")
        return [int(n) for n in release.split(".")], (pre.split(".") if dash else None)

    (ra, pa), (rb, pb) = split(a), split(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if pa is None or pb is None:
        return (pa is None) - (pb is None)
    for x, y in zip(pa, pb, strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return sign(int(x) - int(y))
        if x.isdigit() or y.isdigit():
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return sign(len(pa) - len(pb))


@settings(max_examples=500)
@given(semver_versions(), semver_versions())
def test_agrees_with_the_spec(a: str, b: str) -> None:
    assert versions.compare("npm", a, b) == spec_compare(a, b), (a, b)


def lenient_compare(a: str, b: str) -> int:
    """The documented reading of non-canonical versions, written out plainly: numbers
    compared with zeros filling the shorter list, then the pre-release per the spec."""

    def split(text: str) -> tuple[list[int], list[str] | None]:
        core = text.strip().lstrip("v= ").partition("+")[0]
        numbers = re.match(r"[0-9]+(\.[0-9]+)*", core)
        assert numbers is not None
        rest = core[numbers.end() :]
        rest = rest[1:] if rest[:1] in ("-", ".") else rest
        return [int(n) for n in numbers.group().split(".")], rest.split(".") if rest else None

    (ra, pa), (rb, pb) = split(a), split(b)
    size = max(len(ra), len(rb), 3)
    ra, rb = ra + [0] * (size - len(ra)), rb + [0] * (size - len(rb))
    if ra != rb:
        return -1 if ra < rb else 1
    if pa is None or pb is None:
        return (pa is None) - (pb is None)
    for x, y in zip(pa, pb, strict=False):
        numeric_x, numeric_y = x.isdigit() and x.isascii(), y.isdigit() and y.isascii()
        if numeric_x and numeric_y:
            if int(x) != int(y):
                return sign(int(x) - int(y))
        elif numeric_x or numeric_y:
            return -1 if numeric_x else 1
        elif x != y:
            return -1 if x < y else 1
    return sign(len(pa) - len(pb))


@settings(max_examples=500)
@given(semver_like_strings(), semver_like_strings())
def test_non_canonical_versions_agree_with_the_documented_reading(a: str, b: str) -> None:
    if versions.is_valid("npm", a) and versions.is_valid("npm", b):
        assert versions.compare("npm", a, b) == lenient_compare(a, b), (a, b)
