"""``ScriptBackend``: third-party software without a repository ("script packages").

An administrator registers a script package on the server: an artifact (served by the
server, with its sha256) and four commands, each an argv list — ``detect``, ``install``,
``verify`` and ``uninstall``. The agent runs them only when the host's own
configuration allows script packages, and only after the artifact's sha256 matched:

1. ``prepare`` — fetch the artifact through the agent's downloader (or reuse the copy
   already stored), check size and sha256, store it under
   ``<artifact_dir>/<sha256>/<file name>``; a mismatch stops the job before any
   command has run;
2. ``installed`` — ``detect`` exits 0 when this version is installed (so a repeated job
   is a no-op), anything else means "not installed";
3. ``install`` — ``install``, then ``verify`` (exit 0 required);
4. ``restore`` — ``uninstall`` when the journal says the package was not installed
   before. A script package has no version history: rollback removes what the job
   installed and cannot bring back an earlier version.

In every argv item the text ``{artifact}`` is replaced by the stored artifact's path;
commands run in the artifact's folder with ``PATCHWARDEN_ARTIFACT``,
``PATCHWARDEN_PACKAGE`` and ``PATCHWARDEN_VERSION`` set, and without a shell.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from patchwarden.agent.backends.base import (
    CommandResult,
    PackageTarget,
    command_env,
    run_command,
)
from patchwarden.core.errors import BackendError

DEFAULT_TIMEOUT = 1800.0
DEFAULT_MAX_BYTES = 512 * 1024 * 1024
ARTIFACT_PLACEHOLDER = "{artifact}"
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")

#: Fetches a URL and returns its body; raises on any failure (the agent passes one
#: that uses its authenticated client).
Downloader = Callable[[str], bytes]


@dataclass(frozen=True)
class ScriptPackage:
    """A script package as the server sent it (validated by ``jobs.validate_job``)."""

    name: str
    version: str
    url: str
    sha256: str
    detect: tuple[str, ...]
    install: tuple[str, ...]
    verify: tuple[str, ...]
    uninstall: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """The payload form (as kept in the rollback journal)."""
        return {
            "name": self.name,
            "version": self.version,
            "url": self.url,
            "sha256": self.sha256,
            "detect": list(self.detect),
            "install": list(self.install),
            "verify": list(self.verify),
            "uninstall": list(self.uninstall),
        }


class ScriptBackend:
    """Runs one script package's commands (see the module docstring)."""

    name = "script"

    def __init__(
        self,
        package: ScriptPackage,
        *,
        artifact_dir: Path,
        downloader: Downloader | None,
        timeout: float = DEFAULT_TIMEOUT,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self.package = package
        self.downloader = downloader
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.artifact = Path(artifact_dir) / package.sha256 / _file_name(package.url)

    def argv(self, command: Sequence[str]) -> list[str]:
        """``command`` with ``{artifact}`` replaced by the stored artifact's path."""
        return [item.replace(ARTIFACT_PLACEHOLDER, str(self.artifact)) for item in command]

    def installed(self, names: Sequence[str]) -> dict[str, str | None]:
        """``{name: version}`` when ``detect`` exits 0, else ``{name: None}``."""
        detected = self._run(self.package.detect)
        version = self.package.version if detected.ok else None
        return {name: (version if name == self.package.name else None) for name in names}

    def prepare(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """Fetch and verify the artifact (only when something is to be installed).

        The bandwidth limit is the downloader's business. Raises ``BackendError`` on a
        failed download, an oversized body or a sha256 mismatch: nothing has run then.
        """
        if not targets:
            return []
        started = time.monotonic()
        step = ("download", self.package.url)
        if _sha256_file(self.artifact) == self.package.sha256:
            return [CommandResult(step, 0, f"reusing {self.artifact} (sha256 matches)", 0.0)]
        if self.downloader is None:
            raise BackendError("this agent has no downloader for script package artifacts")
        try:
            body = self.downloader(self.package.url)
        except Exception as exc:  # the downloader is the agent's; any failure stops the job
            raise BackendError(f"cannot download {self.package.url}: {exc}") from exc
        if len(body) > self.max_bytes:
            raise BackendError(
                f"artifact {self.package.url} is {len(body)} bytes, over the "
                f"{self.max_bytes}-byte limit; nothing was run"
            )
        digest = hashlib.sha256(body).hexdigest()
        if digest != self.package.sha256:
            raise BackendError(
                f"artifact {self.package.url} has sha256 {digest}, expected "
                f"{self.package.sha256}; refusing to run anything"
            )
        self._store(body)
        detail = f"{len(body)} bytes, sha256 {digest} verified, stored at {self.artifact}"
        return [CommandResult(step, 0, detail, time.monotonic() - started)]

    def install(self, targets: Sequence[PackageTarget], bandwidth_kbps: int) -> list[CommandResult]:
        """``install`` then ``verify``; stops at the first failure."""
        if not targets:
            return []
        results = [self._run(self.package.install)]
        if results[-1].ok:
            results.append(self._run(self.package.verify))
        return results

    def restore(
        self,
        wanted: Mapping[str, str | None],
        current: Mapping[str, str | None],
        bandwidth_kbps: int,
    ) -> list[CommandResult]:
        """``uninstall`` when the package was absent before and is installed now."""
        name = self.package.name
        if wanted.get(name) is None and current.get(name) is not None:
            return [self._run(self.package.uninstall)]
        if wanted.get(name) is not None and wanted.get(name) != current.get(name):
            raise BackendError(
                f"script package {name} cannot go back to version {wanted[name]}: "
                "only its uninstall command is known"
            )
        return []

    def _run(self, command: Sequence[str]) -> CommandResult:
        try:
            # The commands run in the artifact's folder, which a rollback may lack.
            self.artifact.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise BackendError(f"cannot create {self.artifact.parent}: {exc}") from exc
        env = command_env(
            {
                "PATCHWARDEN_ARTIFACT": str(self.artifact),
                "PATCHWARDEN_PACKAGE": self.package.name,
                "PATCHWARDEN_VERSION": self.package.version,
            }
        )
        return run_command(
            self.argv(command), timeout=self.timeout, env=env, cwd=self.artifact.parent
        )

    def _store(self, body: bytes) -> None:
        folder = self.artifact.parent
        temporary = folder / f".{self.artifact.name}.{os.getpid()}.tmp"
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Executable by root only: an installer may be a program in its own right.
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(body)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.artifact)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise BackendError(f"cannot store the artifact: {exc.strerror or exc}") from exc


def _file_name(url: str) -> str:
    """The URL's last path segment when it is a plain file name, else ``artifact``."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return name if _FILE_NAME.match(name) and name not in (".", "..") else "artifact"


def _sha256_file(path: Path) -> str:
    """Hex sha256 of a stored artifact, ``""`` when there is none to read."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 16), b""):
                digest.update(block)
    except OSError:
        return ""
    return digest.hexdigest()
