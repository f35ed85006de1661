"""PEP 440 ordering against pypa/packaging's test data and the ``packaging`` library."""

from __future__ import annotations

import itertools
import json
import random
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.core import versions
from patchwarden.core.errors import InvalidVersion
from patchwarden.core.versions import pep440
from tests.core.test_versions_strategies import pep440_versions, sign
from tests.support import data_file


def _cases(test: str) -> list[object]:
    path = data_file("pep440-packaging/test_version_parametrize_cases.json")
    (entry,) = (e for e in json.loads(path.read_text()) if e["test"] == test)
    return entry["cases"]  # type: ignore[no-any-return]


def _sorted_versions() -> list[str]:
    text = data_file("pep440-packaging/pep440_versions_sorted_ascending.txt").read_text()
    return text.split()


# --- packaging's vectors ----------------------------------------------------------------


def test_sorted_list_sorts_identically() -> None:
    expected = _sorted_versions()
    assert len(expected) == 92
    shuffled = expected[:]
    for seed in range(5):
        random.Random(seed).shuffle(shuffled)
        assert sorted(shuffled, key=versions.key_function("PyPI")) == expected


def test_sorted_list_is_strictly_increasing() -> None:
    ordered = _sorted_versions()
    for low, high in itertools.pairwise(ordered):
        assert versions.compare("PyPI", low, high) == -1, (low, high)


def test_valid_versions() -> None:
    cases = _cases("test_valid_versions")
    assert len(cases) == 92
    assert all(versions.is_valid("PyPI", str(v)) for v in cases)


def test_invalid_versions() -> None:
    cases = [str(v) for v in _cases("test_invalid_versions")]
    assert len(cases) == 20  # includes non-ASCII digits and a dotted capital I
    for version in cases:
        with pytest.raises(InvalidVersion):
            versions.sort_key("PyPI", version)


def test_normalized_versions() -> None:
    cases = _cases("test_normalized_versions")
    assert len(cases) == 102
    for version, normalized in cases:  # type: ignore[misc]
        assert str(pep440.parse(version)) == normalized, version
        assert versions.compare("PyPI", version, normalized) == 0, version


def test_str_of_parsed_versions() -> None:
    cases = _cases("test_version_str_repr")
    assert len(cases) == 47
    for version, expected in cases:  # type: ignore[misc]
        assert str(pep440.parse(version)) == expected


@pytest.mark.parametrize(
    ("test", "field"),
    [
        ("test_version_epoch", "epoch"),
        ("test_version_release", "release"),
        ("test_version_pre", "pre"),
        ("test_version_post", "post"),
        ("test_version_dev", "dev"),
    ],
)
def test_parsed_fields(test: str, field: str) -> None:
    cases = _cases(test)
    assert len(cases) == 29
    for version, expected in cases:  # type: ignore[misc]
        value = getattr(pep440.parse(version), field)
        assert value == (tuple(expected) if isinstance(expected, list) else expected), version


def test_local_and_public_parts_order_as_documented() -> None:
    # A local version sorts above its public version; the cases list both.
    for version, public in _cases("test_version_public"):  # type: ignore[misc]
        expected = 0 if version == public else 1
        assert versions.compare("PyPI", version, public) == expected, version


def test_oversized_version_is_rejected_not_crashing() -> None:
    (huge, *_) = _cases("test_oversized_version_raises_valueerror")
    with pytest.raises(InvalidVersion, match="longer than"):
        versions.sort_key("PyPI", str(huge))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("1.0", "1.0.0", 0),
        ("1.0", "1.0.0.0.1", -1),
        ("v1.0", "1.0", 0),
        ("1.0.DEV", "1.0.dev0", 0),
        ("1.0+AbC", "1.0+abc", 0),
        ("1.0+01", "1.0+1", 0),
        ("1.0+1", "1.0+a", 1),  # numeric local segments beat alphanumeric ones
        ("1.0+a.1", "1.0+a", 1),  # more segments sort higher
        ("1.0.dev0", "1.0a0", -1),
        ("1.0a0.dev0", "1.0a0", -1),
        ("1.0.post0.dev0", "1.0", 1),
        ("1!0.1", "2.0", 1),
        ("0", "0.0", 0),  # OSV's "0" parses
        ("2.31.0", "2.31.0rc1", 1),
    ],
)
def test_examples(a: str, b: str, expected: int) -> None:
    assert versions.compare("PyPI", a, b) == expected
    assert (versions.sort_key("PyPI", a) == versions.sort_key("PyPI", b)) is (expected == 0)


# --- packaging as the oracle -----------------------------------------------------------


def _packaging() -> ModuleType:
    return pytest.importorskip("packaging.version", reason="packaging is the PEP 440 oracle")


def _packaging_cmp(a: str, b: str) -> int:
    version = _packaging().Version
    va, vb = version(a), version(b)
    return (va > vb) - (va < vb)


@settings(max_examples=500)
@given(pep440_versions(), pep440_versions())
def test_agrees_with_packaging_on_generated_versions(a: str, b: str) -> None:
    assert versions.compare("PyPI", a, b) == _packaging_cmp(a, b), (a, b)
    assert str(pep440.parse(a)) == str(_packaging().Version(a))


@settings(max_examples=500)
@given(st.text(alphabet="0123.!+-_ abcdeilnoprstvAC", max_size=12))
def test_validity_agrees_with_packaging(text: str) -> None:
    packaging_version = _packaging()
    try:
        packaging_version.Version(text)
    except packaging_version.InvalidVersion:
        expected = False
    else:
        expected = True
    assert versions.is_valid("PyPI", text) is expected, text


def _real_versions() -> list[str]:
    found: set[str] = set()
    path = data_file("pypa-advisory-database/pypi_osv_all.jsonl")
    for line in path.read_text().splitlines():
        for affected in json.loads(line).get("affected", []):
            found.update(affected.get("versions", []))
            for rng in affected.get("ranges", []):
                for event in rng.get("events", []):
                    found.update(event.values())
    return sorted(found)


def test_real_versions_validity_and_order_agree_with_packaging() -> None:
    packaging_version = _packaging()
    real = _real_versions()
    assert len(real) > 10_000
    valid = []
    for version in real:
        try:
            packaging_version.Version(version)
        except packaging_version.InvalidVersion:
            assert not versions.is_valid("PyPI", version), version
        else:
            assert versions.is_valid("PyPI", version), version
            valid.append(version)
    ours = sorted(valid, key=versions.key_function("PyPI"))
    for a, b in itertools.pairwise(ours):
        assert sign(_packaging_cmp(a, b)) == versions.compare("PyPI", a, b), (a, b)
