"""os-release to OsInfo and the exact OSV ecosystem, for many distributions."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchwarden.collect.osrelease import (
    os_info_for_ecosystem,
    parse_os_release,
    parse_os_release_fields,
    read_os_release,
)
from patchwarden.core import ecosystems
from patchwarden.core.errors import UnsupportedEcosystem
from patchwarden.core.model import OsInfo
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures" / "os-release"

# fixture file -> (ID, VERSION_ID, ecosystem, family)
CASES = {
    "debian-11": ("debian", "11", "Debian:11", "debian"),
    "debian-testing-trixie": ("debian", "", "Debian:13", "debian"),
    "debian-testing-no-codename": ("debian", "", "Debian:12", "debian"),
    "ubuntu-22.04": ("ubuntu", "22.04", "Ubuntu:22.04:LTS", "debian"),
    "ubuntu-23.10": ("ubuntu", "23.10", "Ubuntu:23.10", "debian"),
    "ubuntu-24.04": ("ubuntu", "24.04", "Ubuntu:24.04:LTS", "debian"),
    "almalinux-9.4": ("almalinux", "9.4", "AlmaLinux:9", "rpm"),
    "rocky-9.3": ("rocky", "9.3", "Rocky Linux:9", "rpm"),
    "rocky-8.9": ("rocky", "8.9", "Rocky Linux:8", "rpm"),
    "rhel-9.3": ("rhel", "9.3", "Red Hat:enterprise_linux:9::baseos", "rpm"),
    "rhel-7.9": ("rhel", "7.9", "Red Hat:enterprise_linux:7.9:GA:server", "rpm"),
    "centos-7": ("centos", "7", "CentOS:7", "rpm"),
    "centos-stream-9": ("centos", "9", "CentOS:9", "rpm"),
    "fedora-40": ("fedora", "40", "Fedora:40", "rpm"),
    "oracle-9.3": ("ol", "9.3", "Oracle:9", "rpm"),
    "sles-15-sp5": ("sles", "15.5", "SUSE:Linux Enterprise Server 15 SP5", "rpm"),
    "opensuse-leap-15.5": ("opensuse-leap", "15.5", "openSUSE:Leap 15.5", "rpm"),
    "opensuse-tumbleweed": ("opensuse-tumbleweed", "20240321", "openSUSE:Tumbleweed", "rpm"),
    "alpine-3.20.3": ("alpine", "3.20.3", "Alpine:v3.20", "alpine"),
}

# fixture file -> (family, words the reason must contain)
UNMAPPED = {
    "debian-unknown-codename": ("debian", "'zeppelin'"),
    "rhel-no-cpe": ("rpm", "CPE_NAME"),
    "alpine-edge": ("alpine", "3.21.0_alpha20240807"),
    "amzn-2023": ("rpm", "ID='amzn'"),
    "linuxmint-21.3": ("debian", "ID='linuxmint'"),
    "arch": ("", "ID='arch'"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_known_distributions(name: str) -> None:
    os_id, version_id, ecosystem, family = CASES[name]
    release = read_os_release((FIXTURES / name).read_text())
    info = release.info
    assert (info.id, info.version_id, info.ecosystem, info.family) == (
        os_id,
        version_id,
        ecosystem,
        family,
    )
    assert release.reason == ""
    # Every ecosystem produced is one the matcher knows, with a release suffix.
    assert ecosystems.is_supported(info.ecosystem)
    assert ecosystems.split(info.ecosystem)[1]
    assert ecosystems.info(info.ecosystem).family == family


@pytest.mark.parametrize("name", sorted(UNMAPPED))
def test_unmapped_distributions_explain_why(name: str) -> None:
    family, words = UNMAPPED[name]
    release = read_os_release((FIXTURES / name).read_text())
    assert release.info.ecosystem == ""
    assert release.info.family == family
    assert words in release.reason
    assert "--ecosystem" in release.reason or "expected" in release.reason


def test_this_machines_os_release_is_debian_12() -> None:
    info = parse_os_release(data_file("local-dpkg/os-release").read_text())
    assert info == OsInfo(
        id="debian",
        version_id="12",
        name="Debian GNU/Linux",
        pretty_name="Debian GNU/Linux 12 (bookworm)",
        codename="bookworm",
        ecosystem="Debian:12",
        family="debian",
    )


def test_ubuntu_fields_and_codename() -> None:
    info = parse_os_release((FIXTURES / "ubuntu-22.04").read_text())
    assert info.codename == "jammy"
    assert info.pretty_name == "Ubuntu 22.04.4 LTS"
    assert info.name == "Ubuntu"


def test_testing_codename_comes_from_pretty_name_when_missing() -> None:
    info = parse_os_release((FIXTURES / "debian-testing-no-codename").read_text())
    assert info.codename == "bookworm"


def test_field_syntax_quotes_escapes_comments_and_garbage() -> None:
    text = (
        "# a comment\n"
        'NAME="Example \\"Quoted\\" OS"\n'
        "ID=example\n"
        "VERSION='1.0 (single quoted)'\n"
        "BROKEN LINE WITHOUT EQUALS\n"
        'UNBALANCED="oops\n'
        "  PADDED=yes  \n"
        "EMPTY=\n"
    )
    assert parse_os_release_fields(text) == {
        "NAME": 'Example "Quoted" OS',
        "ID": "example",
        "VERSION": "1.0 (single quoted)",
        "UNBALANCED": "oops",
        "PADDED": "yes",
        "EMPTY": "",
    }


def test_missing_id_defaults_to_linux_as_os_release_5_says() -> None:
    release = read_os_release('NAME="Something"\n')
    assert release.info.id == "linux"
    assert release.info.ecosystem == ""
    assert "ID='linux'" in release.reason


def test_ubuntu_lts_falls_back_to_pretty_name_when_version_is_absent() -> None:
    text = 'ID=ubuntu\nVERSION_ID="20.04"\nPRETTY_NAME="Ubuntu 20.04.6 LTS"\n'
    assert parse_os_release(text).ecosystem == "Ubuntu:20.04:LTS"


@pytest.mark.parametrize(
    ("ecosystem", "expected"),
    [
        ("Debian:12", OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")),
        (
            "Ubuntu:22.04:LTS",
            OsInfo(id="ubuntu", version_id="22.04", ecosystem="Ubuntu:22.04:LTS", family="debian"),
        ),
        (
            "AlmaLinux:9",
            OsInfo(id="almalinux", version_id="9", ecosystem="AlmaLinux:9", family="rpm"),
        ),
        (
            "Rocky Linux:8",
            OsInfo(id="rocky", version_id="8", ecosystem="Rocky Linux:8", family="rpm"),
        ),
        (
            "Alpine:v3.20",
            OsInfo(id="alpine", version_id="3.20", ecosystem="Alpine:v3.20", family="alpine"),
        ),
        (
            "SUSE:Linux Enterprise Server 15 SP5",
            OsInfo(id="sles", ecosystem="SUSE:Linux Enterprise Server 15 SP5", family="rpm"),
        ),
    ],
)
def test_os_info_for_ecosystem(ecosystem: str, expected: OsInfo) -> None:
    assert os_info_for_ecosystem(ecosystem) == expected


def test_os_info_for_unknown_ecosystem_raises() -> None:
    with pytest.raises(UnsupportedEcosystem):
        os_info_for_ecosystem("Plan9:4")
