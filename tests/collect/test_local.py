"""The local collector: on this very machine, on fake roots, and on a real rpm database."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from patchwarden.collect.dpkg import parse_dpkg_status
from patchwarden.collect.jsonfmt import inventory_from_json, inventory_to_json
from patchwarden.collect.local import (
    KernelPackage,
    collect_local,
    kernel_reboot_required,
    parse_kernel_rows,
    run_tool,
)
from patchwarden.collect.parsing import UTC
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"


def this_machine_is_debian() -> bool:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return "ID=debian" in text and shutil.which("dpkg-query") is not None


needs_debian = pytest.mark.skipif(
    not this_machine_is_debian(), reason="needs a Debian host with dpkg-query"
)


# ------------------------------------------------------------------- this machine


@needs_debian
def test_collect_local_on_this_debian_12_machine() -> None:
    before = datetime.now(UTC)
    inventory = collect_local()
    assert inventory.os is not None
    assert inventory.os.id == "debian"
    assert inventory.os.ecosystem == "Debian:12"
    assert inventory.os.family == "debian"
    assert inventory.hostname == socket.gethostname()
    assert inventory.kernel == os.uname().release
    assert inventory.arch == os.uname().machine
    assert inventory.source == "local"
    assert inventory.reboot_required == (
        Path("/run/reboot-required").exists() or Path("/var/run/reboot-required").exists()
    )
    assert inventory.collected_at is not None
    assert before <= inventory.collected_at <= datetime.now(UTC) + timedelta(seconds=1)
    assert {p.ecosystem for p in inventory.packages} == {"Debian:12"}

    # Oracle 1: what dpkg-query itself lists as installed (ii / hi).
    listed = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    installed = {
        tuple(row.split("\t")[:3]) for row in listed if row.split("\t")[3].strip() in ("ii", "hi")
    }
    assert {(p.name, p.version, p.arch) for p in inventory.packages} == installed
    # Oracle 2: the status database read directly gives the same packages, sources included.
    status = parse_dpkg_status(Path("/var/lib/dpkg/status").read_text(), ecosystem="Debian:12")
    assert set(status.packages) == set(inventory.packages)
    assert len(inventory.packages) == len(set(inventory.packages))
    # What the agent would upload is accepted and identical.
    assert inventory_from_json(inventory_to_json(inventory)) == inventory


@needs_debian
def test_include_python_adds_this_interpreters_distributions() -> None:
    inventory = collect_local(include_python=True)
    python = {p.name: p for p in inventory.packages if p.ecosystem == "PyPI"}
    assert python["pytest"].version == pytest.__version__
    assert python["hypothesis"].ecosystem == "PyPI"
    assert len(inventory.packages) > len(python)


# ---------------------------------------------------------------------- fake roots


def make_root(tmp_path: Path, os_release: str | None, files: dict[str, str | Path]) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    if os_release is not None:
        (root / "etc").mkdir()
        shutil.copy(FIXTURES / "os-release" / os_release, root / "etc" / "os-release")
    for relative, content in files.items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Path):
            shutil.copy(content, target)
        else:
            target.write_text(content)
    return root


def test_fake_ubuntu_root_reads_the_status_file(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        "ubuntu-22.04",
        {
            "var/lib/dpkg/status": FIXTURES / "dpkg" / "status-edge-cases",
            "run/reboot-required": "*** System restart required ***\n",
            "etc/hostname": "jammy-box\n",
        },
    )
    inventory = collect_local(root=root)
    assert inventory.os is not None
    assert inventory.os.ecosystem == "Ubuntu:22.04:LTS"
    assert inventory.hostname == "jammy-box"
    assert inventory.reboot_required is True
    assert (inventory.kernel, inventory.arch) == ("", "")
    assert len(inventory.packages) == 6
    assert {p.ecosystem for p in inventory.packages} == {"Ubuntu:22.04:LTS"}
    assert any(
        problem.endswith(
            "half-done: Status 'install ok unpacked' is not "
            "'install ok installed' or 'hold ok installed'; skipped"
        )
        for problem in inventory.problems
    )


def test_fake_distroless_root_reads_status_d_and_reports_a_corrupt_entry(tmp_path: Path) -> None:
    syft = "syft-fixtures/syft/pkg/cataloger/debian/testdata/var/lib/dpkg/status.d"
    root = make_root(
        tmp_path,
        None,
        {
            "var/lib/dpkg/status.d/libsqlite3-0": data_file(
                "syft-fixtures/syft/pkg/cataloger/debian/testdata/image-distroless-deb/"
                "var/lib/dpkg/status.d/libsqlite3-0"
            ),
            "var/lib/dpkg/status.d/coreutils": data_file(f"{syft}/coreutils-relationships"),
            "var/lib/dpkg/status.d/corrupt": data_file(f"{syft}/corrupt"),
        },
    )
    inventory = collect_local(root=root)
    assert inventory.os is None
    assert inventory.hostname == "root"
    assert len(inventory.packages) == 10
    assert InstalledPackage("libsqlite3-0", "3.34.1-3", "", "arm64", "sqlite3", "3.34.1-3") in (
        inventory.packages
    )
    assert inventory.problems[0] == f"{root}: no etc/os-release or usr/lib/os-release; OS unknown"
    assert any(
        "corrupt:5: not a dpkg status file: not a 'Field: value' line" in p
        for p in inventory.problems
    )


def test_fake_alpine_root(tmp_path: Path) -> None:
    root = make_root(
        tmp_path,
        "alpine-3.20.3",
        {
            "lib/apk/db/installed": data_file(
                "syft-fixtures/syft/pkg/cataloger/alpine/testdata/multiple-1/lib/apk/db/installed"
            )
        },
    )
    inventory = collect_local(root=root)
    assert inventory.os is not None
    assert inventory.os.ecosystem == "Alpine:v3.20"
    assert [p.name for p in inventory.packages] == ["bash", "busybox-binsh", "musl", "readline"]
    assert inventory.reboot_required is False


def test_unmapped_os_release_is_reported_and_packages_still_read(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, "linuxmint-21.3", {"var/lib/dpkg/status": FIXTURES / "dpkg" / "status-edge-cases"}
    )
    inventory = collect_local(root=root)
    assert inventory.os is not None
    assert inventory.os.ecosystem == ""
    assert {p.ecosystem for p in inventory.packages} == {""}
    assert "ID='linuxmint'" in inventory.problems[0]


def test_root_without_any_package_database_raises(tmp_path: Path) -> None:
    root = make_root(tmp_path, "arch", {})
    with pytest.raises(InventoryError, match="cannot tell this system's package manager") as caught:
        collect_local(root=root)
    assert caught.value.source == str(root)


def test_debian_root_without_status_file_raises(tmp_path: Path) -> None:
    root = make_root(tmp_path, "debian-11", {})
    with pytest.raises(InventoryError, match="no var/lib/dpkg/status"):
        collect_local(root=root)


# -------------------------------------------------------------- a real rpm database

DEMO_SPEC = """\
Name: demo-tool
Epoch: 3
Version: 1.2.3
Release: 4.el9
Summary: patchwarden test package
License: MIT
BuildArch: noarch
%description
demo
%package libs
Summary: demo libraries
%description libs
demo libs
%files
%files libs
"""


@pytest.mark.skipif(
    shutil.which("rpmbuild") is None or shutil.which("rpm") is None,
    reason="needs rpm and rpmbuild to build a real rpm database",
)
def test_rpm_root_is_read_through_rpm_itself(tmp_path: Path) -> None:
    top = tmp_path / "build"
    spec = tmp_path / "demo.spec"
    spec.write_text(DEMO_SPEC)
    subprocess.run(
        ["rpmbuild", "--define", f"_topdir {top}", "-bb", str(spec)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    rpms = sorted(str(p) for p in (top / "RPMS" / "noarch").glob("*.rpm"))
    assert len(rpms) == 2
    root = make_root(tmp_path, "almalinux-9.4", {})
    rpm_root = ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm"]
    subprocess.run([*rpm_root, "--initdb"], check=True, capture_output=True, timeout=60)
    subprocess.run(
        [*rpm_root, "-i", "--nodeps", "--justdb", "--noscripts", *rpms],
        check=True,
        capture_output=True,
        timeout=60,
    )
    inventory = collect_local(root=root)
    assert inventory.os is not None
    assert inventory.os.ecosystem == "AlmaLinux:9"
    assert sorted(inventory.packages, key=lambda p: p.name) == [
        InstalledPackage(
            "demo-tool", "3:1.2.3-4.el9", "AlmaLinux:9", "noarch", "demo-tool", "3:1.2.3-4.el9"
        ),
        InstalledPackage(
            "demo-tool-libs",
            "3:1.2.3-4.el9",
            "AlmaLinux:9",
            "noarch",
            "demo-tool",
            "3:1.2.3-4.el9",
        ),
    ]
    assert inventory.problems == ()


@pytest.mark.skipif(
    shutil.which("rpm") is None, reason="needs rpm: the collector asks it where its database is"
)
def test_rpm_root_without_database_raises(tmp_path: Path) -> None:
    root = make_root(tmp_path, "rocky-9.3", {})
    with pytest.raises(InventoryError, match="no rpm database"):
        collect_local(root=root)


# ------------------------------------------------------------------ kernel / tools

RHEL = [
    KernelPackage(1700000000, "kernel-core", "5.14.0", "362.8.1.el9_3", "x86_64"),
    KernelPackage(1700000000, "kernel", "5.14.0", "362.8.1.el9_3", "x86_64"),
]
RHEL_UPDATED = [
    *RHEL,
    KernelPackage(1710000000, "kernel-core", "5.14.0", "427.13.1.el9_4", "x86_64"),
]


@pytest.mark.parametrize(
    ("running", "kernels", "required"),
    [
        ("5.14.0-362.8.1.el9_3.x86_64", RHEL, False),
        ("5.14.0-362.8.1.el9_3.x86_64", RHEL_UPDATED, True),
        ("5.14.0-427.13.1.el9_4.x86_64", RHEL_UPDATED, False),
        ("5.14.0-427.13.1.el9_4.x86_64+debug", RHEL_UPDATED, False),
        (
            "5.15.0-200.131.27.el9uek.x86_64",
            [KernelPackage(1, "kernel-uek", "5.15.0", "200.131.27.el9uek", "x86_64")],
            False,
        ),
        (
            "5.14.21-150500.55.39-default",
            [KernelPackage(1, "kernel-default", "5.14.21", "150500.55.39.1", "x86_64")],
            False,
        ),
        (
            "5.14.21-150500.55.39-default",
            [
                KernelPackage(1, "kernel-default", "5.14.21", "150500.55.39.1", "x86_64"),
                KernelPackage(2, "kernel-default", "5.14.21", "150500.55.44.1", "x86_64"),
            ],
            True,
        ),
        ("6.1.0-18-amd64", [], False),
    ],
)
def test_kernel_reboot_required(running: str, kernels: list[KernelPackage], required: bool) -> None:
    assert kernel_reboot_required(running, kernels) is required


def test_parse_kernel_rows_ignores_junk() -> None:
    rows = "1700000000\tkernel-core\t5.14.0\t362.el9\tx86_64\nnot a row\n"
    assert parse_kernel_rows(rows) == [
        KernelPackage(1700000000, "kernel-core", "5.14.0", "362.el9", "x86_64")
    ]


def test_run_tool_failures_become_inventory_errors() -> None:
    with pytest.raises(InventoryError, match="is not installed or not on PATH"):
        run_tool(["patchwarden-no-such-tool"], 5)
    with pytest.raises(InventoryError, match="exited with status 1"):
        run_tool(["false"], 5)
    with pytest.raises(InventoryError, match=r"did not finish within 0\.2 seconds"):
        run_tool(["sleep", "5"], 0.2)
    assert run_tool(["printf", "a\\tb"], 5) == "a\tb"
