"""Post-install health checks: is the host still doing its job after the patch?

Four kinds, and no others (``CHECK_TYPES``):

* ``systemd`` — ``systemctl is-active -- <unit>`` exits 0;
* ``http`` — a GET of the URL answers ``expect_status`` (redirects are not followed and
  proxies from the environment are not used: the probe is about this host);
* ``tcp`` — a TCP connection to ``host:port`` opens;
* ``command`` — a command the *host's* configuration defines under that name exits 0
  (the server sends only the name, never the command).

Each attempt has ``timeout`` seconds; a failing check is tried again up to
``retries`` more times, ``retry_delay`` seconds apart (services take a moment to come
back after a restart). Checks run one after the other, in the job's order.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import IO, Any, Union

from patchwarden.agent.backends.base import command_env, run_command

CHECK_TYPES = ("systemd", "http", "tcp", "command")


@dataclass(frozen=True)
class SystemdCheck:
    """A systemd unit must be active."""

    unit: str

    def to_json(self) -> dict[str, Any]:
        """The payload form."""
        return {"type": "systemd", "unit": self.unit}


@dataclass(frozen=True)
class HttpCheck:
    """An HTTP(S) URL must answer with ``expect_status``."""

    url: str
    expect_status: int = 200

    def to_json(self) -> dict[str, Any]:
        """The payload form."""
        return {"type": "http", "url": self.url, "expect_status": self.expect_status}


@dataclass(frozen=True)
class TcpCheck:
    """A TCP port must accept connections."""

    host: str
    port: int

    def to_json(self) -> dict[str, Any]:
        """The payload form."""
        return {"type": "tcp", "host": self.host, "port": self.port}


@dataclass(frozen=True)
class CommandCheck:
    """A command defined in the agent's configuration under ``name`` must exit 0."""

    name: str

    def to_json(self) -> dict[str, Any]:
        """The payload form."""
        return {"type": "command", "name": self.name}


Check = Union[SystemdCheck, HttpCheck, TcpCheck, CommandCheck]


@dataclass(frozen=True)
class CheckOutcome:
    """How one check ended, after its retries."""

    check: Check
    ok: bool
    detail: str
    attempts: int
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The result form: ``{"check", "ok", "detail", "attempts"}``."""
        return {
            "check": self.check.to_json(),
            "ok": self.ok,
            "detail": self.detail,
            "attempts": self.attempts,
        }


def run_checks(
    checks: Sequence[Check],
    *,
    timeout: float,
    retries: int,
    retry_delay: float,
    commands: Mapping[str, Sequence[str]],
    sleep: Callable[[float], None] = time.sleep,
) -> list[CheckOutcome]:
    """Run every check (each until it passes or its attempts run out)."""
    outcomes = []
    for check in checks:
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            ok, detail = probe(check, timeout=timeout, commands=commands)
            if ok or attempts > retries:
                break
            sleep(retry_delay)
        outcomes.append(CheckOutcome(check, ok, detail, attempts, time.monotonic() - started))
    return outcomes


def probe(
    check: Check, *, timeout: float, commands: Mapping[str, Sequence[str]]
) -> tuple[bool, str]:
    """One attempt of ``check``: ``(passed, what was seen)``."""
    if isinstance(check, SystemdCheck):
        return _systemd(check, timeout)
    if isinstance(check, HttpCheck):
        return _http(check, timeout)
    if isinstance(check, TcpCheck):
        return _tcp(check, timeout)
    return _command(check, timeout, commands)


def _systemd(check: SystemdCheck, timeout: float) -> tuple[bool, str]:
    # "--" ends the options: a unit name can never be read as one.
    result = run_command(["systemctl", "is-active", "--", check.unit], timeout=timeout)
    state = result.output.strip().splitlines()
    seen = state[-1] if state else result.summary()
    return result.ok, f"{check.unit}: {seen}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report a redirect as its own status instead of following it elsewhere."""

    def redirect_request(  # noqa: PLR0917 - urllib fixes this signature
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def _http(check: HttpCheck, timeout: float) -> tuple[bool, str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    request = urllib.request.Request(  # noqa: S310 - the scheme was checked to be http(s)
        check.url, headers={"User-Agent": "patchwarden-agent-check"}
    )
    try:
        with opener.open(request, timeout=timeout) as answer:
            status = int(answer.status)
    except urllib.error.HTTPError as exc:
        status = int(exc.code)
        exc.close()
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, f"GET {check.url}: {reason}"
    ok = status == check.expect_status
    return ok, f"GET {check.url}: status {status} (expected {check.expect_status})"


def _tcp(check: TcpCheck, timeout: float) -> tuple[bool, str]:
    try:
        with socket.create_connection((check.host, check.port), timeout=timeout):
            pass
    except OSError as exc:
        return False, f"{check.host}:{check.port}: {exc.strerror or exc}"
    return True, f"{check.host}:{check.port}: connected"


def _command(
    check: CommandCheck, timeout: float, commands: Mapping[str, Sequence[str]]
) -> tuple[bool, str]:
    argv = commands.get(check.name)
    if not argv:
        return False, f"no command {check.name!r} is defined on this host"
    result = run_command(argv, timeout=timeout, env=command_env())
    last = result.output.strip().splitlines()
    seen = f": {last[-1][:200]}" if last else ""
    return result.ok, f"{check.name}: {result.summary()}{seen}"
