"""Deployment jobs on the host: validate what the server asks, do it, report it.

The server sends a job payload (``docs/agent-jobs.md`` is the contract); the agent
calls ``execute_job(payload, settings)`` and sends back the result dict. Everything a
job can do is a closed set: three backends (``apt``, ``dnf``, ``script``), four check
types, and hooks and command checks that the server names but the host defines. No
field of the payload is ever run as a command — except a script package's argv lists,
and only on hosts whose own configuration allows script packages.

An install job, in order:

1. ``prepare`` — ``apt-get update``, or fetch the script artifact and check its sha256
   (a mismatch ends the job before anything runs);
2. read the installed versions of the targets;
3. ``journal`` — record them in ``<journal_dir>/<job_id>.json`` unless an earlier
   attempt of the job already did (that record is kept);
4. when every target is already at its requested version, nothing is installed
   (a repeated delivery is a no-op); otherwise ``pre_hook:<name>`` for each hook, then
   ``install``, then the installed versions must equal the requested ones;
5. ``checks``, with their timeout and retries;
6. on a failed install or check, ``rollback`` to the journaled versions when
   ``rollback_on_failure`` (status ``rolled_back``; ``failed`` if the rollback fails);
7. ``reboot`` per policy, after a success only.

A ``rollback`` job restores the journal of ``rollback_of`` the same way (downgrading,
removing what was absent), then runs its checks and reboot policy.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from patchwarden.agent.backends.apt import AptBackend
from patchwarden.agent.backends.base import (
    CommandResult,
    PackageBackend,
    PackageTarget,
    command_env,
    is_live_root,
    reboot_required,
    run_command,
)
from patchwarden.agent.backends.dnf import DnfBackend
from patchwarden.agent.backends.script import (
    DEFAULT_MAX_BYTES,
    Downloader,
    ScriptBackend,
    ScriptPackage,
)
from patchwarden.agent.checks import (
    Check,
    CommandCheck,
    HttpCheck,
    SystemdCheck,
    TcpCheck,
    run_checks,
)
from patchwarden.agent.journal import Journal, JournalEntry
from patchwarden.collect.dpkg import dpkg_version_problem
from patchwarden.core.errors import BackendError, ConfigError, PatchwardenError, ValidationFailed

KINDS = ("install", "rollback")
BACKENDS = ("apt", "dnf", "script")
REBOOT_POLICIES = ("never", "if_required", "always")
STATUSES = ("succeeded", "failed", "rolled_back")

MAX_PAYLOAD_BYTES = 256 * 1024
MAX_PACKAGES = 500
MAX_HOOKS = 16
MAX_CHECKS = 32
MAX_ARGV_ITEMS = 64
MAX_ARGV_ITEM_CHARS = 4096
MAX_URL_CHARS = 2048
MAX_BANDWIDTH_KBPS = 10_000_000
MAX_CHECK_TIMEOUT = 3600
MAX_CHECK_RETRIES = 10
BOOT_ID_PATH = Path("/proc/sys/kernel/random/boot_id")

_TOP_FIELDS = frozenset(
    {
        "job_id", "attempt", "kind", "backend", "packages", "script_package",
        "bandwidth_kbps", "pre_hooks", "checks", "check_timeout", "check_retries",
        "reboot", "rollback_on_failure", "rollback_of",
    }
)  # fmt: skip
_SCRIPT_FIELDS = frozenset(
    {"name", "version", "url", "sha256", "detect", "install", "verify", "uninstall"}
)
_CHECK_FIELDS = {
    "systemd": frozenset({"type", "unit"}),
    "http": frozenset({"type", "url", "expect_status"}),
    "tcp": frozenset({"type", "host", "port"}),
    "command": frozenset({"type", "name"}),
}
# Names a package manager would never read as an option (no leading "-").
_APT_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]{0,127}(:[a-z0-9][a-z0-9-]{0,31})?$")
_RPM_NAME = re.compile(r"^[A-Za-z0-9_+][A-Za-z0-9_.+-]{0,199}$")
_RPM_EVR = re.compile(r"^(?:[0-9]{1,10}:)?[A-Za-z0-9._+~^]{1,100}-[A-Za-z0-9._+~^]{1,100}$")
_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
_SCRIPT_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+~:-]{0,127}$")
_LOCAL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_UNIT = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9:_.@\\-]{0,254}$")
_HOST = re.compile(r"^[A-Za-z0-9_.:-]{1,253}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class JobInvalid(ValidationFailed):
    """A job payload outside the closed set this agent executes."""


def system_reboot() -> None:
    """The real reboot: ``systemctl reboot``. Raises ``BackendError`` when refused."""
    result = run_command(["systemctl", "reboot"], timeout=60)
    if not result.ok:
        raise BackendError(f"systemctl reboot failed: {result.summary()}: {result.output[-200:]}")


@dataclass(frozen=True)
class ExecutionSettings:
    """What the host decides about jobs (the agent builds this from its configuration).

    * ``journal_dir`` — rollback journals and last results (under the state dir);
    * ``root`` — the system the backends act on: ``/``, or a sandbox tree in tests;
    * ``artifact_dir`` — stored script artifacts (default ``<journal_dir>/../artifacts``);
    * ``hooks`` / ``check_commands`` — name → argv, the only commands a job can name;
    * ``allow_script_packages`` — off unless an administrator opts in on the host;
    * ``downloader`` — fetches script artifacts (the agent's authenticated client);
    * ``reboot`` — called when the policy says reboot (default ``system_reboot``);
    * timeouts in seconds; ``check_retry_delay`` between check attempts.
    """

    journal_dir: Path
    root: Path = Path("/")
    artifact_dir: Path | None = None
    hooks: Mapping[str, Sequence[str]] = field(default_factory=dict)
    check_commands: Mapping[str, Sequence[str]] = field(default_factory=dict)
    allow_script_packages: bool = False
    downloader: Downloader | None = None
    reboot: Callable[[], None] = system_reboot
    package_timeout: float = 1800.0
    hook_timeout: float = 600.0
    check_retry_delay: float = 5.0
    max_artifact_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        for kind, table in (("hook", self.hooks), ("check command", self.check_commands)):
            for name, argv in table.items():
                if not _LOCAL_NAME.match(name):
                    raise ConfigError(f"{kind} name {name!r} must match {_LOCAL_NAME.pattern}")
                if isinstance(argv, str) or not argv or not all(isinstance(a, str) for a in argv):
                    raise ConfigError(f"{kind} {name!r} must be a non-empty list of strings")

    @property
    def artifacts(self) -> Path:
        """Where script artifacts are stored."""
        return self.artifact_dir or Path(self.journal_dir).parent / "artifacts"


@dataclass(frozen=True)
class Job:
    """A validated job payload (field meanings: docs/agent-jobs.md)."""

    job_id: int
    attempt: int
    kind: str
    backend: str
    packages: tuple[PackageTarget, ...] = ()
    script_package: ScriptPackage | None = None
    bandwidth_kbps: int = 0
    pre_hooks: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    check_timeout: int = 60
    check_retries: int = 3
    reboot: str = "never"
    rollback_on_failure: bool = True
    rollback_of: int | None = None

    @property
    def targets(self) -> tuple[PackageTarget, ...]:
        """What the job installs: its packages, or its script package."""
        if self.script_package is not None:
            return (PackageTarget(self.script_package.name, self.script_package.version),)
        return self.packages


# --------------------------------------------------------------------------- validation


def validate_job(payload: Any, settings: ExecutionSettings | None = None) -> Job:
    """The ``Job`` a payload describes; ``JobInvalid`` for anything outside the contract.

    With ``settings``, hook and command-check names must also be defined on this host
    and script packages must be allowed here.
    """
    if not isinstance(payload, dict):
        raise JobInvalid("a job payload must be a JSON object")
    try:
        size = len(json.dumps(payload, ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError) as exc:
        raise JobInvalid(f"job payload is not plain JSON: {exc}") from exc
    if size > MAX_PAYLOAD_BYTES:
        raise JobInvalid(f"job payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    _only_fields(payload, _TOP_FIELDS, "job")
    job_id = _integer(payload, "job_id", 1, 2**63 - 1)
    kind = _choice(payload, "kind", KINDS)
    backend = _choice(payload, "backend", BACKENDS)
    raw_script = payload.get("script_package")
    raw_packages = _list(payload, "packages", MAX_PACKAGES)
    rollback_of = payload.get("rollback_of")
    if kind == "install":
        if rollback_of is not None:
            raise JobInvalid("rollback_of belongs to rollback jobs only")
        if backend == "script":
            if raw_script is None or raw_packages:
                raise JobInvalid("a script job needs script_package and no packages")
        elif raw_script is not None or not raw_packages:
            raise JobInvalid(f"an {backend} install job needs packages and no script_package")
    else:
        rollback_of = _integer(payload, "rollback_of", 1, 2**63 - 1)
        if rollback_of == job_id:
            raise JobInvalid("a rollback job cannot roll back itself")
        if raw_packages or raw_script is not None:
            raise JobInvalid(
                "a rollback job restores its journal: it takes no packages or script_package"
            )
    job = Job(
        job_id=job_id,
        attempt=_integer(payload, "attempt", 1, 1_000_000),
        kind=kind,
        backend=backend,
        packages=_packages(raw_packages, backend),
        script_package=None if raw_script is None else parse_script_package(raw_script),
        bandwidth_kbps=_integer(payload, "bandwidth_kbps", 0, MAX_BANDWIDTH_KBPS, 0),
        pre_hooks=_hook_names(_list(payload, "pre_hooks", MAX_HOOKS)),
        checks=tuple(
            _check(raw, f"checks[{i}]")
            for i, raw in enumerate(_list(payload, "checks", MAX_CHECKS))
        ),
        check_timeout=_integer(payload, "check_timeout", 1, MAX_CHECK_TIMEOUT, 60),
        check_retries=_integer(payload, "check_retries", 0, MAX_CHECK_RETRIES, 3),
        reboot=_choice(payload, "reboot", REBOOT_POLICIES, "never"),
        rollback_on_failure=_boolean(payload, "rollback_on_failure", True),
        rollback_of=rollback_of,
    )
    if settings is not None:
        _check_local_names(job, settings)
    return job


def _check_local_names(job: Job, settings: ExecutionSettings) -> None:
    if job.backend == "script" and not settings.allow_script_packages:
        raise JobInvalid(
            "script packages are not allowed on this host",
            hint="an administrator must enable them in the agent's configuration",
        )
    for name in job.pre_hooks:
        if name not in settings.hooks:
            raise JobInvalid(f"pre-hook {name!r} is not defined on this host")
    for check in job.checks:
        if isinstance(check, CommandCheck) and check.name not in settings.check_commands:
            raise JobInvalid(f"check command {check.name!r} is not defined on this host")


def parse_script_package(raw: Any, where: str = "script_package") -> ScriptPackage:
    """A script package definition (from a payload or a journal)."""
    if not isinstance(raw, dict):
        raise JobInvalid(f"{where} must be an object")
    _only_fields(raw, _SCRIPT_FIELDS, where)
    missing = sorted(_SCRIPT_FIELDS - set(raw))
    if missing:
        raise JobInvalid(f"{where} lacks {', '.join(missing)}")
    name = _matching(raw["name"], _SCRIPT_NAME, f"{where}.name")
    version = _matching(raw["version"], _SCRIPT_VERSION, f"{where}.version")
    url = _url(raw["url"], f"{where}.url")
    sha256 = _matching(raw["sha256"], _SHA256, f"{where}.sha256 (64 lower-case hex digits)")
    return ScriptPackage(
        name=name,
        version=version,
        url=url,
        sha256=sha256,
        detect=_argv(raw["detect"], f"{where}.detect"),
        install=_argv(raw["install"], f"{where}.install"),
        verify=_argv(raw["verify"], f"{where}.verify"),
        uninstall=_argv(raw["uninstall"], f"{where}.uninstall"),
    )


def _packages(raw: list[Any], backend: str) -> tuple[PackageTarget, ...]:
    targets = []
    seen: set[str] = set()
    for index, item in enumerate(raw):
        where = f"packages[{index}]"
        if not isinstance(item, dict):
            raise JobInvalid(f"{where} must be an object")
        _only_fields(item, frozenset({"name", "version"}), where)
        name, version = item.get("name"), item.get("version")
        if not isinstance(name, str) or not isinstance(version, str):
            raise JobInvalid(f"{where} needs a name and a version (strings)")
        if backend == "apt":
            _matching(name, _APT_NAME, f"{where}.name")
            problem = dpkg_version_problem(version) if len(version) <= 128 else "too long"
            if problem:
                raise JobInvalid(f"{where}.version {version!r} is not a dpkg version: {problem}")
        else:
            _matching(name, _RPM_NAME, f"{where}.name")
            _matching(version, _RPM_EVR, f"{where}.version ([epoch:]version-release)")
            version = version[2:] if version.startswith("0:") else version
        if name in seen:
            raise JobInvalid(f"{where}: {name} is listed twice")
        seen.add(name)
        targets.append(PackageTarget(name, version))
    return tuple(targets)


def _hook_names(raw: list[Any]) -> tuple[str, ...]:
    return tuple(_matching(item, _LOCAL_NAME, f"pre_hooks[{i}]") for i, item in enumerate(raw))


def _check(raw: Any, where: str) -> Check:
    if not isinstance(raw, dict):
        raise JobInvalid(f"{where} must be an object")
    kind = raw.get("type")
    if kind not in _CHECK_FIELDS:
        raise JobInvalid(f"{where}.type must be one of {', '.join(_CHECK_FIELDS)}, not {kind!r}")
    _only_fields(raw, _CHECK_FIELDS[kind], where)
    if kind == "systemd":
        return SystemdCheck(_matching(raw.get("unit"), _UNIT, f"{where}.unit"))
    if kind == "http":
        status = _integer(raw, "expect_status", 100, 599, 200, where=where)
        return HttpCheck(_url(raw.get("url"), f"{where}.url"), status)
    if kind == "tcp":
        host = _matching(raw.get("host"), _HOST, f"{where}.host")
        return TcpCheck(host, _integer(raw, "port", 1, 65535, where=where))
    return CommandCheck(_matching(raw.get("name"), _LOCAL_NAME, f"{where}.name"))


_REQUIRED = object()


def _only_fields(raw: dict[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise JobInvalid(
            f"{where}: unknown field(s) {', '.join(unknown)}",
            hint=f"known: {', '.join(sorted(allowed))}",
        )


def _integer(
    raw: dict[str, Any],
    key: str,
    low: int,
    high: int,
    default: Any = _REQUIRED,
    *,
    where: str = "job",
) -> int:
    value = raw.get(key, default)
    if value is _REQUIRED:
        raise JobInvalid(f"{where}: {key} is required")
    # bool is an int in Python, never in the contract.
    if type(value) is not int or not low <= value <= high:
        raise JobInvalid(f"{where}: {key} must be an integer from {low} to {high}")
    return value


def _boolean(raw: dict[str, Any], key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if type(value) is not bool:
        raise JobInvalid(f"job: {key} must be true or false")
    return value


def _choice(
    raw: dict[str, Any], key: str, choices: tuple[str, ...], default: Any = _REQUIRED
) -> str:
    value = raw.get(key, default)
    if value not in choices:
        raise JobInvalid(f"job: {key} must be one of {', '.join(choices)}, not {value!r}")
    return str(value)


def _list(raw: dict[str, Any], key: str, limit: int) -> list[Any]:
    value = raw.get(key, [])
    if not isinstance(value, list):
        raise JobInvalid(f"job: {key} must be a list")
    if len(value) > limit:
        raise JobInvalid(f"job: {key} has {len(value)} entries; the limit is {limit}")
    return value


def _matching(value: Any, pattern: re.Pattern[str], where: str) -> str:
    if not isinstance(value, str) or not pattern.match(value):
        shown = repr(value)[:80]
        raise JobInvalid(f"{where}: {shown} is not allowed (must match {pattern.pattern})")
    return value


def _url(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_URL_CHARS:
        raise JobInvalid(f"{where} must be a URL of at most {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(value)
        scheme, host = parts.scheme, parts.hostname
    except ValueError as exc:
        raise JobInvalid(f"{where}: {exc}") from exc
    if scheme not in ("http", "https") or not host or any(ch.isspace() for ch in value):
        raise JobInvalid(f"{where} must be an http:// or https:// URL with a host")
    return value


def _argv(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= MAX_ARGV_ITEMS:
        raise JobInvalid(f"{where} must be a list of 1 to {MAX_ARGV_ITEMS} strings (an argv)")
    for item in value:
        if not isinstance(item, str) or len(item) > MAX_ARGV_ITEM_CHARS or "\0" in item:
            raise JobInvalid(
                f"{where}: every item must be a string of at most {MAX_ARGV_ITEM_CHARS} "
                "characters without NUL"
            )
    if not value[0]:
        raise JobInvalid(f"{where}: the program (first item) is empty")
    return tuple(value)


# --------------------------------------------------------------------------- execution


class _Report:
    """The result being assembled while a job runs."""

    def __init__(self, job_id: int, attempt: int) -> None:
        self.job_id = job_id
        self.attempt = attempt
        self.steps: list[dict[str, Any]] = []
        self.before: dict[str, str | None] = {}
        self.after: dict[str, str | None] = {}
        self.checks: list[dict[str, Any]] = []
        self.rollback: dict[str, Any] | None = None
        self.reboot_required = False
        self.rebooted = False

    def step(self, name: str, ok: bool, seconds: float, output: str) -> None:
        self.steps.append(
            {"name": name, "ok": ok, "seconds": round(seconds, 3), "output": output[-4096:]}
        )

    def commands(self, name: str, results: Sequence[CommandResult]) -> bool:
        """Record one step per command; whether all of them succeeded."""
        for result in results:
            self.step(name, result.ok, result.seconds, result.display())
        return all(result.ok for result in results)

    def result(self, status: str, error: str | None = None) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "attempt": self.attempt,
            "status": status,
            "steps": list(self.steps),
            "before": dict(self.before),
            "after": dict(self.after),
            "checks": list(self.checks),
            "rollback": None if self.rollback is None else dict(self.rollback),
            "reboot_required": self.reboot_required,
            "rebooted": self.rebooted,
            "error": error,
        }


def execute_job(payload: Any, settings: ExecutionSettings) -> dict[str, Any]:
    """Run one job and return its result (``docs/agent-jobs.md``).

    Every problem with the job — an invalid payload, a failed command, an unwritable
    journal — is reported in the result with status ``failed``. Only a payload without
    a usable ``job_id`` and ``attempt`` raises ``JobInvalid``: there is no job to
    report on then. The result is also kept as ``<journal_dir>/<job_id>.result.json``.
    """
    job_id, attempt = _identity(payload)
    report = _Report(job_id, attempt)
    journal = Journal(settings.journal_dir)
    try:
        job = validate_job(payload, settings)
    except JobInvalid as exc:
        return report.result("failed", f"job refused: {exc}")
    try:
        if job.kind == "rollback":
            result = _rollback_job(job, settings, journal, report)
        else:
            result = _install_job(job, settings, journal, report)
    except PatchwardenError as exc:
        result = report.result("failed", str(exc))
    # The result still goes back to the server if its copy cannot be kept.
    with contextlib.suppress(PatchwardenError):
        journal.save_result(job.job_id, result)
    return result


def _identity(payload: Any) -> tuple[int, int]:
    raw = payload if isinstance(payload, dict) else {}
    job_id, attempt = raw.get("job_id"), raw.get("attempt")
    if type(job_id) is not int or job_id < 1 or type(attempt) is not int or attempt < 1:
        raise JobInvalid("a job payload needs a positive integer job_id and attempt")
    return job_id, attempt


def make_backend(
    name: str, settings: ExecutionSettings, script: ScriptPackage | None = None
) -> PackageBackend:
    """The backend called ``name``, acting on ``settings.root``."""
    if name == "apt":
        return AptBackend(settings.root, timeout=settings.package_timeout)
    if name == "dnf":
        return DnfBackend(settings.root, timeout=settings.package_timeout)
    if name == "script" and script is not None:
        return ScriptBackend(
            script,
            artifact_dir=settings.artifacts,
            downloader=settings.downloader,
            timeout=settings.package_timeout,
            max_bytes=settings.max_artifact_bytes,
        )
    raise BackendError(f"no backend {name!r} (or a script backend without its package)")


def _install_job(
    job: Job, settings: ExecutionSettings, journal: Journal, report: _Report
) -> dict[str, Any]:
    backend = make_backend(job.backend, settings, job.script_package)
    targets = job.targets
    names = [target.name for target in targets]
    if not _prepare(backend, targets, job, report):
        return report.result("failed", report.steps[-1]["output"])
    current = backend.installed(names)
    report.after = dict(current)
    entry = _journal(journal, job, current, report)
    if set(entry.before) != set(names) or entry.backend != job.backend:
        return report.result(
            "failed",
            f"the journal of job {job.job_id} records other packages ({', '.join(entry.before)}); "
            "a job id must not be reused for different work",
        )
    report.before = dict(entry.before)
    pending = [t for t in targets if not _has_version(current.get(t.name), t.version)]
    if not pending:
        report.step("install", True, 0.0, "every target is at its requested version already")
    else:
        if not _pre_hooks(job, settings, report):
            return report.result("failed", f"{report.steps[-1]['name']} failed; nothing installed")
        results = backend.install(pending, job.bandwidth_kbps)
        report.commands("install", results)
        after = backend.installed(names)
        report.after = dict(after)
        reasons = [result.summary() for result in results if not result.ok]
        reasons += [
            f"{t.name} is at {after.get(t.name) or 'absent'}, not {t.version}"
            for t in targets
            if not _has_version(after.get(t.name), t.version)
        ]
        if reasons:
            error = f"install failed: {'; '.join(reasons)}"
            return _undo(job, backend, report, before=entry.before, current=after, error=error)
    if not _run_checks(job, settings, report):
        failed = "; ".join(c["detail"] for c in report.checks if not c["ok"])
        return _undo(
            job,
            backend,
            report,
            before=entry.before,
            current=report.after,
            error=f"check failed: {failed}",
        )
    return _finish(job, settings, journal, entry, report)


def _rollback_job(
    job: Job, settings: ExecutionSettings, journal: Journal, report: _Report
) -> dict[str, Any]:
    if job.rollback_of is None:
        raise JobInvalid("a rollback job needs rollback_of")
    source = journal.load(job.rollback_of)
    if source is None:
        return report.result(
            "failed",
            f"no journal of job {job.rollback_of} on this host: it never installed anything "
            "here, or its journal was removed",
        )
    if source.backend != job.backend:
        return report.result(
            "failed", f"job {job.rollback_of} used the {source.backend} backend, not {job.backend}"
        )
    script = None
    if source.script_package is not None:
        script = parse_script_package(source.script_package, f"journal of job {job.rollback_of}")
    backend = make_backend(job.backend, settings, script)
    wanted = source.before
    names = list(wanted)
    # Only package managers fetch anything for a rollback (a script package uninstalls).
    reinstall = [
        PackageTarget(name, version)
        for name, version in wanted.items()
        if version is not None and " " not in version and job.backend != "script"
    ]
    if not _prepare(backend, reinstall, job, report):
        return report.result("failed", report.steps[-1]["output"])
    current = backend.installed(names)
    report.after = dict(current)
    entry = _journal(journal, job, current, report)
    report.before = dict(entry.before)
    changes = {n: v for n, v in wanted.items() if not _same(current.get(n), v)}
    if not changes:
        report.step(
            "rollback", True, 0.0, f"already at the versions journaled by job {source.job_id}"
        )
        report.rollback = {"attempted": False, "ok": True, "restored": {}}
    else:
        if not _pre_hooks(job, settings, report):
            return report.result("failed", f"{report.steps[-1]['name']} failed; nothing changed")
        ok, error = _restore(job, backend, wanted, current, report)
        if not ok:
            return report.result("failed", f"rollback of job {source.job_id} failed: {error}")
    if not _run_checks(job, settings, report):
        failed = "; ".join(c["detail"] for c in report.checks if not c["ok"])
        return report.result("failed", f"check failed after the rollback: {failed}")
    return _finish(job, settings, journal, entry, report)


def _prepare(
    backend: PackageBackend, targets: Sequence[PackageTarget], job: Job, report: _Report
) -> bool:
    """Run the backend's preparation; ``False`` (step recorded) when the job must stop.

    A failed command here (``apt-get update``) is recorded and the job goes on.
    """
    started = time.monotonic()
    try:
        results = backend.prepare(targets, job.bandwidth_kbps)
    except BackendError as exc:
        report.step("prepare", False, time.monotonic() - started, str(exc))
        return False
    report.commands("prepare", results)
    return True


def _journal(
    journal: Journal, job: Job, current: dict[str, str | None], report: _Report
) -> JournalEntry:
    """This job's journal entry: the one an earlier attempt wrote, or a new one."""
    started = time.monotonic()
    entry = journal.load(job.job_id)
    path = journal.entry_path(job.job_id)
    if entry is not None:
        report.step("journal", True, time.monotonic() - started, f"kept {path} (earlier attempt)")
        return entry
    entry = JournalEntry(
        job_id=job.job_id,
        kind=job.kind,
        backend=job.backend,
        before=dict(current),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rollback_of=job.rollback_of,
        script_package=None if job.script_package is None else job.script_package.to_json(),
    )
    journal.save(entry)
    summary = f"recorded the versions of {len(current)} package(s) in {path}"
    report.step("journal", True, time.monotonic() - started, summary)
    return entry


def _pre_hooks(job: Job, settings: ExecutionSettings, report: _Report) -> bool:
    for name in job.pre_hooks:
        result = run_command(
            settings.hooks[name],
            timeout=settings.hook_timeout,
            env=command_env({"PATCHWARDEN_JOB_ID": str(job.job_id)}),
        )
        report.step(f"pre_hook:{name}", result.ok, result.seconds, result.display())
        if not result.ok:
            return False
    return True


def _run_checks(job: Job, settings: ExecutionSettings, report: _Report) -> bool:
    if not job.checks:
        return True
    started = time.monotonic()
    outcomes = run_checks(
        job.checks,
        timeout=job.check_timeout,
        retries=job.check_retries,
        retry_delay=settings.check_retry_delay,
        commands=settings.check_commands,
    )
    report.checks = [outcome.to_json() for outcome in outcomes]
    ok = all(outcome.ok for outcome in outcomes)
    summary = "\n".join(f"{'ok' if o.ok else 'FAILED'}: {o.detail}" for o in outcomes)
    report.step("checks", ok, time.monotonic() - started, summary)
    return ok


def _undo(
    job: Job,
    backend: PackageBackend,
    report: _Report,
    *,
    before: dict[str, str | None],
    current: dict[str, str | None],
    error: str,
) -> dict[str, Any]:
    """After a failed install or check: roll back when allowed, and say what happened."""
    if all(_same(current.get(name), version) for name, version in before.items()):
        return report.result("failed", f"{error}; nothing to roll back (no target changed)")
    if not job.rollback_on_failure:
        report.rollback = {"attempted": False, "ok": False, "restored": {}}
        return report.result("failed", f"{error}; rollback_on_failure is off: left as it is")
    ok, rollback_error = _restore(job, backend, before, current, report)
    if ok:
        return report.result("rolled_back", error)
    return report.result("failed", f"{error}; rollback failed: {rollback_error}")


def _restore(
    job: Job,
    backend: PackageBackend,
    wanted: dict[str, str | None],
    current: dict[str, str | None],
    report: _Report,
) -> tuple[bool, str]:
    """Restore ``wanted``; fills ``report.rollback`` and ``report.after``."""
    changed = [name for name, version in wanted.items() if not _same(current.get(name), version)]
    started = time.monotonic()
    error = ""
    try:
        results = backend.restore(wanted, current, job.bandwidth_kbps)
    except BackendError as exc:
        report.step("rollback", False, time.monotonic() - started, str(exc))
        results, error = [], str(exc)
    commands_ok = report.commands("rollback", results)
    now = backend.installed(list(wanted))
    report.after = dict(now)
    if not error and not commands_ok:
        error = next(r.summary() for r in results if not r.ok)
    if not error:
        left = [
            f"{name} is at {now.get(name) or 'absent'}, the journal says {version or 'absent'}"
            for name, version in wanted.items()
            if not _same(now.get(name), version)
        ]
        error = "; ".join(left)
    report.rollback = {
        "attempted": True,
        "ok": not error,
        "restored": {name: now.get(name) for name in changed},
    }
    return not error, error


def _finish(
    job: Job,
    settings: ExecutionSettings,
    journal: Journal,
    entry: JournalEntry,
    report: _Report,
) -> dict[str, Any]:
    """Apply the reboot policy to a job that succeeded."""
    report.reboot_required = reboot_required(settings.root)
    wants = job.reboot == "always" or (job.reboot == "if_required" and report.reboot_required)
    if not wants:
        return report.result("succeeded")
    if settings.reboot is system_reboot and not is_live_root(settings.root):
        # A sandbox root is not the running system: rebooting the host would be wrong.
        report.step("reboot", True, 0.0, f"not rebooting the host for the tree {settings.root}")
        return report.result("succeeded")
    if entry.reboot_boot_id:
        # An earlier attempt asked already: asking again could reboot in a loop.
        report.rebooted = True
        report.step(
            "reboot", True, 0.0, f"requested by an earlier attempt (boot {entry.reboot_boot_id})"
        )
        return report.result("succeeded")
    journal.save(replace(entry, reboot_boot_id=_boot_id()))
    report.rebooted = True
    report.step("reboot", True, 0.0, f"reboot requested (policy {job.reboot})")
    # Kept before the reboot, so the outcome survives it even if sending it does not.
    journal.save_result(job.job_id, report.result("succeeded"))
    started = time.monotonic()
    try:
        settings.reboot()
    except Exception as exc:  # the reboot callable is the host's; report any failure
        journal.save(entry)  # no reboot happened: a later attempt may ask again
        report.rebooted = False
        report.steps.pop()
        report.step("reboot", False, time.monotonic() - started, str(exc))
        return report.result("failed", f"installed and checked, but the reboot failed: {exc}")
    return report.result("succeeded")


def _boot_id() -> str:
    try:
        return BOOT_ID_PATH.read_text(encoding="ascii").strip() or "unknown"
    except OSError:
        return "unknown"


def _has_version(installed: str | None, version: str) -> bool:
    """Whether ``version`` is among the installed versions of a name."""
    return installed is not None and version in installed.split()


def _same(installed: str | None, journaled: str | None) -> bool:
    """Whether the installed versions are exactly the journaled ones."""
    return set((installed or "").split()) == set((journaled or "").split())
