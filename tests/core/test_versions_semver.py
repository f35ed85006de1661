"""SemVer 2.0 ordering against node-semver's fixtures and a direct reading of the spec."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given, settings

from patchwarden.core import versions
from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions import semver
from tests.core.test_versions_strategies import semver_versions, sign
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
    tested = loose_only = 0
    for a, b, *options in cases:
        if not versions.is_valid("npm", str(b)):
            # Skipped: node-semver's loose mode also reads "=1.2.3", "v 1.2.3" and
            # "= 1.2.3", which are not SemVer 2.0; strict parsing rejects them.
            assert options, b
            assert _is_loose(options[0]), b
            assert "=" in str(b) or "v " in str(b), b
            loose_only += 1
            continue
        assert versions.compare("npm", str(a), str(b)) == 0, (a, b)
        assert versions.sort_key("npm", str(a)) == versions.sort_key("npm", str(b))
        tested += 1
    assert (tested, loose_only) == (11, 26)


def test_invalid_versions() -> None:
    cases = _fixture("invalid-versions.json")
    strings = [c for c in cases if isinstance(c[0], str)]
    # The others are JavaScript objects (not strings), outside a typed str API.
    assert len(cases) - len(strings) == 3
    for version, reason, *_ in strings:
        with pytest.raises(InvalidVersion):
            versions.sort_key("npm", str(version))
        assert not versions.is_valid("Go", str(version)), reason


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
    "version",
    [
        "0",
        "1",
        "v1.2",
        "1.2",
        "01.2.3",
        "1.02.3",
        "1.2.3-01",
        "1.2.3-",
        "1.2.3+",
        "V1.2.3",
        "1.2.3-a..b",
        "=1.2.3",
        "1.2.3beta",
        "1.2.3-ä",
        str(2**53) + ".0.0",
    ],
)
def test_rejected(version: str) -> None:
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
