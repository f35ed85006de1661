"""The HTTP side of agent protocol v1 (docs/agent-protocol.md), on ``urllib``.

* ``https`` verifies the server certificate against the system store or ``ca_file``
  (TLS 1.2 at least); ``http`` is refused unless the URL is loopback or the
  configuration allows clear text (``config.check_server_url``).
* Redirects are not followed: a redirect could carry the credential to another host.
* Proxies come from the usual ``https_proxy`` / ``no_proxy`` environment variables.
* Answers are read up to ``max_response_bytes`` and must be JSON objects.

Failures are sorted for the caller: ``ServerUnreachable`` (connection refused, DNS,
timeout, TLS, 5xx, 408, 429: try again later) or ``ServerRefused`` (other 3xx/4xx: the
request as sent will not succeed; the server's ``{"error", "hint", "type"}`` body is
kept).
"""

from __future__ import annotations

import http.client
import json
import platform
import ssl
import urllib.error
import urllib.request
from email.message import Message
from pathlib import Path
from typing import Any

from patchwarden.agent import AGENT_VERSION, PROTOCOL_VERSION
from patchwarden.agent.config import check_server_url
from patchwarden.agent.errors import ServerRefused, ServerUnreachable
from patchwarden.core.errors import ConfigError

API_PREFIX = "/api/agent/v1"
ENROLL_PATH = f"{API_PREFIX}/enroll"
CHECKIN_PATH = f"{API_PREFIX}/checkin"
INVENTORY_PATH = f"{API_PREFIX}/inventory"
MAX_RESPONSE_BYTES = 1 << 20
_TRANSIENT_4XX = (408, 429)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into an error instead of following it."""

    def redirect_request(  # noqa: PLR0917 - urllib's signature
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Message,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


class ServerClient:
    """Requests to one patchwarden server."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 30.0,
        ca_file: Path | None = None,
        allow_insecure_http: bool = False,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.base_url = check_server_url(base_url, allow_insecure_http=allow_insecure_http)
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        handlers: list[urllib.request.BaseHandler] = [_NoRedirect()]
        if self.base_url.startswith("https:"):
            handlers.append(urllib.request.HTTPSHandler(context=tls_context(ca_file)))
        self._opener = urllib.request.build_opener(*handlers)
        self.user_agent = f"patchwarden-agent/{AGENT_VERSION} python/{platform.python_version()}"

    def enroll(self, payload: dict[str, Any]) -> dict[str, Any]:
        """``POST /enroll``: exchange an enrollment token for a credential."""
        answer = self.request("POST", ENROLL_PATH, json_body(payload))
        _expect(answer, ("asset_id", int), ("credential", str))
        return answer

    def checkin(self, credential: str, payload: dict[str, Any]) -> dict[str, Any]:
        """``POST /checkin``: liveness and inventory hash; the answer says what to do next."""
        answer = self.request("POST", CHECKIN_PATH, json_body(payload), credential=credential)
        _expect(answer, ("upload_inventory", bool), ("next_checkin_seconds", int))
        return answer

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        credential: str = "",
        content_type: str = "application/json",
        content_encoding: str = "",
    ) -> dict[str, Any]:
        """Send one request and return the JSON answer (a 2xx with the same protocol)."""
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if body is not None:
            headers["Content-Type"] = content_type
            if content_encoding:
                headers["Content-Encoding"] = content_encoding
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        # The scheme was checked by check_server_url: only http(s) reaches here.
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path, data=body, headers=headers, method=method
        )
        where = f"{method} {self.base_url}{path}"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read(self.max_response_bytes + 1)
        except urllib.error.HTTPError as exc:
            raise _http_error(where, exc) from None
        except urllib.error.URLError as exc:
            raise ServerUnreachable(f"{where}: {_reason(exc.reason)}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnreachable(f"{where}: {_reason(exc)}") from None
        if len(raw) > self.max_response_bytes:
            raise ServerUnreachable(f"{where}: answer larger than {self.max_response_bytes} bytes")
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            raise ServerUnreachable(f"{where}: answer is not JSON") from None
        if not isinstance(answer, dict):
            raise ServerUnreachable(f"{where}: answer is not a JSON object")
        protocol = answer.get("protocol", PROTOCOL_VERSION)
        if protocol != PROTOCOL_VERSION:
            raise ServerRefused(
                400,
                f"the server speaks agent protocol {protocol}, this agent {PROTOCOL_VERSION}",
                hint="upgrade the agent or the server so they match",
            )
        return answer


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """A verifying client context (system CAs, or ``ca_file``), TLS 1.2 or newer."""
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load CA certificates from {ca_file}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def json_body(payload: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _http_error(where: str, exc: urllib.error.HTTPError) -> Exception:
    """Sort an error status into unreachable (retry) or refused (do not)."""
    status = exc.code
    try:
        raw = exc.read(MAX_RESPONSE_BYTES)
    except (OSError, http.client.HTTPException):
        raw = b""
    message, hint, error_type = _error_body(raw, exc.reason)
    if status >= 500 or status in _TRANSIENT_4XX:
        retry_after = _seconds(exc.headers.get("Retry-After") if exc.headers else None)
        return ServerUnreachable(f"{where}: {status} {message}", retry_after=retry_after)
    if 300 <= status < 400:
        target = exc.headers.get("Location", "") if exc.headers else ""
        return ServerRefused(
            status,
            f"redirected to {target or 'another location'}",
            hint="set server_url to the address the server really answers on",
        )
    return ServerRefused(status, message, error_type=error_type, hint=hint)


def _error_body(raw: bytes, fallback: object) -> tuple[str, str | None, str]:
    """``(error, hint, type)`` from the server's error JSON, else the HTTP reason."""
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        hint = data.get("hint")
        kind = data.get("type")
        return (
            data["error"],
            hint if isinstance(hint, str) else None,
            kind if isinstance(kind, str) else "",
        )
    text = raw.decode("utf-8", errors="replace").strip()[:200]
    return (text or str(fallback)), None, ""


def _reason(reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {reason.verify_message}"
    if isinstance(reason, TimeoutError) or type(reason).__name__ == "timeout":
        return "timed out"
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    return str(reason) or type(reason).__name__


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _expect(answer: dict[str, Any], *fields: tuple[str, type]) -> None:
    for name, kind in fields:
        if not isinstance(answer.get(name), kind):
            raise ServerUnreachable(f"the server's answer lacks {name!r} ({kind.__name__})")
