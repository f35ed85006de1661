"""The agent's state directory: its credential, what it remembers, its spool.

Layout (the directory is mode 0700, every file 0600)::

    <state_dir>/credential      the host credential pwa_<id>_<secret>, nothing else
    <state_dir>/state.json      AgentState: server, asset id, hashes, last contact
    <state_dir>/lock            flock()ed while a cycle runs (one agent at a time)
    <state_dir>/spool/          reports waiting for the server (see spool.py)
    <state_dir>/spool/rejected/ reports the server refused, with its message
    <state_dir>/jobs/journal/   rollback journals and results of jobs (see journal.py)
    <state_dir>/jobs/artifacts/ script package artifacts, by sha256

Every file is replaced atomically (temporary file, fsync, rename), so a crash or a
power cut leaves the old or the new version, never a torn one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from patchwarden.core.errors import ConfigError

log = logging.getLogger("patchwarden.agent")

DIR_MODE = 0o700
FILE_MODE = 0o600


def utc_now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(timezone.utc)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically; the file is created mode 0600."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    sync_directory(path.parent)


def sync_directory(path: Path) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class AgentState:
    """What the agent remembers between runs (``state.json``).

    ``acknowledged_hash`` is the inventory content hash the server is known to hold
    (it accepted the upload, or a check-in said no upload was needed);
    ``rejected_hash`` the last one the server refused, which is not uploaded again.
    ``revoked`` holds the server's message once it refused the credential.
    ``last_job`` says which job ran last and how it ended.
    """

    server_url: str = ""
    asset_id: int = 0
    enrolled_at: str = ""
    revoked: str = ""
    acknowledged_hash: str = ""
    rejected_hash: str = ""
    last_attempt_at: str = ""
    last_checkin_at: str = ""
    last_upload_at: str = ""
    last_error: str = ""
    failures: int = 0
    next_checkin_seconds: int = 0
    last_job: str = ""
    last_job_at: str = ""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentState:
        """Read a state document; keys this version does not know are ignored."""
        known = {field.name: field for field in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for key, value in data.items():
            field = known.get(key)
            default = field.default if field is not None else None
            if field is not None and isinstance(value, type(default)):
                values[key] = value
        return cls(**values)


class StateDir:
    """The files under ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.credential_path = self.path / "credential"
        self.state_path = self.path / "state.json"
        self.lock_path = self.path / "lock"
        self.spool_path = self.path / "spool"
        self.journal_path = self.path / "jobs" / "journal"

    def ensure(self) -> None:
        """Create the directory (0700), or tighten the mode of an existing one we own."""
        try:
            self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            info = self.path.stat()
            if info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) & 0o077:
                os.chmod(self.path, DIR_MODE)
        except OSError as exc:
            raise ConfigError(
                f"cannot use the agent state directory {self.path}: {exc.strerror or exc}",
                hint="set state_dir in the agent configuration to a writable directory",
            ) from exc

    def read_credential(self) -> str:
        """The stored credential, or ``""`` when there is none."""
        try:
            return self.credential_path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(
                f"cannot read the agent credential {self.credential_path}: {exc}",
                hint="the agent must run as the user that enrolled it (root)",
            ) from exc

    def write_credential(self, credential: str) -> None:
        """Store the credential (mode 0600)."""
        self.ensure()
        write_atomic(self.credential_path, credential.encode("ascii") + b"\n")

    def load(self) -> AgentState:
        """The remembered state (a fresh one when there is none or it is unreadable)."""
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return AgentState()
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable agent state %s: %s", self.state_path, exc)
            return AgentState()
        return AgentState.from_json(data) if isinstance(data, dict) else AgentState()

    def save(self, state: AgentState) -> None:
        """Write the state atomically."""
        self.ensure()
        text = json.dumps(dataclasses.asdict(state), indent=2, sort_keys=True)
        write_atomic(self.state_path, text.encode("utf-8") + b"\n")

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the state directory's lock (waits for another agent process's cycle)."""
        self.ensure()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
