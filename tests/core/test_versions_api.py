"""The public API of patchwarden.core.versions: ecosystems, errors, caching, purity."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from patchwarden.core import ecosystems, versions
from patchwarden.core.errors import InvalidVersion, UnsupportedEcosystem, ValidationFailed

# One typical version pair per scheme (a < b), and ecosystems with release suffixes.
SAMPLES = {
    "dpkg": ("3.0.11-1~deb12u2", "3.0.11-1"),
    "rpm": ("1:2.9.14-5.el9", "1:2.9.14-5.el9_4"),
    "apk": ("1.2.3_rc1-r2", "1.2.3-r0"),
    "pep440": ("2.31.0rc1", "2.31.0"),
    "semver": ("1.2.3-beta.1", "v1.2.3"),
}
ECOSYSTEMS = {
    "dpkg": ["Debian", "Debian:12", "Ubuntu", "Ubuntu:22.04:LTS", "Ubuntu:Pro:18.04:LTS"],
    "rpm": ["Red Hat", "AlmaLinux:9", "Rocky Linux:9", "openSUSE:Leap 15.5", "SUSE", "Fedora"],
    "apk": ["Alpine", "Alpine:v3.20"],
    "pep440": ["PyPI"],
    "semver": ["npm", "Go"],
}


@pytest.mark.parametrize("scheme", versions.SCHEMES)
def test_every_ecosystem_of_a_scheme_orders_alike(scheme: str) -> None:
    low, high = SAMPLES[scheme]
    keys = set()
    for ecosystem in ECOSYSTEMS[scheme]:
        assert ecosystems.info(ecosystem).scheme == scheme
        assert versions.compare(ecosystem, low, high) == -1
        assert versions.compare(ecosystem, high, low) == 1
        assert versions.compare(ecosystem, low, low) == 0
        assert versions.sort_key(ecosystem, low) < versions.sort_key(ecosystem, high)
        keys.add(versions.sort_key(ecosystem, low))
    assert len(keys) == 1  # one scheme, one key, whatever the release suffix


def test_every_known_ecosystem_has_an_ordering() -> None:
    for ecosystem in ecosystems.known():
        assert callable(versions.key_function(ecosystem))


@pytest.mark.parametrize("ecosystem", ["Gentoo", "debian", "", ":12", "Packagist", "crates.io"])
def test_unknown_ecosystem_is_reported(ecosystem: str) -> None:
    with pytest.raises(UnsupportedEcosystem) as raised:
        versions.compare(ecosystem, "1", "2")
    assert raised.value.ecosystem == ecosystem
    assert "Debian" in str(raised.value)  # the hint lists what is known
    with pytest.raises(UnsupportedEcosystem):
        versions.key_function(ecosystem)
    with pytest.raises(UnsupportedEcosystem):
        versions.is_valid(ecosystem, "1.0")


def test_invalid_version_names_ecosystem_version_and_reason() -> None:
    with pytest.raises(InvalidVersion) as raised:
        versions.sort_key("Ubuntu:22.04:LTS", "1.0 beta")
    error = raised.value
    assert isinstance(error, ValidationFailed)
    assert (error.ecosystem, error.version) == ("Ubuntu:22.04:LTS", "1.0 beta")
    assert error.reason == "version string has embedded spaces"
    assert "Ubuntu:22.04:LTS" in str(error)
    assert "1.0 beta" in str(error)


def test_compare_raises_for_either_side() -> None:
    # Only versions no rule can order raise; "1.0-1" is non-canonical but ordered.
    assert versions.compare("Alpine", "1.0", "1.0-1") == 1
    with pytest.raises(InvalidVersion):
        versions.compare("Alpine", "1.0", "")
    with pytest.raises(InvalidVersion):
        versions.compare("Alpine", "not-a-version", "1.0")


def test_invalid_outcomes_are_cached_and_raised_fresh() -> None:
    versions.cache_clear()
    key = versions.key_function("Debian")
    errors = []
    for _ in range(3):
        with pytest.raises(InvalidVersion) as raised:
            key("a:1")
        errors.append(raised.value)
    info = versions.cache_info()["dpkg"]
    assert (info.misses, info.hits) == (1, 2)  # parsed once
    assert errors[0] is not errors[1]  # a new exception each time: no growing traceback
    assert {e.reason for e in errors} == {"epoch in version is not number"}


def test_keys_are_cached_per_scheme_not_per_ecosystem() -> None:
    versions.cache_clear()
    versions.sort_key("Debian:12", "1.0-1")
    versions.sort_key("Ubuntu:24.04:LTS", "1.0-1")
    assert versions.cache_info()["dpkg"].hits == 1


def test_key_function_is_stable_and_described() -> None:
    key = versions.key_function("Alpine:v3.20")
    assert versions.key_function("Alpine:v3.20") is key
    assert key.__doc__ is not None
    assert "apk" in key.__doc__


@pytest.mark.parametrize(
    ("ecosystem", "version", "valid", "canonical"),
    [
        ("PyPI", "1.0.post1", True, True),
        ("PyPI", "1.0-foo", True, False),  # a legacy version: ordered, not PEP 440
        ("PyPI", "1.0 foo", False, False),
        ("npm", "1.0", True, False),  # 1.0.0
        ("npm", "banana", False, False),
        ("Debian", "1.0_1", True, False),  # dpkg only warns
        ("Debian", "1.0-", False, False),  # dpkg's error: empty revision
        ("Alpine", "1.2p1-r0", True, False),
        ("Red Hat", "1-", True, False),
        ("Red Hat", "", False, False),
    ],
)
def test_is_valid_and_is_canonical(
    ecosystem: str, version: str, valid: bool, canonical: bool
) -> None:
    assert versions.is_valid(ecosystem, version) is valid
    assert versions.is_canonical(ecosystem, version) is canonical


def test_is_canonical_refuses_unknown_ecosystems_and_non_strings() -> None:
    with pytest.raises(UnsupportedEcosystem):
        versions.is_canonical("Gentoo", "1.0")
    assert not versions.is_canonical("PyPI", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("ecosystem", ["Debian", "Red Hat", "Alpine", "PyPI", "npm"])
def test_osv_zero(ecosystem: str) -> None:
    # OSV's introduced "0" is handled by callers; it still parses everywhere (as 0.0.0
    # in SemVer) and sorts below the smallest real versions.
    assert versions.is_valid(ecosystem, "0")
    assert versions.compare(ecosystem, "0", "0.1") == -1


def test_non_string_versions_are_invalid_not_crashes() -> None:
    with pytest.raises(InvalidVersion, match="expected a string"):
        versions.sort_key("PyPI", 1)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", versions.SCHEMES)
def test_keys_are_compact_latin1_strings(scheme: str) -> None:
    for version in SAMPLES[scheme]:
        key = versions.sort_key(ECOSYSTEMS[scheme][0], version)
        assert type(key) is str
        assert key.encode("latin-1")


def test_sorting_a_mixed_list() -> None:
    unsorted = ["1.0-1", "1:0.9-1", "1.0~rc1-1", "1.0-1+deb12u1", "0.9-10", "1.0-1~bpo12+1"]
    expected = ["0.9-10", "1.0~rc1-1", "1.0-1~bpo12+1", "1.0-1", "1.0-1+deb12u1", "1:0.9-1"]
    assert sorted(unsorted, key=versions.key_function("Debian:12")) == expected


def test_rpmvercmp_is_exported() -> None:
    assert versions.rpmvercmp("1.0^git1", "1.0.1") == -1


# --- purity: the core computes, it does no I/O -----------------------------------------

PACKAGE = Path(versions.__file__).parent


@pytest.mark.parametrize("path", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_modules_import_only_the_stdlib_and_the_core(path: Path) -> None:
    forbidden = {"subprocess", "socket", "os", "shutil", "pathlib", "io", "tempfile"}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top == "patchwarden":
                assert name.startswith("patchwarden.core"), name
            else:
                assert top in sys.stdlib_module_names, name
                assert top not in forbidden, name
