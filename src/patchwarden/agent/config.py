"""The agent's settings and the INI file they are read from.

The file (default ``/etc/patchwarden/agent.conf``, documented with every key in
``packaging/agent.conf.example`` and ``docs/agent.md``) has one ``[agent]`` section.
Unknown keys are errors, so a typo cannot silently leave a default in place.
"""

from __future__ import annotations

import configparser
import dataclasses
import ipaddress
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from patchwarden.core.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/patchwarden/agent.conf")
DEFAULT_STATE_DIR = Path("/var/lib/patchwarden-agent")
SECTION = "agent"
LOG_LEVELS = ("debug", "info", "warning", "error")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent can be told.

    ``interval`` is the check-in period in seconds before the server has answered (the
    server's ``next_checkin_seconds`` wins once it has); every wait is spread by
    ``± jitter`` (a fraction) so a fleet does not call in step. ``allow_insecure_http``
    permits ``http://`` to hosts other than loopback — credentials and inventories then
    cross the network in clear text.

    The job settings (docs/agent-jobs.md): ``package_root`` is the system the package
    backends change; ``hooks`` and ``check_commands`` map the names a rollout may use to
    the argv lists they run (the server only ever sends names); ``job_lease`` is the
    shortest lease, in seconds, the agent assumes for a claimed job (the payload does
    not carry it), and it renews its claims every third of it.
    """

    server_url: str = ""
    state_dir: Path = DEFAULT_STATE_DIR
    interval: int = 300
    jitter: float = 0.1
    timeout: float = 30.0
    ca_file: Path | None = None
    allow_insecure_http: bool = False
    include_python: bool = False
    collect_root: Path = Path("/")
    collect_timeout: float = 120.0
    max_upload_bytes: int = 16 * 1024 * 1024
    spool_max_reports: int = 100
    spool_max_bytes: int = 64 * 1024 * 1024
    log_level: str = "info"
    package_root: Path = Path("/")
    hooks: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    check_commands: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    allow_script_packages: bool = False
    job_lease: int = 60
    package_timeout: float = 1800.0
    hook_timeout: float = 600.0
    check_retry_delay: float = 5.0

    def __post_init__(self) -> None:
        checks = (
            (10 <= self.interval <= 86400, "interval must be 10-86400 seconds"),
            (0.0 <= self.jitter <= 0.5, "jitter must be a fraction between 0 and 0.5"),
            (0 < self.timeout <= 600, "timeout must be 1-600 seconds"),
            (0 < self.collect_timeout <= 3600, "collect_timeout must be 1-3600 seconds"),
            (self.max_upload_bytes >= 1024, "max_upload_bytes must be at least 1024"),
            (1 <= self.spool_max_reports <= 100_000, "spool_max_reports must be 1-100000"),
            (self.spool_max_bytes >= 1024, "spool_max_bytes must be at least 1024"),
            (self.log_level in LOG_LEVELS, f"log_level must be one of {', '.join(LOG_LEVELS)}"),
            (15 <= self.job_lease <= 3600, "job_lease must be 15-3600 seconds"),
            (0 < self.package_timeout <= 86400, "package_timeout must be 1-86400 seconds"),
            (0 < self.hook_timeout <= 86400, "hook_timeout must be 1-86400 seconds"),
            (0 <= self.check_retry_delay <= 600, "check_retry_delay must be 0-600 seconds"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"agent configuration: {message}")
        if self.server_url:
            check_server_url(self.server_url, allow_insecure_http=self.allow_insecure_http)

    @classmethod
    def load(cls, path: Path, **overrides: Any) -> AgentConfig:
        """Read the ``[agent]`` section of the INI file at ``path``.

        Relative paths in the file are taken relative to the file's folder. Keyword
        ``overrides`` (``None`` values ignored) replace what the file says.
        """
        parser = configparser.ConfigParser(interpolation=None)
        try:
            with open(path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except FileNotFoundError as exc:
            raise ConfigError(
                f"agent configuration file {path} does not exist",
                hint="copy packaging/agent.conf.example there, or pass --config",
            ) from exc
        except (OSError, configparser.Error) as exc:
            raise ConfigError(f"cannot read agent configuration {path}: {exc}") from exc
        if not parser.has_section(SECTION):
            raise ConfigError(f"{path}: no [{SECTION}] section")
        extra = [name for name in parser.sections() if name != SECTION]
        if extra:
            raise ConfigError(f"{path}: unknown section(s) {', '.join(extra)}")
        values: dict[str, Any] = {}
        for key, raw in parser.items(SECTION):
            convert = _CONVERTERS.get(key)
            if convert is None:
                known = ", ".join(sorted(_CONVERTERS))
                raise ConfigError(f"{path}: unknown key {key!r}", hint=f"known keys: {known}")
            try:
                values[key] = convert(raw.strip(), Path(path).parent)
            except ValueError as exc:
                raise ConfigError(f"{path}: {key} = {raw!r}: {exc}") from exc
        values.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**values)

    def replace(self, **changes: Any) -> AgentConfig:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


def check_server_url(url: str, *, allow_insecure_http: bool) -> str:
    """``url`` without a trailing slash, or ``ConfigError`` when it is unusable.

    ``https`` is always fine; ``http`` only to a loopback address, or anywhere when the
    configuration explicitly allows clear text.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"server URL {url!r} must look like https://host[:port]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"server URL {url!r} may not carry a query, fragment or user name")
    if parts.scheme == "http" and not (allow_insecure_http or is_loopback(parts.hostname)):
        raise ConfigError(
            f"refusing clear-text http to {parts.hostname}",
            hint="use https, or set allow_insecure_http = true if you accept that the "
            "credential and inventory travel unencrypted",
        )
    return url.rstrip("/")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _boolean(raw: str, _base: Path) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "yes", "true", "on"):
        return True
    if lowered in ("0", "no", "false", "off", ""):
        return False
    raise ValueError("expected true or false")


def _path(raw: str, base: Path) -> Path:
    if not raw:
        raise ValueError("a path is required")
    return base / Path(raw).expanduser()


def _optional_path(raw: str, base: Path) -> Path | None:
    return _path(raw, base) if raw else None


def _text(raw: str, _base: Path) -> str:
    return raw


def _integer(raw: str, _base: Path) -> int:
    return int(raw.replace("_", ""))


def _number(raw: str, _base: Path) -> float:
    return float(raw)


def _level(raw: str, _base: Path) -> str:
    return raw.lower()


def _commands(raw: str, _base: Path) -> dict[str, tuple[str, ...]]:
    """A JSON object of name → argv list (``{}`` when empty). The argv lists are run as
    they are, never split or passed to a shell; the names are checked where the job
    settings are built (``jobs.ExecutionSettings``)."""
    if not raw:
        return {}
    try:
        table = json.loads(raw)
    except ValueError as exc:
        raise ValueError(f"expected a JSON object of name -> argv list: {exc}") from None
    if not isinstance(table, dict):
        raise ValueError("expected a JSON object of name -> argv list")
    commands: dict[str, tuple[str, ...]] = {}
    for name, argv in table.items():
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError(f"{name!r} must be a non-empty list of strings (argv)")
        commands[name] = tuple(argv)
    return commands


_CONVERTERS: dict[str, Callable[[str, Path], Any]] = {
    "server_url": _text,
    "state_dir": _path,
    "interval": _integer,
    "jitter": _number,
    "timeout": _number,
    "ca_file": _optional_path,
    "allow_insecure_http": _boolean,
    "include_python": _boolean,
    "collect_root": _path,
    "collect_timeout": _number,
    "max_upload_bytes": _integer,
    "spool_max_reports": _integer,
    "spool_max_bytes": _integer,
    "log_level": _level,
    "package_root": _path,
    "hooks": _commands,
    "check_commands": _commands,
    "allow_script_packages": _boolean,
    "job_lease": _integer,
    "package_timeout": _number,
    "hook_timeout": _number,
    "check_retry_delay": _number,
}
