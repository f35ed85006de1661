"""dpkg status and dpkg-query parsing, against real status files and edge-case fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchwarden.collect.dpkg import dpkg_version_problem, parse_dpkg_query, parse_dpkg_status
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures" / "dpkg"
SYFT_DPKG = "syft-fixtures/syft/pkg/cataloger/debian/testdata"


def by_name_arch(packages: tuple[InstalledPackage, ...]) -> dict[tuple[str, str], InstalledPackage]:
    return {(p.name, p.arch): p for p in packages}


# ------------------------------------------------------------------ real status files


def test_this_machine_status_file_has_743_installed_packages() -> None:
    parsed = parse_dpkg_status(
        data_file("local-dpkg/var_lib_dpkg_status").read_text(), ecosystem="Debian:12"
    )
    assert len(parsed.packages) == 743
    assert parsed.problems == ()
    packages = by_name_arch(parsed.packages)
    # binNMU: the source version lacks the +bN suffix of the binary.
    assert packages[("bash", "amd64")] == InstalledPackage(
        "bash", "5.2.15-2+b8", "Debian:12", "amd64", "bash", "5.2.15-2"
    )
    # Different-source package with its own source version.
    assert packages[("cpp", "amd64")] == InstalledPackage(
        "cpp", "4:12.2.0-3", "Debian:12", "amd64", "gcc-defaults", "1.203"
    )
    # No Source field: the package is its own source at the binary version.
    assert packages[("adduser", "all")] == InstalledPackage(
        "adduser", "3.134", "Debian:12", "all", "adduser", "3.134"
    )
    assert sum(1 for p in parsed.packages if p.arch == "all") == 151


def test_status_file_and_dpkg_query_capture_of_this_machine_agree_exactly() -> None:
    """Two independent captures of the same dpkg database (status file and
    dpkg-query TSV, same minute) must give identical packages, source fields included."""
    status = parse_dpkg_status(data_file("local-dpkg/var_lib_dpkg_status").read_text())
    query = parse_dpkg_query(data_file("local-dpkg/this-machine.tsv").read_text())
    assert len(query.packages) == 743
    assert query.problems == ()
    assert set(status.packages) == set(query.packages)


def test_trivy_ubuntu_bionic_status_skips_config_files_package() -> None:
    parsed = parse_dpkg_status(data_file("trivy-fixtures/valid__var_lib_dpkg_status").read_text())
    assert len(parsed.packages) == 90  # 91 stanzas, git is "deinstall ok config-files"
    assert parsed.problems == ()
    packages = by_name_arch(parsed.packages)
    assert ("git", "amd64") not in packages
    assert packages[("fdisk", "amd64")] == InstalledPackage(
        "fdisk", "2.31.1-0.4ubuntu3.1", "", "amd64", "util-linux", "2.31.1-0.4ubuntu3.1"
    )
    assert packages[("liblzma5", "amd64")].source_name == "xz-utils"
    assert packages[("liblzma5", "amd64")].source_version == "5.1.1alpha+20120614-2"
    assert packages[("libgcc1", "amd64")].version == "1:8-20180414-1ubuntu2"
    assert packages[("libgcc1", "amd64")].source_version == "8-20180414-1ubuntu2"


def test_trivy_corrupted_status_keeps_the_four_good_packages_and_reports_the_rest() -> None:
    parsed = parse_dpkg_status(
        data_file("trivy-fixtures/corrupsed__var_lib_dpkg_status").read_text(),
        source="corrupted",
    )
    assert sorted(p.name for p in parsed.packages) == [
        "libgcc1",
        "libpam-modules-bin",
        "libpam-runtime",
        "makedev",
    ]
    assert parsed.problems == (
        "corrupted:63: brokenPackageWithNoVersionThatShouldGetThrownOut: no Status field; skipped",
        "corrupted:85: invalidpkg: no Status field; skipped",
    )
    gcc = by_name_arch(parsed.packages)[("libgcc1", "amd64")]
    assert (gcc.version, gcc.source_name, gcc.source_version) == (
        "1:5.1.1-12ubuntu1",
        "gcc-5",
        "5.1.1-12ubuntu1",
    )
    makedev = by_name_arch(parsed.packages)[("makedev", "all")]
    assert (makedev.source_name, makedev.source_version) == ("makedev", "2.3.1-93ubuntu1")


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("trivy-fixtures/only-apt__var_lib_dpkg_status", {("apt", "1.6.3ubuntu0.1")}),
        (
            "trivy-fixtures/third-party__var_lib_dpkg_status",
            {("docker-ce", "5:20.10.7~3-0~debian-buster"), ("apt", "1.6.3ubuntu0.1")},
        ),
        ("trivy-fixtures/md5sums__var_lib_dpkg_status", {("tar", "1.29b-2")}),
        (
            "trivy-fixtures/digest__var_lib_dpkg_status",
            {("sed", "4.4-2"), ("tar", "1.34+dfsg-1")},
        ),
        (f"{SYFT_DPKG}/image-dpkg/var/lib/dpkg/status", {("libpam-runtime", "1.1.8-3.6")}),
        (f"{SYFT_DPKG}/var/lib/dpkg/status.d/single", {("apt", "1.8.2")}),
        (f"{SYFT_DPKG}/var/lib/dpkg/status.d/installed-size-4KB", {("apt", "1.8.2")}),
        (
            "syft-fixtures/cmd/syft/internal/test/integration/testdata/image-pkg-coverage/"
            "pkgs/var/lib/dpkg/status",
            {("apt", "1.8.2")},
        ),
        (
            f"{SYFT_DPKG}/var/lib/dpkg/status.d/deinstall",
            {("linux-image-6.14.0-1012-aws", "6.14.0-1012.12~24.04.1")},
        ),
        (
            f"{SYFT_DPKG}/var/lib/dpkg/status.d/multiple",
            {("tzdata", "2020a-0+deb10u1"), ("util-linux", "2.33.1-0.1")},
        ),
        (
            f"{SYFT_DPKG}/image-distroless-deb/var/lib/dpkg/status.d/libsqlite3-0",
            {("libsqlite3-0", "3.34.1-3")},
        ),
    ],
)
def test_small_real_status_files(relative: str, expected: set[tuple[str, str]]) -> None:
    parsed = parse_dpkg_status(data_file(relative).read_text())
    assert {(p.name, p.version) for p in parsed.packages} == expected


def test_syft_relationships_file_reads_nine_arm64_packages() -> None:
    parsed = parse_dpkg_status(
        data_file(f"{SYFT_DPKG}/var/lib/dpkg/status.d/coreutils-relationships").read_text()
    )
    assert len(parsed.packages) == 9
    assert {p.arch for p in parsed.packages} == {"arm64"}
    libc = by_name_arch(parsed.packages)[("libc6", "arm64")]
    assert (libc.source_name, libc.source_version) == ("glibc", "2.36-9+deb12u1")


def test_distroless_status_d_without_status_fields_counts_stanzas_as_installed() -> None:
    dash = data_file(
        "syft-fixtures/cmd/syft/internal/test/integration/testdata/image-pkg-coverage/"
        "pkgs/var/lib/dpkg/status.d/dash"
    )
    parsed = parse_dpkg_status(dash.read_text())
    assert parsed.packages == (
        InstalledPackage("dash", "0.5.8-2.4", "", "amd64", "dash", "0.5.8-2.4"),
    )


def test_syft_doc_examples_reports_stanzas_without_version() -> None:
    parsed = parse_dpkg_status(
        data_file(f"{SYFT_DPKG}/var/lib/dpkg/status.d/doc-examples").read_text(), source="d"
    )
    assert [p.name for p in parsed.packages] == [
        "mutt",
        "made-up-package-1",
        "made-up-package-2",
        "made-up-package-3",
        "made-up-package-4",
    ]
    assert by_name_arch(parsed.packages)[("made-up-package-1", "")].source_name == "glibc"
    # made-up-package-5 and ten "Package: x" stubs have no Version.
    assert len(parsed.problems) == 11
    assert "d:25: made-up-package-5: no Version field; skipped" in parsed.problems


def test_opkg_status_flags_are_not_dpkg_installed_states() -> None:
    """opkg writes "install user installed"; dpkg never does, so nothing is taken and
    every stanza says why."""
    parsed = parse_dpkg_status(
        data_file(
            "syft-fixtures/syft/pkg/cataloger/debian/testdata/var/lib/opkg/status"
        ).read_text()
    )
    assert parsed.packages == ()
    assert len(parsed.problems) == 3
    assert all("'install user installed'" in problem for problem in parsed.problems)


@pytest.mark.parametrize("name", ["corrupt", "empty"])
def test_syft_files_that_are_not_status_files_raise_naming_file_and_line(name: str) -> None:
    path = data_file(f"{SYFT_DPKG}/var/lib/dpkg/status.d/{name}")
    with pytest.raises(InventoryError, match=r"^x:\d+: not a dpkg status file") as caught:
        parse_dpkg_status(path.read_text(), source="x")
    assert caught.value.source == "x"
    assert caught.value.line is not None


# -------------------------------------------------------------- edge-case fixtures


def test_status_edge_cases() -> None:
    parsed = parse_dpkg_status(
        (FIXTURES / "status-edge-cases").read_text(), ecosystem="Debian:12", source="edge"
    )
    packages = by_name_arch(parsed.packages)
    assert set(packages) == {
        ("libc6", "amd64"),
        ("libc6", "i386"),
        ("bash", "amd64"),
        ("weird-version", "all"),
        ("lower-case-fields", "arm64"),
        ("tzdata", "all"),
    }
    assert packages[("libc6", "i386")].source_name == "glibc"
    assert packages[("bash", "amd64")] == InstalledPackage(
        "bash", "5.2.15-2+b2", "Debian:12", "amd64", "bash", "5.2.15-2"
    )
    assert packages[("lower-case-fields", "arm64")].source_name == "upstream-thing"
    assert packages[("tzdata", "all")].source_name == "tzdata"
    assert parsed.problems == (
        "edge:37: half-done: Status 'install ok unpacked' is not 'install ok installed' "
        "or 'hold ok installed'; skipped",
        "edge:44: weird-version: '1.0#beta-1' is not a valid dpkg version "
        "(invalid character in version)",
        "edge:49: spaced-version: '1.0 beta' is not a valid dpkg version "
        "(invalid character in version)",
        "edge:46: 'spaced-version': version '1.0 beta' is empty or contains whitespace or "
        "control characters; skipped",
        "edge:56: not a 'Field: value' line: 'this line has no colon at all'",
        "edge:62: tzdata: malformed Source 'tzdata ('; using the package",
    )


def test_crlf_line_ends_and_byte_order_mark_are_accepted() -> None:
    text = "\ufeffPackage: a\r\nStatus: install ok installed\r\nVersion: 1.0-1\r\n\r\n"
    parsed = parse_dpkg_status(text)
    assert parsed.packages == (InstalledPackage("a", "1.0-1", "", "", "a", "1.0-1"),)


def test_exact_duplicate_stanza_is_reported_once() -> None:
    stanza = "Package: a\nStatus: install ok installed\nVersion: 1\n\n"
    parsed = parse_dpkg_status(stanza + stanza, source="s")
    assert len(parsed.packages) == 1
    assert parsed.problems == ("s:5: a 1 repeats line 1; ignored",)


def test_status_with_only_removed_packages_is_an_empty_inventory() -> None:
    parsed = parse_dpkg_status("Package: a\nStatus: purge ok not-installed\nVersion: 1\n")
    assert parsed == parsed.__class__((), ())


@pytest.mark.parametrize(
    ("version", "problem"),
    [
        ("1.0-1", ""),
        ("1:2.3~rc1+dfsg-4ubuntu0.1", ""),
        ("2024a", ""),
        ("a1.0", ""),  # dpkg only warns about a missing leading digit
        ("", "empty version"),
        ("x:1.0", "epoch is not a number"),
        ("1:", "nothing after the epoch colon"),
        ("1.0-", "empty revision after '-'"),
        ("1.0-a_b", "invalid character in revision"),
        ("1.0#1", "invalid character in version"),
        ("-1", "empty upstream version"),
    ],
)
def test_dpkg_version_problem(version: str, problem: str) -> None:
    assert dpkg_version_problem(version) == problem


# --------------------------------------------------------------------- dpkg-query


def test_dpkg_query_six_columns_keeps_ii_and_hi_only() -> None:
    parsed = parse_dpkg_query(
        (FIXTURES / "query-six-columns.tsv").read_text(), ecosystem="Debian:12", source="q"
    )
    assert {(p.name, p.arch) for p in parsed.packages} == {
        ("adduser", "all"),
        ("libc6", "amd64"),
        ("libc6", "i386"),
        ("bash", "amd64"),
        ("libssl3", "amd64"),
    }
    assert by_name_arch(parsed.packages)[("libssl3", "amd64")] == InstalledPackage(
        "libssl3", "3.0.13-1~deb12u1", "Debian:12", "amd64", "openssl", "3.0.13-1~deb12u1"
    )
    assert parsed.problems == (
        "q:6: half-done: status 'iU' (install/unpacked) is not an installed package; skipped",
        "q:7: broken: status 'iiR' (install/installed, reinstall required) is not an "
        "installed package; skipped",
        "q:8: removing: status 'ri' (deinstall/installed) is not an installed package; skipped",
        "q:9: expected 2, 3, 5 or 6 tab-separated columns, found 4",
    )


def test_plain_dpkg_query_w_output_splits_arch_and_notes_missing_source() -> None:
    parsed = parse_dpkg_query("libc6:amd64\t2.36-9\nadduser\t3.134\n", source="w")
    assert parsed.packages == (
        InstalledPackage("libc6", "2.36-9", "", "amd64"),
        InstalledPackage("adduser", "3.134", "", ""),
    )
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("w: no source package columns")


def test_dpkg_query_rejects_text_that_is_not_tab_separated() -> None:
    with pytest.raises(InventoryError, match=r"^out:1: not dpkg-query output"):
        parse_dpkg_query("dpkg-query: no packages found matching foo\n", source="out")
