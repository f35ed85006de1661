"""Inventory files: format detection and loading with --ecosystem / --hostname."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchwarden.collect.files import (
    FORMATS,
    detect_inventory_format,
    inventory_from_text,
    load_inventory_file,
)
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage, OsInfo
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("relative", "fmt"),
    [
        ("local-dpkg/var_lib_dpkg_status", "dpkg-status"),
        ("trivy-fixtures/corrupsed__var_lib_dpkg_status", "dpkg-status"),
        (
            "syft-fixtures/cmd/syft/internal/test/integration/testdata/image-pkg-coverage/"
            "pkgs/var/lib/dpkg/status.d/netbase",
            "dpkg-status",
        ),
        ("local-dpkg/this-machine.tsv", "dpkg-query"),
        ("rpm-inventories/go-rpmdb_CentOS7Plain.rpm-qa.txt", "rpm-qa"),
        ("rpm-inventories/cbl-mariner-2.0_rpmdb-dump.tsv", "rpm-qf"),
        ("trivy-fixtures/mariner-azurelinux_container-manifest-2.tsv", "rpm-qf"),
        (
            "syft-fixtures/syft/pkg/cataloger/alpine/testdata/multiple-2/lib/apk/db/installed",
            "apk-installed",
        ),
    ],
)
def test_detects_real_files(relative: str, fmt: str) -> None:
    assert detect_inventory_format(data_file(relative).read_text()) == fmt


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("dpkg/status-edge-cases", "dpkg-status"),
        ("dpkg/query-six-columns.tsv", "dpkg-query"),
        ("rpm/qf-edge-cases.tsv", "rpm-qf"),
        ("pip/freeze.txt", "pip-freeze"),
        ("json/web-01.json", "json"),
    ],
)
def test_detects_fixtures(name: str, fmt: str) -> None:
    assert detect_inventory_format((FIXTURES / name).read_text()) == fmt


@pytest.mark.parametrize(
    ("text", "fmt"),
    [
        ("C:Q1abc=\nP:musl\nV:1.2.5-r0\n", "apk-installed"),
        ("libc6:amd64\t2.36-9\n", "dpkg-query"),
        ("-e git+https://example.org/x.git#egg=x\n", "pip-freeze"),
        ("requests @ https://example.org/requests.whl\n", "pip-freeze"),
        ("  \n# just pinned\nDjango==4.2\n", "pip-freeze"),
        ("gpg-pubkey-fd431d51-4ae0493b\nbash-5.1.8-9.el9.x86_64\n", "rpm-qa"),
        ("1:openssl-3.0.7-27.el9.x86_64\n", "rpm-qa"),
        ("NAME\tVERSION\tRELEASE\nbash\t5.1.8\t9.el9\n", "rpm-qf"),
        # A numeric second column alone does not make it rpm: dpkg status column wins.
        ("tzdata\t2024\tall\ttzdata\t2024\tii \n", "dpkg-query"),
    ],
)
def test_detects_line_shapes(text: str, fmt: str) -> None:
    assert detect_inventory_format(text) == fmt


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty inventory"),
        (" \n\t\n", "empty inventory"),
        ("# nothing here\n", "inventory holds only comments"),
        ("Pakij: apt\nStratus: ok\n", "unrecognized inventory format"),
        ("hello world\n", "unrecognized inventory format"),
    ],
)
def test_unknown_or_empty_text_lists_supported_formats(text: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message) as caught:
        detect_inventory_format(text, source="in.txt")
    assert caught.value.source == "in.txt"
    assert caught.value.hint is not None
    for fmt in FORMATS:
        assert fmt in caught.value.hint


def test_rpm_file_with_ecosystem() -> None:
    path = data_file("rpm-inventories/go-rpmdb_Rockylinux9WithSQLite3.rpm-qa.txt")
    inventory = load_inventory_file(path, ecosystem="Rocky Linux:9", hostname="rocky-01")
    assert inventory.hostname == "rocky-01"
    assert inventory.os == OsInfo(
        id="rocky", version_id="9", ecosystem="Rocky Linux:9", family="rpm"
    )
    assert len(inventory.packages) == 142
    assert {p.ecosystem for p in inventory.packages} == {"Rocky Linux:9"}
    assert inventory.source == "file"
    assert inventory.problems == ()


def test_dpkg_file_without_ecosystem_says_how_to_fix_it() -> None:
    path = data_file("trivy-fixtures/valid__var_lib_dpkg_status")
    inventory = load_inventory_file(path)
    assert inventory.os is None
    assert inventory.hostname == "valid__var_lib_dpkg_status"
    assert {p.ecosystem for p in inventory.packages} == {""}
    assert len(inventory.problems) == 1
    assert "pass --ecosystem (e.g. --ecosystem Debian:12)" in inventory.problems[0]
    assert inventory.problems[0].startswith(str(path))


def test_this_machine_tsv_as_debian_12() -> None:
    inventory = load_inventory_file(
        data_file("local-dpkg/this-machine.tsv"), ecosystem="Debian:12", hostname="builder"
    )
    assert len(inventory.packages) == 743
    assert inventory.os is not None
    assert inventory.os.family == "debian"
    openssl = [p for p in inventory.packages if p.name == "openssl"]
    assert openssl == [
        InstalledPackage(
            "openssl", "3.0.19-1~deb12u2", "Debian:12", "amd64", "openssl", "3.0.19-1~deb12u2"
        )
    ]


def test_apk_file_with_alpine_ecosystem() -> None:
    path = data_file(
        "syft-fixtures/syft/pkg/cataloger/alpine/testdata/multiple-2/lib/apk/db/installed"
    )
    inventory = load_inventory_file(path, ecosystem="Alpine:v3.16", hostname="a")
    assert len(inventory.packages) == 14
    assert inventory.os is not None
    assert (inventory.os.id, inventory.os.version_id) == ("alpine", "3.16")


def test_pip_freeze_is_always_pypi() -> None:
    inventory = load_inventory_file(FIXTURES / "pip" / "freeze.txt", hostname="venv")
    assert {p.ecosystem for p in inventory.packages} == {"PyPI"}
    assert inventory.os is None
    assert load_inventory_file(FIXTURES / "pip" / "freeze.txt", ecosystem="PyPI").packages
    with pytest.raises(InventoryError, match="always in the PyPI ecosystem"):
        load_inventory_file(FIXTURES / "pip" / "freeze.txt", ecosystem="Debian:12")


@pytest.mark.parametrize(
    ("ecosystem", "message"),
    [
        ("AlmaLinux:9", "'AlmaLinux:9' is not a debian ecosystem"),
        ("Plan9:4", "unsupported ecosystem 'Plan9:4'"),
        ("Debian", "names no release"),
        ("PyPI", "not an operating system ecosystem"),
    ],
)
def test_wrong_ecosystem_for_a_dpkg_file(ecosystem: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        load_inventory_file(FIXTURES / "dpkg" / "query-six-columns.tsv", ecosystem=ecosystem)


def test_json_file_keeps_its_own_host_and_os() -> None:
    inventory = load_inventory_file(FIXTURES / "json" / "web-01.json")
    assert inventory.hostname == "web-01.example.org"
    assert inventory.source == "agent"
    assert inventory.os is not None
    assert inventory.os.ecosystem == "Debian:12"


def test_json_file_overrides_move_only_os_packages() -> None:
    inventory = load_inventory_file(
        FIXTURES / "json" / "web-01.json", ecosystem="Debian:13", hostname="renamed"
    )
    assert inventory.hostname == "renamed"
    assert inventory.os is not None
    assert (inventory.os.ecosystem, inventory.os.codename) == ("Debian:13", "bookworm")
    assert [p.ecosystem for p in inventory.packages] == ["Debian:13", "Debian:13", "PyPI"]
    with pytest.raises(InventoryError, match="not a debian ecosystem"):
        load_inventory_file(FIXTURES / "json" / "web-01.json", ecosystem="Alpine:v3.20")


def test_json_without_os_gets_one_from_the_ecosystem(tmp_path: Path) -> None:
    document = {
        "format": "patchwarden-inventory/1",
        "hostname": "h",
        "packages": [{"name": "zlib", "version": "1.3.1-r0"}],
    }
    path = tmp_path / "h.json"
    path.write_text(json.dumps(document))
    inventory = load_inventory_file(path, ecosystem="Alpine:v3.20")
    assert inventory.os is not None
    assert inventory.os.family == "alpine"
    assert inventory.packages == (InstalledPackage("zlib", "1.3.1-r0", "Alpine:v3.20"),)


def test_invalid_json_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"format": "patchwarden-inventory/1", "hostname": "h", "packages": [{}]}')
    with pytest.raises(InventoryError, match=r"packages\[0\]\.name: missing") as caught:
        load_inventory_file(path)
    assert caught.value.source == str(path)


def test_unreadable_empty_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="cannot read") as caught:
        load_inventory_file(tmp_path / "missing.txt")
    assert caught.value.source == str(tmp_path / "missing.txt")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(InventoryError, match="empty inventory"):
        load_inventory_file(empty)
    binary = tmp_path / "Packages"
    binary.write_bytes(b"\x00\x00\x00\x01SQLite format 3\x00")
    with pytest.raises(InventoryError, match="binary file") as caught:
        load_inventory_file(binary)
    assert caught.value.hint is not None
    assert "rpm -qa --qf" in caught.value.hint


def test_not_utf8_bytes_do_not_make_the_file_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "status"
    path.write_bytes(
        b"Package: a\nStatus: install ok installed\nVersion: 1.0\nMaintainer: J\xf6rg\n"
    )
    inventory = load_inventory_file(path, ecosystem="Debian:12")
    assert inventory.packages == (InstalledPackage("a", "1.0", "Debian:12", "", "a", "1.0"),)


def test_inventory_from_text_with_explicit_format_and_no_hostname() -> None:
    with pytest.raises(InventoryError, match="needs a hostname"):
        inventory_from_text("bash-5.1-1.x86_64\n", hostname="", fmt="rpm-qa")
    with pytest.raises(InventoryError, match="unknown inventory format 'yaml'"):
        inventory_from_text("x", hostname="h", fmt="yaml")
    inventory = inventory_from_text(
        "bash-5.1-1.x86_64\n", hostname="h", fmt="rpm-qa", ecosystem="AlmaLinux:9"
    )
    assert inventory.packages == (InstalledPackage("bash", "5.1-1", "AlmaLinux:9", "x86_64"),)


def test_a_dpkg_md5sums_file_is_not_an_inventory() -> None:
    path = data_file("trivy-fixtures/md5sums__var_lib_dpkg_info_tar.md5sums")
    with pytest.raises(InventoryError, match="unrecognized inventory format") as caught:
        load_inventory_file(path, ecosystem="Debian:12")
    assert (caught.value.source, caught.value.line) == (str(path), 1)
