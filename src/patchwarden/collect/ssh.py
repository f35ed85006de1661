"""Agentless collection over SSH: the local collector's inventory, read from a remote host.

The same steps as ``collect.local`` run remotely, and their output goes through the same
parsers: ``/etc/os-release`` (else ``/usr/lib/os-release``) names the package family;
``dpkg-query`` (``DPKG_QUERY_ARGV``), ``rpm -qa --qf RPM_QF_FORMAT`` or the apk installed
database lists the packages; ``uname -n -r -m`` gives hostname, kernel and arch; the
reboot hint is ``/run/reboot-required`` on dpkg systems and the newest-kernel rule
(``kernel_reboot_required``) on rpm systems.

Security rules, on purpose without an escape hatch:

* host keys are always verified against the ``known_hosts`` file of the target; an
  unknown host or a changed key fails with an error naming the host and the file
  (there is no "accept new keys" mode: add keys with ``ssh-keyscan`` after checking
  their fingerprints out of band);
* only public-key authentication, with the given key files (or, when none is given,
  the ssh-agent and ``~/.ssh/id_*``); no password, no keyboard-interactive prompt, no
  ``~/.ssh/config``;
* every remote command is a fixed argv quoted with ``shlex`` and run under
  ``env LC_ALL=C``; with ``sudo`` the package queries run as ``sudo -n`` — a sudo that
  wants a password is an error, never a prompt.

This module imports ``asyncssh`` and is therefore *not* part of the stdlib-only agent:
``collect/__init__.py`` must not import it.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

with warnings.catch_warnings():
    # asyncssh imports cryptography's DSA classes at import time, and cryptography (>= 47)
    # warns there that DSA is deprecated. patchwarden never offers or accepts DSA keys;
    # only that one warning, raised from asyncssh's own modules, is silenced.
    warnings.filterwarnings("ignore", message="DSA is deprecated", module="asyncssh")
    import asyncssh

from patchwarden.collect.apk import APK_INSTALLED_PATH, parse_apk_installed
from patchwarden.collect.dpkg import DPKG_QUERY_ARGV, parse_dpkg_query
from patchwarden.collect.local import (
    DPKG_STATUS_DIR,
    DPKG_STATUS_PATH,
    KERNEL_PACKAGES,
    KERNEL_QF,
    OS_RELEASE_PATHS,
    REBOOT_FLAG_PATHS,
    RPM_DB_PATHS,
    kernel_reboot_required,
    parse_kernel_rows,
)
from patchwarden.collect.osrelease import read_os_release
from patchwarden.collect.parsing import UTC
from patchwarden.collect.rpm import RPM_QF_FORMAT, parse_rpm_qf
from patchwarden.core.errors import InventoryError, PatchwardenError
from patchwarden.core.model import Inventory, OsInfo

DEFAULT_PORT = 22
DEFAULT_CONNECT_TIMEOUT = 15.0
DEFAULT_COMMAND_TIMEOUT = 120.0

# Exit status of a POSIX shell when the command is not found.
_NOT_FOUND = 127
# What sudo -n prints when it would have to ask for a password (sudo 1.8 - 1.9).
_SUDO_PASSWORD_SIGNS = ("a password is required", "a terminal is required")


@dataclass(frozen=True)
class SshTarget:
    """One host to collect over SSH.

    ``known_hosts`` is required: the host key is checked against it, never trusted
    blindly. ``key_files`` are private keys tried in order; when empty, the keys of the
    running ssh-agent (``SSH_AUTH_SOCK``) and ``~/.ssh/id_*`` are used, as ``ssh``
    does. ``username`` ``""`` means the local user name, as with ``ssh``. ``sudo`` runs
    the package queries under ``sudo -n``.
    """

    host: str
    known_hosts: Path
    port: int = DEFAULT_PORT
    username: str = ""
    key_files: tuple[Path, ...] = ()
    sudo: bool = False
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT

    @property
    def label(self) -> str:
        """``host:port`` (``[v6]:port`` for IPv6 literals), as used in every message."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class SshResult:
    """The outcome for one target: an inventory, or the error that prevented it.

    ``address`` is the peer IP address the connection reached (``""`` when none was
    reached); ``elapsed`` is the wall time spent on the target, in seconds; ``hint``
    says how to fix the error, when known.
    """

    target: SshTarget
    inventory: Inventory | None = None
    error: str = ""
    address: str = ""
    elapsed: float = 0.0
    hint: str = ""

    @property
    def ok(self) -> bool:
        """Whether an inventory was collected."""
        return self.inventory is not None


async def collect_ssh(target: SshTarget, *, timeout: float) -> Inventory:
    """Collect ``target``'s inventory over SSH within ``timeout`` seconds in total.

    Raises ``InventoryError`` naming the target for every failure: unreadable key or
    known_hosts file, unreachable host, unknown or changed host key, refused
    authentication, a sudo that wants a password, a missing or failing tool, a timeout.
    """
    inventory, _address = await _collect_within(target, timeout)
    return inventory


async def collect_many(
    targets: Sequence[SshTarget],
    *,
    parallelism: int,
    timeout: float,
    on_start: Callable[[SshTarget], None] | None = None,
    on_done: Callable[[SshResult], None] | None = None,
) -> list[SshResult]:
    """Collect every target, at most ``parallelism`` at a time; results in target order.

    A failing host becomes a result with ``error`` set; it never aborts the batch.
    ``timeout`` bounds each host separately (waiting for a free slot is not counted).
    ``on_start`` and ``on_done`` are called as each host starts and finishes (progress).
    """
    if parallelism < 1:
        raise InventoryError(f"parallelism must be at least 1, got {parallelism}")
    slots = asyncio.Semaphore(parallelism)

    async def one(target: SshTarget) -> SshResult:
        async with slots:
            if on_start is not None:
                on_start(target)
            started = time.monotonic()
            try:
                inventory, address = await _collect_within(target, timeout)
                result = SshResult(
                    target, inventory, address=address, elapsed=time.monotonic() - started
                )
            except PatchwardenError as exc:
                result = SshResult(
                    target,
                    error=exc.message,
                    hint=exc.hint or "",
                    elapsed=time.monotonic() - started,
                )
            except Exception as exc:  # one host's surprise must not end the batch
                result = SshResult(
                    target,
                    error=f"{target.label}: unexpected {type(exc).__name__}: {exc}",
                    elapsed=time.monotonic() - started,
                )
            if on_done is not None:
                on_done(result)
            return result

    return list(await asyncio.gather(*(one(target) for target in targets)))


# ------------------------------------------------------------------------ connecting


async def _collect_within(target: SshTarget, timeout: float) -> tuple[Inventory, str]:
    if timeout <= 0:
        raise InventoryError(f"timeout must be positive, got {timeout:g}")
    try:
        return await asyncio.wait_for(_collect(target), timeout)
    except asyncio.TimeoutError as exc:
        raise InventoryError(
            f"{target.label}: collection did not finish within {timeout:g} seconds"
        ) from exc


async def _collect(target: SshTarget) -> tuple[Inventory, str]:
    known_hosts = _load_known_hosts(target)
    keys = [_load_key(path) for path in target.key_files]
    options: dict[str, object] = {
        "known_hosts": known_hosts,
        "config": None,
        "preferred_auth": "publickey",
        "connect_timeout": target.connect_timeout,
        "login_timeout": target.connect_timeout,
    }
    if target.username:
        options["username"] = target.username
    if keys:
        options["client_keys"] = keys
        options["agent_path"] = None
    try:
        connection = await asyncssh.connect(target.host, target.port, **options)
    except asyncssh.HostKeyNotVerifiable as exc:
        raise _host_key_error(target, known_hosts) from exc
    except asyncssh.PermissionDenied as exc:
        raise InventoryError(
            f"{target.label}: authentication refused for user "
            f"{target.username or '(local user name)'}: {exc.reason}",
            hint="check the user name and that the public key is in its authorized_keys",
        ) from exc
    except asyncssh.DisconnectError as exc:
        raise InventoryError(f"{target.label}: SSH connection failed: {exc.reason}") from exc
    except asyncio.TimeoutError as exc:
        raise InventoryError(
            f"{target.label}: no SSH session within the connect timeout of "
            f"{target.connect_timeout:g} seconds"
        ) from exc
    except OSError as exc:
        raise InventoryError(
            f"{target.label}: cannot connect: {_os_error_text(exc)}",
            hint="check the host name, the port and that sshd is reachable",
        ) from exc
    async with connection:
        peer = connection.get_extra_info("peername")
        address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        inventory = await _inventory(_Remote(connection, target))
    return inventory, address


def _os_error_text(exc: OSError) -> str:
    """``Connection refused`` rather than asyncio's ``Connect call failed (...)``."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name: {exc.strerror or exc}"
    if exc.errno is not None and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc)


def _load_known_hosts(target: SshTarget) -> asyncssh.SSHKnownHosts:
    path = target.known_hosts
    try:
        return asyncssh.read_known_hosts(str(path))
    except OSError as exc:
        raise InventoryError(
            f"cannot read known_hosts file: {exc.strerror or exc}",
            source=str(path),
            hint="host keys are always verified; pass the known_hosts file of your fleet",
        ) from exc
    except ValueError as exc:
        raise InventoryError(f"not a known_hosts file: {exc}", source=str(path)) from exc


def _load_key(path: Path) -> asyncssh.SSHKey:
    try:
        return asyncssh.read_private_key(str(path))
    except OSError as exc:
        raise InventoryError(
            f"cannot read private key: {exc.strerror or exc}", source=str(path)
        ) from exc
    except (asyncssh.KeyImportError, ValueError) as exc:
        raise InventoryError(
            f"not a usable private key: {exc}",
            source=str(path),
            hint="encrypted keys need the ssh-agent: load them with ssh-add and omit --key",
        ) from exc


def _host_key_error(target: SshTarget, known: asyncssh.SSHKnownHosts) -> InventoryError:
    """Tell an unknown host from a changed key: both refuse, but they mean different things."""
    port = target.port if target.port != DEFAULT_PORT else None
    keys, ca_keys, *_rest = known.match(target.host, target.host, port)
    if keys or ca_keys:
        return InventoryError(
            f"{target.label}: the host key does NOT match the one recorded in "
            f"{target.known_hosts}; the host was reinstalled or someone is intercepting "
            "the connection",
            hint="verify the new key's fingerprint out of band before replacing the entry",
        )
    return InventoryError(
        f"{target.label}: unknown host: no key for it in {target.known_hosts}",
        hint=(
            f"fetch it with ssh-keyscan -p {target.port} {target.host}, compare the "
            "fingerprint with the host's own, then append it to that file"
        ),
    )


# ------------------------------------------------------------------------- collecting


@dataclass(frozen=True)
class _Output:
    status: int
    stdout: str
    stderr: str


class _Remote:
    """Runs fixed argvs on one connection, with the target's timeouts and sudo rule."""

    def __init__(self, connection: asyncssh.SSHClientConnection, target: SshTarget) -> None:
        self.connection = connection
        self.target = target

    def command(self, argv: Sequence[str], *, privileged: bool) -> str:
        """The shell-quoted command line for ``argv`` (``sudo -n --`` first when asked)."""
        prefix = ["sudo", "-n", "--"] if privileged and self.target.sudo else []
        return shlex.join([*prefix, "env", "LC_ALL=C", *argv])

    async def run(self, argv: Sequence[str], *, privileged: bool = False) -> _Output:
        """Run ``argv`` remotely; a missing tool, sudo refusal or timeout raises."""
        label = self.target.label
        try:
            done = await self.connection.run(
                self.command(argv, privileged=privileged),
                check=False,
                timeout=self.target.command_timeout,
                encoding=None,
            )
        except asyncssh.TimeoutError as exc:
            raise InventoryError(
                f"{label}: {argv[0]} did not finish within {self.target.command_timeout:g} seconds"
            ) from exc
        except asyncssh.ChannelOpenError as exc:
            raise InventoryError(f"{label}: cannot open a session: {exc.reason}") from exc
        except asyncssh.DisconnectError as exc:
            raise InventoryError(f"{label}: connection lost: {exc.reason}") from exc
        status = done.exit_status if done.exit_status is not None else -1
        output = _Output(status, _text(done.stdout), _text(done.stderr))
        if privileged and self.target.sudo:
            self._check_sudo(output)
        if status == _NOT_FOUND:
            raise InventoryError(f"{label}: {argv[0]} is not installed or not on PATH")
        return output

    def _check_sudo(self, output: _Output) -> None:
        message = output.stderr.strip()
        if output.status != 0 and message.startswith("sudo:"):
            if any(sign in message for sign in _SUDO_PASSWORD_SIGNS):
                raise InventoryError(
                    f"{self.target.label}: sudo asks for a password; patchwarden only runs "
                    f"sudo -n (non-interactive): {message.splitlines()[0]}",
                    hint="grant NOPASSWD for the collection commands, or collect without sudo",
                )
            raise InventoryError(f"{self.target.label}: sudo refused: {message.splitlines()[0]}")
        if output.status == _NOT_FOUND and "sudo" in message and "not found" in message:
            raise InventoryError(f"{self.target.label}: sudo is not installed on the host")

    async def checked(self, argv: Sequence[str], *, privileged: bool = False) -> str:
        """stdout of ``argv``; a non-zero exit raises with the last stderr line."""
        output = await self.run(argv, privileged=privileged)
        if output.status != 0:
            lines = output.stderr.strip().splitlines()
            detail = lines[-1] if lines else "no error output"
            raise InventoryError(
                f"{self.target.label}: {argv[0]} exited with status {output.status}: {detail}"
            )
        return output.stdout

    async def exists(self, path: str, *, privileged: bool = False) -> bool:
        """Whether ``path`` exists on the host (``test -e``)."""
        return (await self.run(["test", "-e", path], privileged=privileged)).status == 0


def _text(data: object) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data if isinstance(data, str) else ""


async def _inventory(remote: _Remote) -> Inventory:
    label = remote.target.label
    problems: list[str] = []
    os_info: OsInfo | None = None
    for relative in OS_RELEASE_PATHS:
        release = await remote.run(["cat", "/" + relative])
        if release.status == 0:
            found = read_os_release(release.stdout)
            os_info = found.info
            if found.reason:
                problems.append(f"{label}: /{relative}: {found.reason}")
            break
    else:
        problems.append(f"{label}: no /etc/os-release or /usr/lib/os-release; OS unknown")
    hostname, kernel, arch = await _uname(remote)
    family = (os_info.family if os_info is not None else "") or await _family_from_files(remote)
    ecosystem = os_info.ecosystem if os_info is not None else ""
    reboot_required = False
    source = f"{label}: "
    if family == "debian":
        output = await remote.checked(DPKG_QUERY_ARGV, privileged=True)
        parsed = parse_dpkg_query(output, ecosystem=ecosystem, source=source + "dpkg-query")
        for flag in REBOOT_FLAG_PATHS:
            if await remote.exists("/" + flag):
                reboot_required = True
                break
    elif family == "rpm":
        output = await remote.checked(["rpm", "-qa", "--qf", RPM_QF_FORMAT], privileged=True)
        parsed = parse_rpm_qf(output, ecosystem=ecosystem, source=source + "rpm -qa")
        rows = await remote.checked(
            ["rpm", "-qa", "--qf", KERNEL_QF, *KERNEL_PACKAGES], privileged=True
        )
        reboot_required = kernel_reboot_required(kernel, parse_kernel_rows(rows))
    elif family == "alpine":
        path = "/" + APK_INSTALLED_PATH
        output = await remote.checked(["cat", path], privileged=True)
        parsed = parse_apk_installed(output, ecosystem=ecosystem, source=source + path)
    else:
        raise InventoryError(
            f"{label}: cannot tell the host's package manager: os-release names no known "
            "family and no dpkg, rpm or apk database was found",
            hint="supported: dpkg (Debian, Ubuntu), rpm (RHEL family, Fedora, SUSE), apk (Alpine)",
        )
    return Inventory(
        hostname=hostname,
        packages=parsed.packages,
        os=os_info,
        kernel=kernel,
        arch=arch,
        reboot_required=reboot_required,
        collected_at=datetime.now(UTC),
        source="ssh",
        problems=(*problems, *parsed.problems),
    )


async def _uname(remote: _Remote) -> tuple[str, str, str]:
    """Hostname, kernel release and machine, from one ``uname -n -r -m``."""
    words = (await remote.checked(["uname", "-n", "-r", "-m"])).split()
    if len(words) != 3:
        raise InventoryError(f"{remote.target.label}: unexpected uname output {words!r}")
    return words[0], words[1], words[2]


async def _family_from_files(remote: _Remote) -> str:
    """The package family from which database exists (same order as the local collector)."""
    if await remote.exists("/" + DPKG_STATUS_PATH) or await remote.exists("/" + DPKG_STATUS_DIR):
        return "debian"
    if await remote.exists("/" + APK_INSTALLED_PATH):
        return "alpine"
    for relative in RPM_DB_PATHS:
        if await remote.exists("/" + relative):
            return "rpm"
    return ""
