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

Jobs travel in the server's wire form (``GET /jobs``); ``job_payload`` turns one into
the payload ``jobs.execute_job`` validates (docs/agent-protocol.md, "Jobs").
"""

from __future__ import annotations

import hashlib
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
from patchwarden.core.errors import BackendError, ConfigError

API_PREFIX = "/api/agent/v1"
ENROLL_PATH = f"{API_PREFIX}/enroll"
CHECKIN_PATH = f"{API_PREFIX}/checkin"
INVENTORY_PATH = f"{API_PREFIX}/inventory"
#: Carries the inventory's content hash, so the server can acknowledge an upload
#: before validating every package (``server.services.agents.INVENTORY_HASH_HEADER``).
INVENTORY_HASH_HEADER = "X-Patchwarden-Inventory-Hash"
JOBS_PATH = f"{API_PREFIX}/jobs"
MAX_RESPONSE_BYTES = 1 << 20
SHA256_HEADER = "X-Content-SHA256"
#: What the server adds to a job for people (what it fixes, the risk it removes); the
#: agent acts on none of it, so it is removed before the job is validated.
SERVER_ANNOTATIONS = ("advisories", "risk_removed")
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

    def claim_jobs(self, credential: str) -> list[dict[str, Any]]:
        """``GET /jobs``: claim this host's released jobs; their payloads, in wire form."""
        answer = self.request("GET", JOBS_PATH, None, credential=credential)
        jobs = answer.get("jobs")
        if not isinstance(jobs, list) or not all(isinstance(job, dict) for job in jobs):
            raise ServerUnreachable("the server's answer lacks 'jobs' (a list of objects)")
        return jobs

    def heartbeat(self, credential: str, job_id: int, attempt: int) -> dict[str, Any]:
        """``POST /jobs/{id}/heartbeat``: keep the claim on a job this host is running."""
        body = json_body({"protocol": PROTOCOL_VERSION, "attempt": attempt})
        return self.request("POST", job_path(job_id, "heartbeat"), body, credential=credential)

    def download_artifact(self, url: str, credential: str, *, max_bytes: int) -> bytes:
        """A script package artifact from this server, checked against the sha256 the
        server sends with it (``X-Content-SHA256``).

        Only URLs on this server are fetched: the request carries the credential.
        Raises ``BackendError`` for a URL elsewhere, a missing header or a digest
        mismatch, and the usual ``AgentError`` when the server fails or the body is
        over ``max_bytes``.
        """
        prefix = self.base_url + "/"
        if not url.startswith(prefix):
            raise BackendError(
                f"artifact URL {url} is not on this agent's server {self.base_url}; "
                "the agent sends its credential nowhere else"
            )
        raw, headers = self._exchange(
            "GET",
            url[len(self.base_url) :],
            None,
            {"Accept": "application/octet-stream"},
            credential=credential,
            limit=max_bytes,
        )
        announced = (headers.get(SHA256_HEADER) or "").strip().lower()
        digest = hashlib.sha256(raw).hexdigest()
        if not announced:
            raise BackendError(f"the server sent {url} without an {SHA256_HEADER} header")
        if digest != announced:
            raise BackendError(
                f"{url} arrived with sha256 {digest}, the server announced {announced}"
            )
        return raw

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        credential: str = "",
        content_type: str = "application/json",
        content_encoding: str = "",
        extra_headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Send one request and return the JSON answer (a 2xx with the same protocol)."""
        headers = {"Accept": "application/json", **(extra_headers or {})}
        if body is not None:
            headers["Content-Type"] = content_type
            if content_encoding:
                headers["Content-Encoding"] = content_encoding
        raw, _headers = self._exchange(
            method, path, body, headers, credential=credential, limit=self.max_response_bytes
        )
        where = f"{method} {self.base_url}{path}"
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

    def _exchange(
        self,
        method: str,
        path: str,
        body: bytes | None,
        headers: dict[str, str],
        *,
        credential: str,
        limit: int,
    ) -> tuple[bytes, Message]:
        """Send one request; the answer's body (at most ``limit`` bytes) and headers."""
        headers = {**headers, "User-Agent": self.user_agent}
        if credential:
            headers["Authorization"] = f"Bearer {credential}"
        # The scheme was checked by check_server_url: only http(s) reaches here.
        request = urllib.request.Request(  # noqa: S310
            self.base_url + path, data=body, headers=headers, method=method
        )
        where = f"{method} {self.base_url}{path}"
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw: bytes = response.read(limit + 1)
                answer_headers: Message = response.headers
        except urllib.error.HTTPError as exc:
            raise _http_error(where, exc) from None
        except urllib.error.URLError as exc:
            raise ServerUnreachable(f"{where}: {_reason(exc.reason)}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ServerUnreachable(f"{where}: {_reason(exc)}") from None
        if len(raw) > limit:
            raise ServerUnreachable(f"{where}: answer larger than {limit} bytes")
        return raw, answer_headers


def job_path(job_id: int, action: str) -> str:
    """The route of one job: ``/jobs/{id}/heartbeat`` or ``/jobs/{id}/result``."""
    return f"{JOBS_PATH}/{job_id}/{action}"


def job_payload(wire: dict[str, Any], base_url: str) -> dict[str, Any]:
    """The ``jobs.execute_job`` payload for a job as the server sent it.

    The server's annotations (``SERVER_ANNOTATIONS``) are dropped; a rollback job
    restores the journal of ``rollback_of``, so package lists sent along with it are
    dropped too; a script package named by its server ``id`` is fetched from this
    server's artifact route. Everything else is passed on unchanged for validation.
    """
    payload = {key: value for key, value in wire.items() if key not in SERVER_ANNOTATIONS}
    if payload.get("kind") == "rollback":
        payload.pop("packages", None)
        payload.pop("script_package", None)
    script = payload.get("script_package")
    if isinstance(script, dict) and type(script.get("id")) is int:
        artifact = f"{base_url}{API_PREFIX}/script-packages/{script['id']}/artifact"
        payload["script_package"] = {
            **{key: value for key, value in script.items() if key != "id"},
            "url": artifact,
        }
    return payload


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
