"""rpm -qa / rpm -qa --qf parsing, checked against 15 real container images and edge cases."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from patchwarden.collect.rpm import (
    Nevra,
    format_evr,
    parse_nevra,
    parse_rpm_qa,
    parse_rpm_qf,
    parse_source_rpm,
)
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures" / "rpm"

# Image list and package counts from rpm-inventories/INDEX.tsv; gpg-pubkey entries
# (imported signing keys, not software) are left out of the inventories.
IMAGES = {
    "CentOS5Plain": (110, 0),
    "CentOS6DevTools": (263, 1),
    "CentOS6Many": (44, 0),
    "CentOS6Plain": (129, 0),
    "CentOS7DevTools": (264, 1),
    "CentOS7Httpd24": (225, 3),
    "CentOS7Many": (396, 1),
    "CentOS7Plain": (144, 0),
    "CentOS7Python35": (344, 2),
    "CentOS8Modularitylabel": (518, 1),
    "Fedora35PlusMongoDBWithSQLite3": (142, 1),
    "Fedora35WithSQLite3": (138, 1),
    "Rockylinux9WithSQLite3": (142, 0),
    "SLE15WithNDB": (35, 0),
    "UBI8s390x": (183, 2),
}


def csv_rows(image: str) -> list[dict[str, str]]:
    path = data_file(f"rpm-inventories/go-rpmdb_{image}.csv")
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def expected_packages(image: str, *, with_source: bool) -> set[InstalledPackage]:
    """The inventory the CSV (the rpmdb query results) says the image has."""
    expected = set()
    for row in csv_rows(image):
        if row["name"] == "gpg-pubkey":
            continue
        epoch = int(row["epoch"] or 0)
        source_name = source_version = ""
        if with_source and row["sourcerpm"]:
            source_name, version, release = parse_source_rpm(row["sourcerpm"])
            source_version = format_evr(epoch, version, release)
        expected.add(
            InstalledPackage(
                row["name"],
                format_evr(epoch, row["version"], row["release"]),
                "",
                row["arch"],
                source_name,
                source_version,
            )
        )
    return expected


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_rpm_qa_nevra_lines_of_real_images_match_the_rpmdb(image: str) -> None:
    total, keys = IMAGES[image]
    assert len(csv_rows(image)) == total
    text = data_file(f"rpm-inventories/go-rpmdb_{image}.rpm-qa.txt").read_text()
    parsed = parse_rpm_qa(text)
    assert len(parsed.packages) == total - keys
    assert set(parsed.packages) == expected_packages(image, with_source=False)


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_rpm_qf_rows_of_real_images_match_the_rpmdb_with_sources(image: str) -> None:
    """The same rpmdb rows rendered as the documented --qf columns."""
    lines = [
        "\t".join(
            (
                row["name"],
                row["epoch"] or "(none)",
                row["version"],
                row["release"],
                row["arch"] or "(none)",
                row["sourcerpm"] or "(none)",
            )
        )
        for row in csv_rows(image)
    ]
    parsed = parse_rpm_qf("\n".join(lines) + "\n")
    assert parsed.problems == ()
    assert set(parsed.packages) == expected_packages(image, with_source=True)


def test_rocky_9_openssl_libs_carries_its_epoch_in_version_and_source() -> None:
    text = data_file("rpm-inventories/go-rpmdb_Rockylinux9WithSQLite3.rpm-qa.txt").read_text()
    packages = {p.name: p for p in parse_rpm_qa(text, ecosystem="Rocky Linux:9").packages}
    assert packages["openssl-libs"] == InstalledPackage(
        "openssl-libs", "1:3.0.7-24.el9", "Rocky Linux:9", "aarch64"
    )
    assert packages["libstdc++"].version == "11.4.1-2.1.el9"


def test_rpm_qa_without_any_epoch_warns_that_epochs_may_be_missing() -> None:
    text = data_file("rpm-inventories/go-rpmdb_SLE15WithNDB.rpm-qa.txt").read_text()
    parsed = parse_rpm_qa(text, source="sle")
    assert len(parsed.packages) == 35
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("sle: no package shows an epoch")
    with_epochs = parse_rpm_qa("bash-5.1-1.x86_64\nvim-minimal-2:9.0-1.x86_64\n")
    assert with_epochs.problems == ()


def test_mariner_rpmdb_dump_with_header_row() -> None:
    parsed = parse_rpm_qf(data_file("rpm-inventories/cbl-mariner-2.0_rpmdb-dump.tsv").read_text())
    assert len(parsed.packages) == 129
    assert parsed.problems == ()
    packages = {p.name: p for p in parsed.packages}
    assert packages["openssl-libs"] == InstalledPackage(
        "openssl-libs", "1.1.1k-7.cm2", "", "x86_64", "openssl", "1.1.1k-7.cm2"
    )
    assert packages["ca-certificates-base"] == InstalledPackage(
        "ca-certificates-base", "1:2.0.0-1.cm2", "", "noarch", "ca-certificates", "1:2.0.0-1.cm2"
    )


def test_azure_linux_container_manifest() -> None:
    text = data_file("trivy-fixtures/mariner-azurelinux_container-manifest-2.tsv").read_text()
    parsed = parse_rpm_qf(text, ecosystem="")
    assert parsed.packages == (
        InstalledPackage(
            "mariner-release", "2.0-12.cm2", "", "noarch", "mariner-release", "2.0-12.cm2"
        ),
        InstalledPackage("filesystem", "1.1-9.cm2", "", "x86_64", "filesystem", "1.1-9.cm2"),
        InstalledPackage("glibc", "2.35-2.cm2", "", "x86_64", "glibc", "2.35-2.cm2"),
        InstalledPackage(
            "ca-certificates-base",
            "1:3.0.0-8.azl3",
            "",
            "noarch",
            "ca-certificates",
            "1:3.0.0-8.azl3",
        ),
    )


def test_qf_edge_cases() -> None:
    parsed = parse_rpm_qf(
        (FIXTURES / "qf-edge-cases.tsv").read_text(), ecosystem="AlmaLinux:9", source="qf"
    )
    assert parsed.packages == (
        InstalledPackage(
            "openssl-libs", "1:3.0.7-27.el9", "AlmaLinux:9", "x86_64", "openssl", "1:3.0.7-27.el9"
        ),
        InstalledPackage(
            "glibc", "2.34-100.el9_4.2", "AlmaLinux:9", "x86_64", "glibc", "2.34-100.el9_4.2"
        ),
        InstalledPackage(
            "python3-dnf-plugin-versionlock",
            "4.3.0-13.el9",
            "AlmaLinux:9",
            "noarch",
            "dnf-plugins-core",
            "4.3.0-13.el9",
        ),
        InstalledPackage(
            "libstdc++", "11.4.1-3.el9", "AlmaLinux:9", "x86_64", "gcc", "11.4.1-3.el9"
        ),
        InstalledPackage(
            "kernel-core",
            "5.14.0-427.13.1.el9_4",
            "AlmaLinux:9",
            "x86_64",
            "kernel",
            "5.14.0-427.13.1.el9_4",
        ),
        InstalledPackage("odd-source", "1.0-1", "AlmaLinux:9", "x86_64"),
    )
    assert parsed.problems == (
        "qf:7: expected 6 tab-separated columns, found 3",
        "qf:8: 0xdeadbeef: epoch 'x' is not a number",
        "qf:9: odd-source: source rpm ignored: 'not-a-source-rpm' does not end in .src.rpm",
    )


def test_qf_first_line_of_another_shape_is_not_rpm_output() -> None:
    with pytest.raises(InventoryError, match=r"^f:1: not rpm -qa --qf output: 3 tab-separated"):
        parse_rpm_qf("a\tb\tc\n", source="f")


def test_rpm_qa_on_a_dpkg_status_file_raises_at_its_first_line() -> None:
    with pytest.raises(InventoryError, match=r"^s:1: not rpm -qa output"):
        parse_rpm_qa("Package: bash\nStatus: install ok installed\n", source="s")


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("openssl-libs-3.0.7-27.el9.x86_64", ("openssl-libs", 0, "3.0.7", "27.el9", "x86_64")),
        ("openssl-libs-1:3.0.7-27.el9.x86_64", ("openssl-libs", 1, "3.0.7", "27.el9", "x86_64")),
        ("1:openssl-libs-3.0.7-27.el9.x86_64", ("openssl-libs", 1, "3.0.7", "27.el9", "x86_64")),
        ("1:openssl-libs-1:3.0.7-27.el9.x86_64", ("openssl-libs", 1, "3.0.7", "27.el9", "x86_64")),
        (
            "NetworkManager-1:1.46.0-8.el9.x86_64",
            ("NetworkManager", 1, "1.46.0", "8.el9", "x86_64"),
        ),
        (
            "vim-minimal-2:8.2.2637-20.el9_1.s390x",
            ("vim-minimal", 2, "8.2.2637", "20.el9_1", "s390x"),
        ),
        (
            "compat-openssl10-1.0.2o-4.el8.i686",
            ("compat-openssl10", 0, "1.0.2o", "4.el8", "i686"),
        ),
        (
            "python3.11-pip-wheel-22.3.1-4.el9.noarch",
            ("python3.11-pip-wheel", 0, "22.3.1", "4.el9", "noarch"),
        ),
        (
            "kernel-headers-2.6.18-419.el5.x86_64",
            ("kernel-headers", 0, "2.6.18", "419.el5", "x86_64"),
        ),
        (
            "perl-IO-Socket-SSL-2.066-4.module_el8.5.0+1047+e4d3d42b.noarch",
            ("perl-IO-Socket-SSL", 0, "2.066", "4.module_el8.5.0+1047+e4d3d42b", "noarch"),
        ),
        ("tzdata-2024a-1.el9.noarch", ("tzdata", 0, "2024a", "1.el9", "noarch")),
        ("libgcc-11.4.1-3.el9.aarch64", ("libgcc", 0, "11.4.1", "3.el9", "aarch64")),
        ("foo-1.0-1.el9", ("foo", 0, "1.0", "1.el9", "")),  # no arch: el9 is release
        ("foo-1.0-1.el9.(none)", ("foo", 0, "1.0", "1.el9", "")),
        ("gpg-pubkey-fd431d51-4ae0493b", ("gpg-pubkey", 0, "fd431d51", "4ae0493b", "")),
        ("gpg-pubkey-fd431d51-4ae0493b.", ("gpg-pubkey", 0, "fd431d51", "4ae0493b", "")),
        ("libfoo-0:2.0-3.x86_64", ("libfoo", 0, "2.0", "3", "x86_64")),
        (
            "dracut-057-53.git20240104.el9.x86_64",
            ("dracut", 0, "057", "53.git20240104.el9", "x86_64"),
        ),
    ],
)
def test_parse_nevra(label: str, expected: tuple[str, int, str, str, str]) -> None:
    nevra = parse_nevra(label)
    assert (nevra.name, nevra.epoch, nevra.version, nevra.release, nevra.arch) == expected


def test_explicit_zero_epoch_is_given_but_not_written() -> None:
    nevra = parse_nevra("libfoo-0:2.0-3.x86_64")
    assert nevra.epoch_given
    assert nevra.evr == "2.0-3"
    assert Nevra("a", 3, "1", "2").evr == "3:1-2"


@pytest.mark.parametrize(
    ("label", "reason"),
    [
        ("", "empty or contains whitespace"),
        ("openssl", "expected name-version-release"),
        ("openssl-3.0.7.x86_64", "expected name-version-release"),
        ("-1.0-1.x86_64", "expected name-version-release"),
        ("foo bar-1-1.x86_64", "empty or contains whitespace"),
        ("1:openssl-2:3.0.7-1.x86_64", "two different epochs"),
        ("foo-a:1.0-1.x86_64", "epoch 'a' is not a number"),
        ("foo-1.0-1#2.x86_64", "invalid release '1#2'"),
        ("foo/bar-1.0-1.x86_64", "invalid package name 'foo/bar'"),
    ],
)
def test_parse_nevra_rejects(label: str, reason: str) -> None:
    with pytest.raises(ValueError, match="^" + reason.replace("(", r"\(")):
        parse_nevra(label)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("openssl-3.0.7-27.el9.src.rpm", ("openssl", "3.0.7", "27.el9")),
        ("dnf-plugins-core-4.3.0-13.el9.src.rpm", ("dnf-plugins-core", "4.3.0", "13.el9")),
        ("kernel-5.14.0-427.13.1.el9_4.nosrc.rpm", ("kernel", "5.14.0", "427.13.1.el9_4")),
    ],
)
def test_parse_source_rpm(filename: str, expected: tuple[str, str, str]) -> None:
    assert parse_source_rpm(filename) == expected


@pytest.mark.parametrize("filename", ["openssl-3.0.7.src.rpm", "openssl-3.0.7-27.el9.rpm", ""])
def test_parse_source_rpm_rejects(filename: str) -> None:
    with pytest.raises(ValueError, match=r"src\.rpm"):
        parse_source_rpm(filename)
