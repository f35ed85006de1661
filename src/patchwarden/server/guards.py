"""Pure ASGI middleware guarding every request and response of the app.

``RequestLimits`` bounds request bodies before anything parses them: a declared
``Content-Length`` over the route's limit is refused at once (413) without reading a
byte, and a chunked body is counted as it arrives and cut off at the limit — the
rest is never read, so memory stays bounded whatever a client sends (three anonymous
200 MB sign-in posts used to take the server from 134 MB to 1.7 GB). It also refuses
URLs holding NUL characters, which no route accepts and PostgreSQL cannot store.
(Starlette's own body-limit middleware answers in plain text; ours answers with the
app's JSON error body and picks each route's limit from the configuration.)

``SecurityHeaders`` adds the browser protections to every response: a content security
policy allowing only this origin's scripts and styles, no framing, no MIME sniffing,
no referrer to other sites; under TLS also HSTS, and ``Secure`` on every cookie set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

#: The content security policy of every response. Style attributes stay allowed (the
#: progress bars size their segments with ``style="flex-grow: N"``); scripts and style
#: sheets come only from this origin (the API page's script is /static/api-docs.js).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "style-src-attr 'unsafe-inline'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)
_HSTS = (b"strict-transport-security", b"max-age=31536000")


def _error_response(status: int, kind: str, message: str, hint: str | None) -> dict[str, Any]:
    body = orjson.dumps({"error": message, "hint": hint, "type": kind})
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            # The rest of the body is never read: the connection cannot be reused.
            (b"connection", b"close"),
        ],
    }
    return {"start": start, "body": {"type": "http.response.body", "body": body}}


class _BodyTooLarge(Exception):
    """Raised to the app from ``receive`` when the body passes the limit."""


def _declared_length(scope: Mapping[str, Any]) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isascii() and text.isdigit() else None
    return None


class RequestLimits:
    """Refuse request bodies over the route's limit (413) and URLs with NUL (422).

    ``limits`` maps ``(method, path)`` to a route's own limit (agent inventory uploads,
    script packages); every other request gets ``default``.
    """

    def __init__(self, app: Any, *, default: int, limits: Mapping[tuple[str, str], int]) -> None:
        self.app = app
        self.default = default
        self.limits = dict(limits)

    def limit_for(self, method: str, path: str) -> int:
        """The body limit of a request."""
        return self.limits.get((method, path), self.default)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if "\x00" in scope["path"] or b"%00" in scope.get("query_string", b""):
            await self._refuse(
                send,
                _error_response(
                    422,
                    "ValidationFailed",
                    "the URL contains a NUL character (%00)",
                    "remove it from the path and query",
                ),
            )
            return
        limit = self.limit_for(scope["method"], scope["path"])
        too_large = _error_response(
            413,
            "PayloadTooLarge",
            f"the request body exceeds this route's {limit}-byte limit",
            "send a smaller body",
        )
        declared = _declared_length(scope)
        if declared is not None and declared > limit:
            await self._refuse(send, too_large)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Any:
            nonlocal received, exceeded
            if exceeded:
                raise _BodyTooLarge
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Any) -> None:
            nonlocal started
            if exceeded:
                return  # the app's answer to a body it never got: ours goes out instead
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except Exception:
            # Whatever the app made of the cut-off body (frameworks wrap the error in
            # their own), the refusal is ours to send.
            if not exceeded or started:
                raise
        if exceeded and not started:
            await self._refuse(send, too_large)

    @staticmethod
    async def _refuse(send: Any, response: dict[str, Any]) -> None:
        await send(response["start"])
        await send(response["body"])


def _with_secure(cookie: bytes) -> bytes:
    attributes = {part.strip().lower() for part in cookie.split(b";")[1:]}
    return cookie if b"secure" in attributes else cookie + b"; Secure"


class SecurityHeaders:
    """Add the security headers to every HTTP response.

    ``tls``: the deployment is served over HTTPS (possibly by a proxy in front); then,
    as for requests that arrive over HTTPS, responses carry HSTS and every cookie is
    marked ``Secure`` — including the sign-in form's CSRF cookie and the flash cookie.
    """

    def __init__(self, app: Any, *, tls: bool) -> None:
        self.app = app
        self.tls = tls

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        secure = self.tls or scope.get("scheme") == "https"

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                extra = [*_HEADERS, _HSTS] if secure else list(_HEADERS)
                headers += [(name, value) for name, value in extra if name not in present]
                if secure:
                    headers = [
                        (name, _with_secure(value) if name.lower() == b"set-cookie" else value)
                        for name, value in headers
                    ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
