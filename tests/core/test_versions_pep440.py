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


def test_invalid_versions_are_legacy_or_unorderable() -> None:
    # Not PEP 440; pip's legacy ordering takes the printable ASCII ones (below every
    # PEP 440 version), the rest (spaces, non-ASCII digits, a dotted capital I) cannot
    # be ordered.
    cases = [str(v) for v in _cases("test_invalid_versions")]
    assert len(cases) == 20
    for version in cases:
        assert not versions.is_canonical("PyPI", version)
        legacy = version.isascii() and version.isprintable() and " " not in version
        assert versions.is_valid("PyPI", version) is legacy, version
        if legacy:
            assert versions.compare("PyPI", version, "0.dev0") == -1, version
        else:
            with pytest.raises(InvalidVersion, match="not a PEP 440 version"):
                versions.sort_key("PyPI", version)


# Legacy comparisons as packaging 21.3's LegacyVersion (pip's ordering until pip 24.1)
# gives them, checked with that release; the project itself uses a current packaging.
LEGACY_FACTS = [
    ("0.9-doduo", "<", "0.9"),  # every legacy version sorts below every PEP 440 one
    ("0.9-doduo", "<", "0.1"),
    ("1.0-beta-custom", "<", "1.0-beta"),  # 1.0-beta is PEP 440 (1.0b0)
    ("0.9-doduo", "<", "0.9-eevee"),
    ("0.9-eevee", "<", "0.9-final"),
    ("1.0-beta-custom", "<", "1.0-gamma"),
    ("0.3m1", "<", "0.3m2"),
    ("0.3m5", "<", "0.3.1m1"),
    ("1.0rc1-x", "=", "1.0c1-x"),  # rc, pre and preview all read as c
    ("1.0pre1-x", "=", "1.0preview1-x"),
    ("1.0-dev-x", "=", "1.0@-x"),  # dev reads as @
    ("trunk", ">", "a3"),
    ("2.0.0-final", "<", "2.0.0-final1"),
    ("4.11-final", "=", "4.11.0-final"),  # trailing zeros of a numeric series drop
    ("1.0-x", "=", "1.0.0-x"),
    ("123456789-x", "<", "99999999-x"),  # pip's quirk: nine digits compare as text
    ("2013-01-21T20:33:09+0100", "<", "2013-01-21T20:33:10+0100"),
    ("0.3.2d", ">", "0.3.2d.dev"),
    ("3.0.0b3-", "<", "3.0.0b3-x"),
    ("-class.-jw.util.version.Version-", "<", "trunk"),
]


@pytest.mark.parametrize(("a", "op", "b"), LEGACY_FACTS)
def test_legacy_versions_order_like_pip_before_pep_440(a: str, op: str, b: str) -> None:
    expected = {"<": -1, "=": 0, ">": 1}[op]
    assert versions.compare("PyPI", a, b) == expected
    assert versions.compare("PyPI", b, a) == -expected
    assert not versions.is_canonical("PyPI", a)


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
def test_canonical_agrees_with_packaging(text: str) -> None:
    packaging_version = _packaging()
    try:
        packaging_version.Version(text)
    except packaging_version.InvalidVersion:
        expected = False
    else:
        expected = True
    assert versions.is_canonical("PyPI", text) is expected, text
    if not expected:  # a legacy version unless it has spaces or is empty
        legacy = bool(text) and " " not in text
        assert versions.is_valid("PyPI", text) is legacy, text


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
        assert versions.is_valid("PyPI", version), version
        try:
            packaging_version.Version(version)
        except packaging_version.InvalidVersion:
            assert not versions.is_canonical("PyPI", version), version
        else:
            assert versions.is_canonical("PyPI", version), version
            valid.append(version)
    ours = sorted(valid, key=versions.key_function("PyPI"))
    for a, b in itertools.pairwise(ours):
        assert sign(_packaging_cmp(a, b)) == versions.compare("PyPI", a, b), (a, b)
