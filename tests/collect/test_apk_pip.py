"""Alpine apk database and pip freeze parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from patchwarden.collect.apk import parse_apk_installed
from patchwarden.collect.pip import installed_python_packages, parse_pip_freeze
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
ALPINE = "syft-fixtures/syft/pkg/cataloger/alpine/testdata"


def test_apk_installed_db_with_origins() -> None:
    text = data_file(f"{ALPINE}/multiple-2/lib/apk/db/installed").read_text()
    parsed = parse_apk_installed(text, ecosystem="Alpine:v3.16")
    assert len(parsed.packages) == 14
    assert parsed.problems == ()
    packages = {p.name: p for p in parsed.packages}
    assert packages["libcrypto1.1"] == InstalledPackage(
        "libcrypto1.1", "1.1.1q-r0", "Alpine:v3.16", "x86_64", "openssl", "1.1.1q-r0"
    )
    assert packages["libc-utils"].source_name == "libc-dev"
    assert packages["ssl_client"].source_name == "busybox"
    assert {p.source_name for p in parsed.packages} >= {"musl", "apk-tools", "pax-utils"}


def test_apk_installed_db_with_file_records() -> None:
    """File entries (F:/R:/a:/Z:) repeat letters; the package fields stay the first ones."""
    parsed = parse_apk_installed(data_file(f"{ALPINE}/multiple-1/lib/apk/db/installed").read_text())
    assert [(p.name, p.version, p.source_name) for p in parsed.packages] == [
        ("bash", "5.2.21-r0", "bash"),
        ("busybox-binsh", "1.36.1-r15", "busybox"),
        ("musl", "1.2.4_git20230717-r4", "musl"),
        ("readline", "8.2.1-r2", "readline"),
    ]


def test_apk_records_without_name_or_version_are_problems() -> None:
    text = "P:zlib\nV:1.3.1-r0\nA:aarch64\n\nP:no-version\nA:x86_64\n\nV:1.0\nA:x86_64\n"
    parsed = parse_apk_installed(text, source="db")
    assert parsed.packages == (
        InstalledPackage("zlib", "1.3.1-r0", "", "aarch64", "zlib", "1.3.1-r0"),
    )
    assert parsed.problems == (
        "db:5: no-version: no V: (version) field; skipped",
        "db:8: record without a P: (package name) field",
    )


def test_apk_parser_rejects_other_formats() -> None:
    with pytest.raises(InventoryError, match=r"^f:1: not an apk installed database"):
        parse_apk_installed("openssl-3.0.7-27.el9.x86_64\n", source="f")


def test_pip_freeze() -> None:
    parsed = parse_pip_freeze((FIXTURES / "pip" / "freeze.txt").read_text(), source="req")
    assert [(p.name, p.version) for p in parsed.packages] == [
        ("certifi", "2024.2.2"),
        ("charset-normalizer", "3.3.2"),
        ("django", "4.2.11"),
        ("idna", "3.6"),
        ("pyyaml", "6.0.1"),
        ("requests", "2.31.0"),
        ("ruamel-yaml-clib", "0.2.8"),
        ("urllib3", "2.2.1"),
        ("zope-interface", "6.2"),
    ]
    assert {p.ecosystem for p in parsed.packages} == {"PyPI"}
    assert {(p.arch, p.source_name, p.source_version) for p in parsed.packages} == {("", "", "")}
    assert parsed.problems == (
        "req:5: editable install skipped (no released version): "
        "-e git+https://github.com/example/internal-lib.git@3f1c2a9#egg=internal_lib",
        "req:7: my_local_pkg: direct URL reference skipped (no released version)",
        "req:11: setuptools: not an exact pin (>=); skipped",
        "req:14: pip option skipped: -i https://pypi.example.org/simple",
        "req:15: not a 'name==version' line: 'this is not a requirement'",
    )


def test_pip_freeze_of_another_format_raises() -> None:
    with pytest.raises(InventoryError, match=r"^x:1: not pip freeze output"):
        parse_pip_freeze("Package: bash\nVersion: 5.2\n", source="x")


def test_installed_python_packages_lists_this_environment() -> None:
    parsed = installed_python_packages()
    names = {p.name: p for p in parsed.packages}
    # The test tooling itself is installed here, under PEP 503 names.
    assert names["pytest"].version == pytest.__version__
    assert names["pytest"].ecosystem == "PyPI"
    assert len(names) == len(parsed.packages)  # one entry per distribution name
    assert all(p.name == p.name.lower() and "_" not in p.name for p in parsed.packages)
