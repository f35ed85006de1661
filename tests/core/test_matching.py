"""The advisory index: ecosystem scoping, source-package matching, explanations."""

from __future__ import annotations

import pytest

from patchwarden.core.errors import UnsupportedEcosystem
from patchwarden.core.matching import AdvisoryIndex, match_inventory
from patchwarden.core.model import InstalledPackage
from patchwarden.core.osv import Interval


def debian_index() -> AdvisoryIndex:
    index = AdvisoryIndex()
    index.add_interval(
        "DSA-5532-1", "Debian:12", "openssl", Interval("0", fixed="3.0.11-1~deb12u1")
    )
    index.add_interval("DLA-1-1", "Debian:11", "openssl", Interval("0", fixed="1.1.1w-0+deb11u1"))
    index.add_interval("DEBIAN-CVE-2024-1", "Debian:12", "openssl", Interval("0"), note="open")
    index.add_interval("OSV-ANY", "Debian", "openssl", Interval("3.0.0", fixed="3.0.12-1"))
    return index


def test_binary_matches_through_its_source_package() -> None:
    libssl = InstalledPackage(
        "libssl3", "3.0.9-1", "Debian:12", "amd64", source_name="openssl", source_version="3.0.9-1"
    )
    matches = {m.advisory_id: m for m in debian_index().match_package(libssl)}
    assert set(matches) == {"DSA-5532-1", "DEBIAN-CVE-2024-1", "OSV-ANY"}
    dsa = matches["DSA-5532-1"]
    assert dsa.name == "openssl"
    assert dsa.fixed_version == "3.0.11-1~deb12u1"
    assert "openssl 3.0.9-1 is in [introduced 0, fixed 3.0.11-1~deb12u1)" in dsa.why
    assert "DSA-5532-1" in dsa.why
    unfixed = matches["DEBIAN-CVE-2024-1"]
    assert unfixed.fixed_version is None
    assert "(open)" in unfixed.why


def test_release_scoped_advisories_do_not_leak_across_releases() -> None:
    bullseye = InstalledPackage("openssl", "1.1.1n-0+deb11u4", "Debian:11", source_name="openssl")
    found = {m.advisory_id for m in debian_index().match_package(bullseye)}
    assert found == {"DLA-1-1"}  # not the Debian:12 ones; OSV-ANY starts at 3.0.0


def test_fixed_host_is_not_matched() -> None:
    patched = InstalledPackage("openssl", "3.0.11-1~deb12u2", "Debian:12", source_name="openssl")
    found = {m.advisory_id for m in debian_index().match_package(patched)}
    assert found == {"DEBIAN-CVE-2024-1", "OSV-ANY"}  # DSA fixed; OSV-ANY fixes in 3.0.12-1


def test_binary_name_is_ignored_where_advisories_name_sources() -> None:
    index = AdvisoryIndex()
    index.add_interval("DSA-X", "Debian:12", "libssl3", Interval("0", fixed="9"))
    pkg = InstalledPackage("libssl3", "3.0.9-1", "Debian:12", source_name="openssl")
    assert index.match_package(pkg) == ()


def test_rpm_distros_match_binary_and_source_names() -> None:
    index = AdvisoryIndex()
    index.add_interval(
        "ALSA-1", "AlmaLinux:9", "openssl-libs", Interval("0", fixed="1:3.0.7-28.el9")
    )
    index.add_interval("RLSA-1", "Rocky Linux:9", "openssl", Interval("0", fixed="1:3.0.7-28.el9"))
    alma = InstalledPackage(
        "openssl-libs", "1:3.0.7-27.el9", "AlmaLinux:9", "x86_64", "openssl", "1:3.0.7-27.el9"
    )
    assert {m.advisory_id for m in index.match_package(alma)} == {"ALSA-1"}
    rocky = InstalledPackage(
        "openssl-libs", "1:3.0.7-27.el9", "Rocky Linux:9", "x86_64", "openssl", "1:3.0.7-27.el9"
    )
    assert {m.advisory_id for m in index.match_package(rocky)} == {"RLSA-1"}


def test_epoch_decides_before_version() -> None:
    index = AdvisoryIndex()
    index.add_interval("ALSA-2", "AlmaLinux:9", "bind", Interval("0", fixed="32:9.16.23-18.el9"))
    old = InstalledPackage("bind", "32:9.16.23-1.el9", "AlmaLinux:9")
    no_epoch = InstalledPackage("bind", "9.99-1.el9", "AlmaLinux:9")
    assert [m.advisory_id for m in index.match_package(old)] == ["ALSA-2"]
    assert [m.advisory_id for m in index.match_package(no_epoch)] == ["ALSA-2"]


def test_pypi_names_are_normalized() -> None:
    index = AdvisoryIndex()
    index.add_interval("PYSEC-1", "PyPI", "Jinja2", Interval("0", fixed="2.11.3"))
    for spelling in ("jinja2", "Jinja2", "JINJA2"):
        assert [m.advisory_id for m in index.match("PyPI", spelling, "2.10")] == ["PYSEC-1"]
    index.add_interval("PYSEC-2", "PyPI", "zope.interface", Interval("0", fixed="5.0"))
    assert [m.advisory_id for m in index.match("PyPI", "Zope_Interface", "4.0")] == ["PYSEC-2"]


def test_highest_fixed_version_wins_within_one_advisory() -> None:
    index = AdvisoryIndex()
    index.add_interval("GHSA-1", "PyPI", "pkg", Interval("0", fixed="1.5"))
    index.add_interval("GHSA-1", "PyPI", "pkg", Interval("0", fixed="2.0"))
    (match,) = index.match("PyPI", "pkg", "1.0")
    assert match.fixed_version == "2.0"


def test_listed_versions_match_exactly_and_catch_unparsable_versions() -> None:
    index = AdvisoryIndex()
    index.add_version("MAL-1", "npm", "evil-pkg", "0.0.1-evil")
    index.add_interval("GHSA-2", "npm", "weird", Interval("0", fixed="2.0.0"))
    index.add_version("GHSA-2", "npm", "weird", "banana")
    assert [m.advisory_id for m in index.match("npm", "evil-pkg", "0.0.1-evil")] == ["MAL-1"]
    assert index.match("npm", "evil-pkg", "0.0.2") == ()
    # "banana" is not SemVer: only the explicit list can match it.
    (match,) = index.match("npm", "weird", "banana")
    assert match.fixed_version is None
    assert "listed as an affected version" in match.why


def test_unknown_ecosystem_is_an_error_not_a_silent_miss() -> None:
    index = debian_index()
    with pytest.raises(UnsupportedEcosystem):
        index.match_package(InstalledPackage("x", "1", "Plan9"))
    matches, problems = match_inventory(
        index,
        [
            InstalledPackage("x", "1", "Plan9"),
            InstalledPackage("y", "1", "Plan9"),
            InstalledPackage("openssl", "3.0.9-1", "Debian:12", source_name="openssl"),
        ],
    )
    assert len(problems) == 1  # reported once per ecosystem
    assert "Plan9" in problems[0]
    assert len(matches) == 1


def test_index_reports_unparsable_interval_bounds() -> None:
    index = AdvisoryIndex()
    index.add_interval("BAD-1", "npm", "p", Interval("0", fixed="not-semver!"))
    index.add_interval("OK-1", "npm", "p", Interval("0", fixed="2.0.0"))
    assert [m.advisory_id for m in index.match("npm", "p", "1.0.0")] == ["OK-1"]
    assert len(index.problems) == 1
    assert "BAD-1" in index.problems[0]
    stats = index.stats()
    assert stats.names == 1
    assert stats.intervals == 2


def test_many_advisories_on_one_name_use_regions() -> None:
    """The kernel case: thousands of intervals on one name, each answered exactly."""
    index = AdvisoryIndex()
    for n in range(2000):
        index.add_interval(f"CVE-{n}", "Debian:12", "linux", Interval("0", fixed=f"6.1.{n}-1"))
    found = index.match("Debian:12", "linux", "6.1.1500-1")
    assert len(found) == 2000 - 1501
    assert {m.advisory_id for m in found} == {f"CVE-{n}" for n in range(1501, 2000)}


# --------------------------------------------- versions outside the canonical grammars


@pytest.mark.parametrize(
    ("ecosystem", "name", "fixed", "affected", "not_affected"),
    [
        # Real advisory data: Alpine secdb v3.11 (opensmtpd), PYSEC-2021-371 (binderhub).
        ("Alpine:v3.11", "opensmtpd", "6.6.2p1-r0", "6.6.1p1-r0", "6.6.2p2-r0"),
        ("Alpine:v3.11", "opensmtpd", "6.6.2p1-r0", "6.6.2p1-r", "6.6.2p1-r1"),
        # pip's legacy ordering, as OSV's own PyPI ordering: a legacy version sorts
        # below every PEP 440 one, so only legacy versions below the fix are affected.
        ("PyPI", "binderhub", "0.2.0-n653", "0.2.0-n1", "0.1.0"),
        ("AlmaLinux:9", "tool", "1.0-1", "1.0-", "1.0-1.el9"),  # an empty release
        ("npm", "pkg", "1.2.3.4", "1.2.3", "1.2.3.5"),  # a fourth number
        ("npm", "pkg", str(2**64) + ".0.0", str(2**53) + ".0.0", str(2**64) + ".0.1"),
        ("Debian:12", "pkg", "1.0-1", "0.9_beta-1", "1.0_beta-1"),  # dpkg only warns
    ],
)
def test_non_canonical_versions_are_matched_not_skipped(
    ecosystem: str, name: str, fixed: str, affected: str, not_affected: str
) -> None:
    index = AdvisoryIndex()
    index.add_interval("ADV-1", ecosystem, name, Interval("0", fixed=fixed))
    (match,) = index.match(ecosystem, name, affected)
    assert match.fixed_version == fixed
    assert f"{name} {affected} is in [introduced 0, fixed {fixed})" in match.why
    assert index.match(ecosystem, name, not_affected) == ()
    assert index.problems == []


def test_an_unorderable_installed_version_is_reported_with_its_reason() -> None:
    index = AdvisoryIndex()
    index.add_interval("ALPINE-1", "Alpine:v3.20", "musl", Interval("0", fixed="1.2.4-r1"))
    index.add_interval("ALPINE-2", "Alpine:v3.20", "musl", Interval("1.0", fixed="1.2.5-r0"))
    for _ in range(2):  # reported once, however often it is matched
        assert index.match("Alpine:v3.20", "musl", "unknown") == ()
    (problem,) = index.problems
    assert "musl 'unknown' (Alpine:v3.20): version cannot be ordered" in problem
    assert "does not start with a digit" in problem
    assert "ALPINE-1, ALPINE-2" in problem
    assert "only explicit version lists" in problem


def test_a_listed_match_of_an_unorderable_version_says_so() -> None:
    index = AdvisoryIndex()
    index.add_interval("GHSA-2", "npm", "weird", Interval("0", fixed="2.0.0"))
    index.add_version("GHSA-2", "npm", "weird", "banana")
    index.add_version("MAL-9", "npm", "weird", "banana")
    matches = {m.advisory_id: m for m in index.match("npm", "weird", "banana")}
    assert set(matches) == {"GHSA-2", "MAL-9"}
    for match in matches.values():
        assert "is listed as an affected version in" in match.why
        assert "its version cannot be ordered (does not start with a number)" in match.why
    (problem,) = index.problems
    assert "weird 'banana' (npm)" in problem
    assert "GHSA-2" in problem


def test_match_inventory_returns_unorderable_versions_as_problems() -> None:
    index = debian_index()
    _matches, problems = match_inventory(
        index,
        [
            InstalledPackage("openssl", "3.0.9-1", "Debian:12", source_name="openssl"),
            InstalledPackage("libssl3", "1.0 beta", "Debian:12", source_name="openssl"),
        ],
    )
    (problem,) = problems
    assert "openssl '1.0 beta' (Debian:12): version cannot be ordered" in problem
    assert "version string has embedded spaces" in problem
