"""What every package backend implements, and the helpers they share.

A backend is the only code that changes software on the host. It answers four
questions and nothing more, so a job (``patchwarden.agent.jobs``) reads the same way
whatever the package manager:

* ``installed(names)`` — the installed version of each name, ``None`` when absent;
* ``prepare(targets, bandwidth_kbps)`` — make the targets installable (refresh the
  package lists, fetch and verify an artifact); raises ``BackendError`` when the job
  must not go on;
* ``install(targets, bandwidth_kbps)`` — install exactly these versions, never a
  downgrade;
* ``restore(wanted, current, bandwidth_kbps)`` — bring the host back to ``wanted``
  (a rollback journal), downgrading or removing as needed.

Every action is idempotent: asking for what is already there runs nothing or a command
the package manager treats as a no-op. Commands run with a fixed argv (never a shell),
in their own process group so a timeout stops their children too, with ``LC_ALL=C`` and
a minimal environment; their combined output is kept to its last 4 KiB.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from patchwarden.collect.local import (
    KERNEL_PACKAGES,
    KERNEL_QF,
    REBOOT_FLAG_PATHS,
    RPM_DB_PATHS,
    kernel_reboot_required,
    parse_kernel_rows,
    run_tool,
)
from patchwarden.core.errors import InventoryError

OUTPUT_LIMIT = 4096
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# After a timeout, how long the killed process group gets to disappear.
_KILL_GRACE = 5.0


@dataclass(frozen=True)
class PackageTarget:
    """One package at the exact version a job asks for."""

    name: str
    version: str


@dataclass(frozen=True)
class CommandResult:
    """What one command (or one backend action such as a download) did.

    ``argv`` is what ran (a download shows as ``("download", url)``); ``output`` is the
    last 4 KiB of its combined stdout and stderr; ``returncode`` is 127 when the
    program could not be started and negative when a signal ended it.
    """

    argv: tuple[str, ...]
    returncode: int
    output: str
    seconds: float
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """Whether the command finished in time with exit status 0."""
        return self.returncode == 0 and not self.timed_out

    def summary(self) -> str:
        """One line saying how the command ended."""
        if self.timed_out:
            return f"{self.argv[0]} timed out after {self.seconds:.0f} seconds"
        if self.returncode == 127 and self.output.startswith("cannot run"):
            return self.output
        if self.returncode < 0:
            return f"{self.argv[0]} was killed by signal {-self.returncode}"
        return f"{self.argv[0]} exited with status {self.returncode}"

    def display(self) -> str:
        """The command line (quoted for reading only, never run) and its output."""
        return tail(f"$ {shlex.join(self.argv)}\n{self.output}")


class PackageBackend(Protocol):
    """A package manager as a job drives it (see the module docstring)."""

    name: str

    def installed(self, names: Sequence[str]) -> dict[str, str | None]:
        """Installed version of each name (several, space-separated, when a package
        is installed more than once, e.g. kernels); ``None`` when absent."""
        ...

    def prepare(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """Make ``targets`` installable; ``BackendError`` when the job must stop."""
        ...

    def install(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """Install exactly these versions (no downgrade); stops at the first failure."""
        ...

    def restore(
        self,
        wanted: Mapping[str, str | None],
        current: Mapping[str, str | None],
        bandwidth_kbps: int,
    ) -> list[CommandResult]:
        """Bring each name from ``current`` back to ``wanted`` (``None``: remove it)."""
        ...


def tail(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """The last ``limit`` bytes of ``text`` (cut on a character boundary)."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text
    return data[-limit:].decode("utf-8", errors="ignore")


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment commands run with: PATH, HOME, ``LC_ALL=C`` and ``extra``.

    Nothing else of the agent's environment is passed on (it may hold secrets).
    """
    env = {"PATH": os.environ.get("PATH") or DEFAULT_PATH, "LC_ALL": "C"}
    if "HOME" in os.environ:
        # rpm builds some macros from HOME (Debian's rpm keeps its database there).
        env["HOME"] = os.environ["HOME"]
    if extra:
        env.update(extra)
    return env


def run_command(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> CommandResult:
    """Run ``argv`` (no shell) and report how it ended; never raises for a failure.

    Output goes to a temporary file rather than a pipe, so a child that daemonizes
    and keeps the descriptor open cannot hold the agent up; on timeout the whole
    process group is killed.
    """
    command = tuple(argv)
    started = time.monotonic()
    with tempfile.TemporaryFile() as sink:
        try:
            process = subprocess.Popen(
                list(command),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else command_env(),
                cwd=str(cwd) if cwd is not None else None,
                start_new_session=True,
            )
        except OSError as exc:
            return CommandResult(
                command,
                127,
                f"cannot run {command[0]}: {exc.strerror or exc}",
                time.monotonic() - started,
            )
        timed_out = False
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            try:
                returncode = process.wait(timeout=_KILL_GRACE)
            except subprocess.TimeoutExpired:
                returncode = -int(signal.SIGKILL)
        seconds = time.monotonic() - started
        size = sink.seek(0, os.SEEK_END)
        sink.seek(max(0, size - OUTPUT_LIMIT))
        output = sink.read().decode("utf-8", errors="replace")
    return CommandResult(command, returncode, output, seconds, timed_out)


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()


def is_live_root(root: Path) -> bool:
    """Whether ``root`` is this running system rather than a tree under it."""
    return Path(root).resolve() == Path("/").resolve()


def join_versions(versions: Sequence[str]) -> str | None:
    """One journal value for the versions a name is installed at (``None``: absent)."""
    unique = sorted(set(versions))
    return " ".join(unique) if unique else None


def reboot_required(root: Path, *, timeout: float = 60.0) -> bool:
    """Whether the system at ``root`` asks for a reboot.

    Debian and Ubuntu: ``run/reboot-required`` or ``var/run/reboot-required`` exists
    under ``root``. RPM systems (live root only, since both tests look at the running
    kernel): ``needs-restarting -r`` exits 1 when a reboot is needed; without that
    tool, the running kernel is compared with the newest installed kernel package as
    ``patchwarden.collect.local`` does. Anything else: ``False``.
    """
    root = Path(root)
    if any((root / flag).exists() for flag in REBOOT_FLAG_PATHS):
        return True
    if not is_live_root(root) or not any((root / db).is_dir() for db in RPM_DB_PATHS):
        return False
    if shutil.which("needs-restarting"):
        checked = run_command(["needs-restarting", "-r"], timeout=timeout)
        if checked.returncode in (0, 1) and not checked.timed_out:
            return checked.returncode == 1
    try:
        listed = run_tool(["rpm", "-qa", "--qf", KERNEL_QF, *KERNEL_PACKAGES], timeout)
    except InventoryError:
        return False  # no answer is no reboot request; the inventory reports rpm trouble
    return kernel_reboot_required(os.uname().release, parse_kernel_rows(listed))
