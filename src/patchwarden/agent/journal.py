"""The rollback journal: what was installed before a job changed anything.

One file per job, ``<journal_dir>/<job_id>.json`` (format ``patchwarden-journal/1``),
written atomically (temporary file, fsync, rename) *before* the first install
command. Jobs are delivered at least once, so a later attempt of the same job finds
the file and keeps it: ``before`` always describes the host as the first attempt found
it, never the versions that attempt installed. The entry also remembers when this
job asked for a reboot (the boot id at that moment), so a repeated attempt does not
reboot the host again.

``<job_id>.result.json`` holds the last result computed for the job, written before a
reboot is requested so it survives the reboot.

Files are 0600 in a 0700 folder: they name the host's software and its versions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from patchwarden.core.errors import BackendError

JOURNAL_FORMAT = "patchwarden-journal/1"


class JournalError(BackendError):
    """A journal file cannot be written, or what is on disk is not a journal."""


@dataclass(frozen=True)
class JournalEntry:
    """What one job recorded before it installed anything.

    ``before`` maps each target to its installed version (several, space-separated,
    for packages installed side by side) or ``None`` when it was absent.
    ``script_package`` is the script package definition (payload form) for
    ``backend == "script"``, so that a rollback can run its uninstall command.
    ``reboot_boot_id`` is the boot id when this job asked for a reboot (``""``: never).
    """

    job_id: int
    kind: str
    backend: str
    before: dict[str, str | None]
    created_at: str
    rollback_of: int | None = None
    script_package: dict[str, Any] | None = None
    reboot_boot_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {"format": JOURNAL_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: Any, source: str) -> JournalEntry:
        """Read a journal file's content; ``JournalError`` when it is not one."""
        if not isinstance(data, dict) or data.get("format") != JOURNAL_FORMAT:
            raise JournalError(f"{source}: not a {JOURNAL_FORMAT} file")
        before = data.get("before")
        valid = (
            isinstance(data.get("job_id"), int)
            and isinstance(data.get("kind"), str)
            and isinstance(data.get("backend"), str)
            and isinstance(data.get("created_at"), str)
            and isinstance(before, dict)
            and all(
                isinstance(name, str) and (version is None or isinstance(version, str))
                for name, version in before.items()
            )
            and (data.get("rollback_of") is None or isinstance(data.get("rollback_of"), int))
            and (data.get("script_package") is None or isinstance(data["script_package"], dict))
            and isinstance(data.get("reboot_boot_id", ""), str)
        )
        if not valid:
            raise JournalError(f"{source}: malformed journal entry")
        return cls(
            job_id=data["job_id"],
            kind=data["kind"],
            backend=data["backend"],
            before=dict(data["before"]),
            created_at=data["created_at"],
            rollback_of=data.get("rollback_of"),
            script_package=data.get("script_package"),
            reboot_boot_id=data.get("reboot_boot_id", ""),
        )


class Journal:
    """The journal folder of one agent."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def entry_path(self, job_id: int) -> Path:
        """Where the journal of ``job_id`` lives."""
        return self.directory / f"{int(job_id)}.json"

    def result_path(self, job_id: int) -> Path:
        """Where the last result of ``job_id`` is kept."""
        return self.directory / f"{int(job_id)}.result.json"

    def load(self, job_id: int) -> JournalEntry | None:
        """The journal of ``job_id``, ``None`` when the job has none on this host."""
        path = self.entry_path(job_id)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise JournalError(f"cannot read {path}: {exc.strerror or exc}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise JournalError(f"{path}: not JSON ({exc})") from exc
        entry = JournalEntry.from_json(data, str(path))
        if entry.job_id != job_id:
            raise JournalError(f"{path}: holds job {entry.job_id}, not {job_id}")
        return entry

    def save(self, entry: JournalEntry) -> None:
        """Write ``entry`` atomically (replacing the job's previous entry)."""
        self._write(self.entry_path(entry.job_id), entry.to_json())

    def save_result(self, job_id: int, result: dict[str, Any]) -> None:
        """Keep the last result of ``job_id`` (atomically)."""
        self._write(self.result_path(job_id), result)

    def load_result(self, job_id: int) -> dict[str, Any] | None:
        """The last result kept for ``job_id``, ``None`` when there is none or it is
        unreadable (a result is a convenience copy, the journal is the record)."""
        try:
            data = json.loads(self.result_path(job_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _write(self, path: Path, data: dict[str, Any]) -> None:
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=1, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, path)
            _fsync_directory(self.directory)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise JournalError(f"cannot write {path}: {exc.strerror or exc}") from exc


def _fsync_directory(directory: Path) -> None:
    """Make the rename durable (a crash right after must not lose the journal)."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
