"""Inventory of the host patchwarden runs on (or of an OS tree mounted at ``root``).

What is read, by package family (from /etc/os-release, else from which database exists):

* debian: ``dpkg-query -W -f <DPKG_QUERY_FORMAT>``; under another ``root``, the files
  ``var/lib/dpkg/status`` and ``var/lib/dpkg/status.d/*`` (distroless images).
* rpm: ``rpm -qa --qf <RPM_QF_FORMAT>``; under another ``root``,
  ``rpm --root ROOT --dbpath <db> -qa ...`` (rpm reads the tree's own database).
* alpine: the file ``lib/apk/db/installed``.

Reboot required: Debian/Ubuntu write ``/run/reboot-required`` (``/var/run`` is the
legacy path); on rpm systems a reboot is needed when the running kernel is not the most
recently installed kernel package (matched on version-release, see
``kernel_reboot_required``); Alpine has no such signal and reports ``False``.

Tools run with a fixed argv (never a shell), ``LC_ALL=C`` and a timeout; any failure
becomes an ``InventoryError``. The hostname is ``socket.gethostname()``: no DNS lookup
happens during collection, so an unreachable resolver cannot stall the agent.

Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from patchwarden.collect.apk import APK_INSTALLED_PATH, parse_apk_installed
from patchwarden.collect.dpkg import DPKG_QUERY_ARGV, parse_dpkg_query, parse_dpkg_status
from patchwarden.collect.osrelease import OsRelease, read_os_release
from patchwarden.collect.parsing import UTC, ParsedPackages, numbered_lines
from patchwarden.collect.pip import installed_python_packages
from patchwarden.collect.rpm import RPM_QF_FORMAT, parse_rpm_qf
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage, Inventory

DEFAULT_TIMEOUT = 120.0
OS_RELEASE_PATHS = ("etc/os-release", "usr/lib/os-release")
DPKG_STATUS_PATH = "var/lib/dpkg/status"
DPKG_STATUS_DIR = "var/lib/dpkg/status.d"
RPM_DB_PATHS = ("var/lib/rpm", "usr/lib/sysimage/rpm")
REBOOT_FLAG_PATHS = ("run/reboot-required", "var/run/reboot-required")

# Packages that hold a bootable kernel, across RHEL/Fedora (kernel, kernel-core),
# Oracle UEK, SUSE flavours and real-time kernels.
KERNEL_PACKAGES = (
    "kernel",
    "kernel-core",
    "kernel-uek",
    "kernel-uek-core",
    "kernel-rt",
    "kernel-rt-core",
    "kernel-default",
    "kernel-azure",
)
# The kernel query ``parse_kernel_rows`` reads (also run remotely by collect.ssh).
KERNEL_QF = "%{INSTALLTIME}\\t%{NAME}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\n"


@dataclass(frozen=True)
class KernelPackage:
    """An installed kernel package and when it was installed (seconds since the epoch)."""

    installtime: int
    name: str
    version: str
    release: str
    arch: str = ""


def collect_local(
    *,
    root: Path = Path("/"),
    include_python: bool = False,
    timeout: float = DEFAULT_TIMEOUT,
) -> Inventory:
    """Collect this host's inventory (or that of the OS tree at ``root``).

    ``include_python`` adds the distributions importable by the running interpreter as
    PyPI packages. With ``root`` other than ``/`` the kernel and arch are left empty
    (the tree is not running) and the hostname comes from ``<root>/etc/hostname``, else
    the directory name. Raises ``InventoryError`` when no package database is found or
    a tool fails.
    """
    root = Path(root)
    live = root.resolve() == Path("/").resolve()
    problems: list[str] = []
    found = _read_os_release(root)
    os_info = found[1].info if found is not None else None
    if found is None:
        problems.append(f"{root}: no etc/os-release or usr/lib/os-release; OS unknown")
    elif found[1].reason:
        problems.append(f"{found[0]}: {found[1].reason}")
    family = (os_info.family if os_info is not None else "") or _family_from_files(root)
    ecosystem = os_info.ecosystem if os_info is not None else ""
    kernel = os.uname().release if live else ""
    reboot_required = False
    if family == "debian":
        parsed = _dpkg_packages(root, live, ecosystem, timeout)
        reboot_required = any((root / flag).exists() for flag in REBOOT_FLAG_PATHS)
    elif family == "rpm":
        parsed = _rpm_packages(root, live, ecosystem, timeout)
        if live:
            kernels = _rpm_kernels(_rpm_base_argv(root, live, timeout), timeout)
            reboot_required = kernel_reboot_required(kernel, kernels)
    elif family == "alpine":
        parsed = _apk_packages(root, ecosystem)
    else:
        raise InventoryError(
            "cannot tell this system's package manager: os-release names no known family "
            "and no dpkg, rpm or apk database was found",
            source=str(root),
            hint="supported: dpkg (Debian, Ubuntu), rpm (RHEL family, Fedora, SUSE), apk (Alpine)",
        )
    packages: list[InstalledPackage] = list(parsed.packages)
    problems.extend(parsed.problems)
    if include_python:
        python = installed_python_packages()
        packages.extend(python.packages)
        problems.extend(python.problems)
    return Inventory(
        hostname=socket.gethostname() if live else _tree_hostname(root),
        packages=tuple(packages),
        os=os_info,
        kernel=kernel,
        arch=os.uname().machine if live else "",
        reboot_required=reboot_required,
        collected_at=datetime.now(UTC),
        source="local",
        problems=tuple(problems),
    )


def kernel_reboot_required(running: str, kernels: Sequence[KernelPackage]) -> bool:
    """Whether the running kernel (``uname -r``) is not the newest installed kernel.

    "Newest" is the most recently installed kernel package, the one the boot loader
    defaults to after an update. The release string is matched on version-release:
    RHEL-style ``5.14.0-362.8.1.el9_3.x86_64`` (arch suffix and ``+debug`` variants
    allowed) and SUSE-style ``5.14.21-150500.55.39-default`` for a package release
    ``150500.55.39.1``. With no kernel package installed (containers) nothing can be
    told, and the answer is ``False``.
    """
    if not kernels:
        return False
    newest = max(kernels, key=lambda kernel: (kernel.installtime, kernel.version, kernel.release))
    return not _kernel_matches(running, newest)


def _kernel_matches(running: str, kernel: KernelPackage) -> bool:
    version_release = f"{kernel.version}-{kernel.release}"
    current = running.split("+", 1)[0]
    if kernel.arch and current.endswith("." + kernel.arch):
        current = current[: -len(kernel.arch) - 1]
    if current == version_release:
        return True
    base, dash, flavour = current.rpartition("-")
    return (
        bool(dash)
        and flavour.isalpha()
        and (version_release == base or version_release.startswith(base + "."))
    )


def _read_os_release(root: Path) -> tuple[Path, OsRelease] | None:
    """The first os-release file found under ``root`` (os-release(5) order), parsed."""
    for relative in OS_RELEASE_PATHS:
        path = root / relative
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise InventoryError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
        return path, read_os_release(text)
    return None


def _family_from_files(root: Path) -> str:
    if (root / DPKG_STATUS_PATH).exists() or (root / DPKG_STATUS_DIR).is_dir():
        return "debian"
    if (root / APK_INSTALLED_PATH).exists():
        return "alpine"
    if any((root / path).is_dir() for path in RPM_DB_PATHS):
        return "rpm"
    return ""


def _tree_hostname(root: Path) -> str:
    try:
        name = (root / "etc/hostname").read_text(encoding="utf-8").strip()
    except OSError:
        name = ""
    return name.split()[0] if name else (root.resolve().name or "localhost")


def run_tool(argv: Sequence[str], timeout: float) -> str:
    """Run a tool with a fixed argv and return its stdout; failures raise InventoryError."""
    env = {"LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except FileNotFoundError as exc:
        raise InventoryError(f"{argv[0]} is not installed or not on PATH") from exc
    except subprocess.TimeoutExpired as exc:
        raise InventoryError(f"{argv[0]} did not finish within {timeout:g} seconds") from exc
    except OSError as exc:
        raise InventoryError(f"cannot run {argv[0]}: {exc.strerror or exc}") from exc
    stdout = done.stdout.decode("utf-8", errors="replace")
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", errors="replace").strip().splitlines()
        detail = stderr[-1] if stderr else "no error output"
        raise InventoryError(f"{argv[0]} exited with status {done.returncode}: {detail}")
    return stdout


def _dpkg_packages(root: Path, live: bool, ecosystem: str, timeout: float) -> ParsedPackages:
    if live:
        output = run_tool(DPKG_QUERY_ARGV, timeout)
        return parse_dpkg_query(output, ecosystem=ecosystem, source="dpkg-query")
    files = []
    status = root / DPKG_STATUS_PATH
    if status.exists():
        files.append(status)
    status_dir = root / DPKG_STATUS_DIR
    if status_dir.is_dir():
        files.extend(sorted(path for path in status_dir.iterdir() if path.is_file()))
    if not files:
        raise InventoryError(
            f"no {DPKG_STATUS_PATH} or {DPKG_STATUS_DIR}/ under this root", source=str(root)
        )
    packages: list[InstalledPackage] = []
    problems: list[str] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InventoryError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
        if not text.strip():
            continue
        try:
            parsed = parse_dpkg_status(text, ecosystem=ecosystem, source=str(path))
        except InventoryError as exc:
            # One unreadable status.d entry must not hide the others.
            if path == status:
                raise
            problems.append(str(exc))
            continue
        packages.extend(parsed.packages)
        problems.extend(parsed.problems)
    return ParsedPackages(tuple(packages), tuple(problems))


def _rpm_base_argv(root: Path, live: bool, timeout: float = DEFAULT_TIMEOUT) -> list[str]:
    if live:
        return ["rpm"]
    # The distribution's own locations first, then this host's rpm default (e.g. a dnf
    # --installroot made on Debian, whose rpm keeps its database in ~/.rpmdb). The
    # directory must exist: rpm would silently create an empty database in the tree.
    candidates = list(RPM_DB_PATHS)
    configured = run_tool(["rpm", "--eval", "%_dbpath"], timeout).strip().lstrip("/")
    if configured and configured not in candidates:
        candidates.append(configured)
    for relative in candidates:
        if (root / relative).is_dir():
            return ["rpm", "--root", str(root), "--dbpath", "/" + relative]
    raise InventoryError(
        f"no rpm database under {root} (looked in {', '.join(candidates)})",
        source=str(root),
        hint="point --root at an installed rpm-based tree, or collect on the host itself",
    )


def _rpm_packages(root: Path, live: bool, ecosystem: str, timeout: float) -> ParsedPackages:
    output = run_tool([*_rpm_base_argv(root, live, timeout), "-qa", "--qf", RPM_QF_FORMAT], timeout)
    return parse_rpm_qf(output, ecosystem=ecosystem, source="rpm -qa")


def _rpm_kernels(base_argv: list[str], timeout: float) -> list[KernelPackage]:
    """Installed kernel packages (``rpm -qa`` with name patterns exits 0 when none match)."""
    output = run_tool([*base_argv, "-qa", "--qf", KERNEL_QF, *KERNEL_PACKAGES], timeout)
    return parse_kernel_rows(output)


def parse_kernel_rows(text: str) -> list[KernelPackage]:
    """Rows of ``installtime, name, version, release, arch``; malformed rows are ignored
    (they only weaken the reboot hint, never the inventory)."""
    kernels: list[KernelPackage] = []
    for _number, line in numbered_lines(text):
        columns = line.split("\t")
        if len(columns) != 5 or not columns[0].strip().isdigit():
            continue
        installtime, name, version, release, arch = (column.strip() for column in columns)
        kernels.append(KernelPackage(int(installtime), name, version, release, arch))
    return kernels


def _apk_packages(root: Path, ecosystem: str) -> ParsedPackages:
    path = root / APK_INSTALLED_PATH
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InventoryError(f"cannot read: {exc.strerror or exc}", source=str(path)) from exc
    return parse_apk_installed(text, ecosystem=ecosystem, source=str(path))
