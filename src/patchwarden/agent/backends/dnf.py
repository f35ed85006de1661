"""``DnfBackend``: RPM packages through ``dnf`` (RHEL, AlmaLinux, Rocky, Fedora...).

Every call is ``dnf -y --setopt=install_weak_deps=False`` (a patch job installs hard
dependencies only), plus ``--setopt=throttle=<N>k`` when the job limits bandwidth.
Versions are ``[epoch:]version-release``; installed versions are read with
``rpm -qa --qf`` and ``patchwarden.collect``'s parser (epoch shown only when non-zero).

``dnf install name-1.0-1`` downgrades silently when a newer version is installed, so
an install job upgrades what is installed (``dnf upgrade name-version``, which never
downgrades) and installs what is absent (``dnf install name-version``); only
``restore`` uses ``dnf install`` on installed packages, to go back.

**Sandbox roots.** With a root other than ``/``: ``--installroot=<root>``,
``--releasever=<VERSION_ID of the root's os-release>`` (there is no release package
to read it from), ``--config=<root>/etc/dnf/dnf.conf`` and
``--setopt=reposdir=<root>/etc/yum.repos.d`` (host paths, so neither the host's
configuration nor its repositories are used) and ``--noplugins`` (host plugins would
act on the host). dnf keeps its cache and logs inside the installroot on its own, and
``rpm --root <root>`` reads the same database dnf wrote (rpm's ``%_dbpath``, which on
Debian hosts is ``~/.rpmdb``).
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
from patchwarden.collect.local import run_tool
from patchwarden.collect.osrelease import parse_os_release_fields
from patchwarden.collect.rpm import RPM_QF_FORMAT, parse_rpm_qf
from patchwarden.core.errors import BackendError, InventoryError

DEFAULT_TIMEOUT = 1800.0
QUERY_TIMEOUT = 120.0


class DnfBackend:
    """dnf and rpm, on this system (``root=/``) or on a tree under ``root``."""

    name = "dnf"

    def __init__(
        self,
        root: Path = Path("/"),
        *,
        releasever: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.root = Path(root)
        self.timeout = timeout
        self.sandboxed = not is_live_root(self.root)
        self.releasever = releasever or (self._root_release() if self.sandboxed else "")

    def _root_release(self) -> str:
        for relative in ("etc/os-release", "usr/lib/os-release"):
            try:
                text = (self.root / relative).read_text(encoding="utf-8", errors="replace")
            except OSError:
                continue
            return parse_os_release_fields(text).get("VERSION_ID", "")
        return ""

    # ------------------------------------------------------------------ command lines

    def sandbox_options(self) -> list[str]:
        """The options that confine dnf to the root (empty for ``/``)."""
        if not self.sandboxed:
            return []
        if not self.releasever:
            raise BackendError(
                f"no VERSION_ID in {self.root}/etc/os-release: dnf needs --releasever "
                "to install into this root"
            )
        root = str(self.root)
        return [
            f"--installroot={root}",
            f"--releasever={self.releasever}",
            f"--config={root}/etc/dnf/dnf.conf",
            f"--setopt=reposdir={root}/etc/yum.repos.d",
            "--noplugins",
        ]

    def base_argv(self, bandwidth_kbps: int) -> list[str]:
        """``dnf`` with the options every call shares."""
        argv = ["dnf", "-y", *self.sandbox_options(), "--setopt=install_weak_deps=False"]
        if bandwidth_kbps > 0:
            argv.append(f"--setopt=throttle={bandwidth_kbps}k")
        return argv

    def install_argvs(
        self,
        targets: Sequence[PackageTarget],
        current: Mapping[str, str | None],
        bandwidth_kbps: int,
    ) -> list[list[str]]:
        """``dnf upgrade`` for installed targets, ``dnf install`` for absent ones.

        ``--refresh`` on the first command makes dnf fetch current metadata.
        """
        present = [t for t in targets if current.get(t.name) is not None]
        absent = [t for t in targets if current.get(t.name) is None]
        argvs: list[list[str]] = []
        for verb, group in (("upgrade", present), ("install", absent)):
            if group:
                refresh = [] if argvs else ["--refresh"]
                labels = [f"{t.name}-{t.version}" for t in group]
                argvs.append([*self.base_argv(bandwidth_kbps), *refresh, verb, *labels])
        return argvs

    # ------------------------------------------------------------------ actions

    def installed(self, names: Sequence[str]) -> dict[str, str | None]:
        """Installed versions from the rpm database of the root."""
        argv = ["rpm"]
        if self.sandboxed:
            argv += ["--root", str(self.root)]
        try:
            output = run_tool([*argv, "-qa", "--qf", RPM_QF_FORMAT], QUERY_TIMEOUT)
            packages = parse_rpm_qf(output, source="rpm -qa").packages
        except InventoryError as exc:
            raise BackendError(f"cannot read the rpm database: {exc}") from exc
        return {
            name: join_versions([p.version for p in packages if p.name == name]) for name in names
        }

    def prepare(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """Nothing: the install command refreshes the metadata itself (``--refresh``)."""
        return []

    def install(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """Upgrade or install the exact versions; stops at the first failing command."""
        current = self.installed([t.name for t in targets])
        return self._run_all(self.install_argvs(targets, current, bandwidth_kbps))

    def restore(
        self,
        wanted: Mapping[str, str | None],
        current: Mapping[str, str | None],
        bandwidth_kbps: int,
    ) -> list[CommandResult]:
        """Install the journaled versions (``dnf install`` moves up or down), then remove
        whatever is left that the journal did not have.

        Journal values are sets of versions, so install-only packages (kernels, kept
        side by side) lose only the versions the job added.
        """
        add: list[str] = []
        for name, version in wanted.items():
            missing = _versions(version) - _versions(current.get(name))
            add.extend(f"{name}-{v}" for v in sorted(missing))
        results: list[CommandResult] = []
        if add:
            results = self._run_all([[*self.base_argv(bandwidth_kbps), "install", *add]])
            if not results[-1].ok:
                return results
        now = self.installed(list(wanted))
        drop: list[str] = []
        for name, version in wanted.items():
            if version is None and now.get(name) is not None:
                drop.append(name)
            else:
                extra = _versions(now.get(name)) - _versions(version)
                drop.extend(f"{name}-{v}" for v in sorted(extra))
        if drop:
            results += self._run_all([[*self.base_argv(bandwidth_kbps), "remove", *drop]])
        return results

    def _run_all(self, argvs: list[list[str]]) -> list[CommandResult]:
        results: list[CommandResult] = []
        for argv in argvs:
            results.append(run_command(argv, timeout=self.timeout, env=command_env()))
            if not results[-1].ok:
                break
        return results


def _versions(value: str | None) -> set[str]:
    return set(value.split()) if value else set()
