"""``AptBackend``: Debian and Ubuntu packages through ``apt-get`` and dpkg.

Every call is ``apt-get -q -y`` with options that make it unattended (see
``docs/agent-jobs.md`` for the full command lines):

* ``--no-install-recommends`` — a patch job changes the named packages and their hard
  dependencies only;
* ``-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold`` — keep
  locally changed configuration files instead of asking;
* ``-o DPkg::Lock::Timeout=<s>`` — wait for a concurrent apt (unattended-upgrades)
  instead of failing at once;
* ``-o Acquire::http::Dl-Limit=<kB/s>`` (and ``https``) when the job limits bandwidth.

Installed versions are read from the dpkg status file of the root, with
``patchwarden.collect``'s parser.

**Sandbox roots.** With a root other than ``/`` the same commands act on a directory
tree and never on the host: ``APT_CONFIG`` points at a generated file that sets ``Dir``
to the root (apt reads it *before* ``/etc/apt/apt.conf.d``, so the host's hooks such as
``dpkg-preconfigure`` are not loaded), and the command line adds ``-o Dir=<root>/``,
``-o Dir::State::status=<root>/var/lib/dpkg/status`` (an absolute default that ``Dir``
does not move), ``-o DPkg::Options::=--root=<root>``, ``--admindir=<root>/var/lib/dpkg``
and ``--log=<root>/var/log/dpkg.log`` for dpkg, and ``-o APT::Sandbox::User=root`` so
the download method can read ``file:`` repositories the ``_apt`` user cannot.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from patchwarden.agent.backends.base import (
    CommandResult,
    PackageTarget,
    command_env,
    is_live_root,
    join_versions,
    run_command,
)
from patchwarden.collect.dpkg import parse_dpkg_status
from patchwarden.collect.local import DPKG_STATUS_PATH
from patchwarden.core.errors import BackendError, InventoryError

DEFAULT_TIMEOUT = 1800.0
DEFAULT_LOCK_TIMEOUT = 300
# Keeps apt, debconf and needrestart (Ubuntu) from waiting for an answer nobody gives.
_APT_ENV = {
    "DEBIAN_FRONTEND": "noninteractive",
    "APT_LISTCHANGES_FRONTEND": "none",
    "NEEDRESTART_MODE": "l",
}


class AptBackend:
    """apt-get and dpkg, on this system (``root=/``) or on a tree under ``root``."""

    name = "apt"

    def __init__(
        self,
        root: Path = Path("/"),
        *,
        timeout: float = DEFAULT_TIMEOUT,
        lock_timeout: int = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        self.root = Path(root)
        self.timeout = timeout
        self.lock_timeout = lock_timeout
        self.sandboxed = not is_live_root(self.root)
        if self.sandboxed and any(ch in str(self.root) for ch in '"\n;{}'):
            # The root is written into an apt configuration file below.
            raise BackendError(f"unusable sandbox root for apt: {self.root}")

    # ------------------------------------------------------------------ command lines

    def sandbox_options(self) -> list[str]:
        """The ``-o`` options that confine apt and dpkg to the root (empty for ``/``)."""
        if not self.sandboxed:
            return []
        root = str(self.root)
        return [
            "-o", f"Dir={root}/",
            "-o", f"Dir::State::status={root}/{DPKG_STATUS_PATH}",
            "-o", f"DPkg::Options::=--root={root}",
            "-o", f"DPkg::Options::=--admindir={root}/var/lib/dpkg",
            "-o", f"DPkg::Options::=--log={root}/var/log/dpkg.log",
            "-o", "APT::Sandbox::User=root",
        ]  # fmt: skip

    def base_argv(self, bandwidth_kbps: int) -> list[str]:
        """``apt-get`` with the options every call shares."""
        argv = ["apt-get", "-q", "-y", *self.sandbox_options()]
        argv += ["-o", f"DPkg::Lock::Timeout={self.lock_timeout}"]
        if bandwidth_kbps > 0:
            argv += [
                "-o", f"Acquire::http::Dl-Limit={bandwidth_kbps}",
                "-o", f"Acquire::https::Dl-Limit={bandwidth_kbps}",
            ]  # fmt: skip
        return argv

    def update_argv(self, bandwidth_kbps: int) -> list[str]:
        """``apt-get update``."""
        return [*self.base_argv(bandwidth_kbps), "update"]

    def install_argv(
        self, targets: Sequence[PackageTarget], bandwidth_kbps: int, *, downgrade: bool = False
    ) -> list[str]:
        """``apt-get install name=version ...``; downgrades only when asked (rollback)."""
        argv = [*self.base_argv(bandwidth_kbps), "--no-install-recommends"]
        argv += ["-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"]
        if downgrade:
            argv.append("--allow-downgrades")
        return [*argv, "install", *(f"{t.name}={t.version}" for t in targets)]

    def remove_argv(self, names: Sequence[str], bandwidth_kbps: int) -> list[str]:
        """``apt-get remove name ...`` (configuration files stay, as dpkg keeps them)."""
        return [*self.base_argv(bandwidth_kbps), "remove", *names]

    # ------------------------------------------------------------------ actions

    def installed(self, names: Sequence[str]) -> dict[str, str | None]:
        """Installed versions from the dpkg status file (``name`` or ``name:arch``)."""
        path = self.root / DPKG_STATUS_PATH
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            text = ""
        except OSError as exc:
            raise BackendError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            packages = parse_dpkg_status(text, source=str(path)).packages
        except InventoryError as exc:
            raise BackendError(f"cannot read the dpkg database: {exc}") from exc
        found: dict[str, str | None] = {}
        for wanted in names:
            name, _colon, arch = wanted.partition(":")
            versions = [
                package.version
                for package in packages
                if package.name == name and (not arch or package.arch == arch)
            ]
            found[wanted] = join_versions(versions)
        return found

    def prepare(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """``apt-get update``. A failure does not stop the job: the lists already on the
        host may hold the version, and ``install`` says clearly when they do not."""
        return [self._run(self.update_argv(bandwidth_kbps))]

    def install(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """Install the exact versions in one apt transaction (apt refuses downgrades)."""
        if not targets:
            return []
        return [self._run(self.install_argv(targets, bandwidth_kbps))]

    def restore_argvs(
        self,
        wanted: Mapping[str, str | None],
        current: Mapping[str, str | None],
        bandwidth_kbps: int,
    ) -> list[list[str]]:
        """The commands ``restore`` runs: one install (downgrades allowed), one remove."""
        reinstall: list[PackageTarget] = []
        remove: list[str] = []
        for name, version in wanted.items():
            if version == current.get(name):
                continue
            if version is None:
                remove.append(name)
            elif " " in version:
                raise BackendError(
                    f"{name} was installed at several versions ({version}); "
                    "apt cannot restore that, roll it back by hand"
                )
            else:
                reinstall.append(PackageTarget(name, version))
        argvs = []
        if reinstall:
            argvs.append(self.install_argv(reinstall, bandwidth_kbps, downgrade=True))
        if remove:
            argvs.append(self.remove_argv(remove, bandwidth_kbps))
        return argvs

    def restore(
        self,
        wanted: Mapping[str, str | None],
        current: Mapping[str, str | None],
        bandwidth_kbps: int,
    ) -> list[CommandResult]:
        """Reinstall the journaled versions and remove what was absent; stops at the
        first failing command."""
        results: list[CommandResult] = []
        for argv in self.restore_argvs(wanted, current, bandwidth_kbps):
            results.append(self._run(argv))
            if not results[-1].ok:
                break
        return results

    def _run(self, argv: list[str]) -> CommandResult:
        env = command_env(_APT_ENV)
        if not self.sandboxed:
            return run_command(argv, timeout=self.timeout, env=env)
        # APT_CONFIG is read before the host's apt.conf.d, so setting Dir there keeps
        # the host's configuration fragments (and their hooks) out of the sandbox.
        config = self.root / "etc/apt/patchwarden-sandbox.conf"
        try:
            config.parent.mkdir(parents=True, exist_ok=True)
            config.write_text(f'Dir "{self.root}/";\n', encoding="utf-8")
        except OSError as exc:
            raise BackendError(f"cannot write {config}: {exc.strerror or exc}") from exc
        env["APT_CONFIG"] = str(config)
        return run_command(argv, timeout=self.timeout, env=env)
