"""Who is calling, and may they? The dependencies every route declares.

Each route declares exactly one of:

* ``Depends(Permission("…"))`` — a signed-in user (browser session) or an API token
  holding that permission. Session-authenticated unsafe requests must carry the
  session's CSRF token (``X-CSRF-Token`` header or ``csrf_token`` form field).
* ``Depends(AgentAuth())`` — a host agent presenting its per-host credential; it can
  only ever reach its own host's data because its asset id comes from the credential.
  (The check-in route uses ``AgentCheckin``, which authenticates the same credential
  and checks in within one statement; both derive from ``AgentAccess``.)
* ``Depends(Public("why"))`` — deliberately open (login page, health check, agent
  enrollment which is authenticated by the enrollment token in its body).

``tests/server/test_route_security.py`` enumerates every route of the app and fails
when one declares none of these, or when anonymous or under-privileged calls get in.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request, Response
from fastapi.routing import APIRoute
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from patchwarden.core.errors import AuthenticationRequired, PermissionDenied
from patchwarden.server.context import AppContext
from patchwarden.server.security import (
    AGENT_PREFIX,
    PERMISSIONS,
    ROLE_PERMISSIONS,
    TOKEN_PREFIX,
    hash_secret,
    parse_token,
    same_hash,
)
from patchwarden.server.services.agents import authenticate_agent_row
from patchwarden.store.audit import Actor
from patchwarden.store.models import ApiTokenRow, SessionRow, UserRow

SESSION_COOKIE = "pw_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller."""

    kind: str  # "user" (session), "token", "agent"
    name: str
    permissions: frozenset[str]
    user_id: int | None = None
    role: str = ""
    asset_id: int | None = None
    csrf_token: str = ""
    ip: str = ""
    #: When the API token authenticating this caller expires (None: not a token).
    token_expires_at: datetime | None = None

    def agent_asset(self) -> int:
        """The asset an agent principal acts for (only agents have one)."""
        if self.asset_id is None:
            raise PermissionDenied("only a host agent may call this")
        return self.asset_id

    def actor(self) -> Actor:
        """How this caller appears in the audit log."""
        return Actor(self.name, self.kind, self.ip, self.user_id)


def context(request: Request) -> AppContext:
    """The application context."""
    ctx: AppContext = request.app.state.ctx
    return ctx


def db_session(request: Request) -> Iterator[Session]:
    """The request's database session: one transaction per request.

    ``TransactionalRoute`` commits it when the handler returns — *before* the response
    is sent, so a client never sees success for a change that did not commit. On an
    error the transaction is rolled back. (FastAPI runs a dependency's exit code only
    after the response has gone out, too late to commit.)
    """
    session = context(request).db.new_session()
    request.state.db_session = session
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    finally:
        if session.in_transaction():
            session.rollback()  # the handler failed before TransactionalRoute committed
        session.close()


async def finish_session(session: Session, *, commit: bool) -> None:
    """Commit (or roll back) ``session`` on the thread pool.

    The admission gate (``server/admission.py``) keeps requests in progress below the
    pool's connections, so no thread waits for a connection and this hop gets its turn.
    """
    await run_in_threadpool(session.commit if commit else session.rollback)


class TransactionalRoute(APIRoute):
    """An APIRoute that commits the request's session as soon as the handler returns."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def commit_then_respond(request: Request) -> Response:
            try:
                response = await handler(request)
            except BaseException:
                session = getattr(request.state, "db_session", None)
                if session is not None and session.in_transaction():
                    await finish_session(session, commit=False)
                raise
            session = getattr(request.state, "db_session", None)
            if session is not None and session.in_transaction():
                await finish_session(session, commit=True)
            return response

        return commit_then_respond


DbSession = Annotated[Session, Depends(db_session)]


def client_ip(request: Request) -> str:
    """The peer address (a proxy in front should be configured to pass the real one)."""
    return request.client.host if request.client else ""


def _bearer(request: Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def token_principal(
    session: Session, raw: str, now: datetime, *, ip: str, kind: str = "token"
) -> Principal:
    """The user holding API token ``raw``, with the role's permissions narrowed to the
    token's scopes; AuthenticationRequired when the token is not valid now.

    The API (``kind="token"``) and the CLI (``kind="cli"``, cli/identity.py) both
    authenticate tokens here, so one rule decides what a token may do.
    """
    token = parse_token(raw, TOKEN_PREFIX)
    if token is None:
        raise AuthenticationRequired("malformed API token")
    row = session.get(ApiTokenRow, token.row_id)
    if row is None or not same_hash(row.secret_hash, hash_secret(token.secret)):
        raise AuthenticationRequired("invalid API token")
    if row.revoked_at is not None:
        raise AuthenticationRequired("this API token was revoked")
    if row.expires_at <= now:
        raise AuthenticationRequired("this API token has expired", hint="create a new token")
    user = session.get(UserRow, row.user_id)
    if user is None or user.disabled:
        raise AuthenticationRequired("the token's user is disabled")
    row.last_used = now
    granted = ROLE_PERMISSIONS[user.role] & frozenset(row.scopes)
    return Principal(
        kind=kind,
        name=f"{user.username} (token {row.name})",
        permissions=granted,
        user_id=user.id,
        role=user.role,
        ip=ip,
        token_expires_at=row.expires_at,
    )


def _user_from_session(session: Session, cookie: str, now: datetime, ip: str) -> Principal:
    row = session.get(SessionRow, hash_secret(cookie))
    if row is None or row.expires_at <= now:
        raise AuthenticationRequired("your session has expired; sign in again")
    user = session.get(UserRow, row.user_id)
    if user is None or user.disabled:
        raise AuthenticationRequired("your account is disabled")
    return Principal(
        kind="user",
        name=user.username,
        permissions=ROLE_PERMISSIONS[user.role],
        user_id=user.id,
        role=user.role,
        csrf_token=row.csrf_token,
        ip=ip,
    )


def current_user(request: Request, session: Session) -> Principal | None:
    """The signed-in user or token holder, or None for anonymous requests."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    now = context(request).now()
    ip = client_ip(request)
    bearer = _bearer(request)
    principal: Principal | None = None
    if bearer is not None:
        principal = token_principal(session, bearer, now, ip=ip)
    elif cookie := request.cookies.get(SESSION_COOKIE):
        principal = _user_from_session(session, cookie, now, ip)
    request.state.principal = principal
    return principal


async def _form_csrf(request: Request) -> str:
    content_type = request.headers.get("content-type", "")
    if content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        form = await request.form()
        value = form.get("csrf_token")
        return value if isinstance(value, str) else ""
    return ""


class Permission:
    """Dependency: the caller must hold ``permission``."""

    def __init__(self, permission: str) -> None:
        if permission not in PERMISSIONS:
            raise ValueError(f"unknown permission {permission!r}")
        self.permission = permission

    async def __call__(self, request: Request, session: DbSession) -> Principal:
        principal = await run_in_threadpool(current_user, request, session)
        if principal is None:
            raise AuthenticationRequired("sign in or send an API token (Authorization: Bearer)")
        if self.permission not in principal.permissions:
            raise PermissionDenied(
                f"{principal.name} ({principal.role}) lacks the '{self.permission}' permission"
            )
        if principal.kind == "user" and request.method not in SAFE_METHODS:
            sent = request.headers.get(CSRF_HEADER) or await _form_csrf(request)
            if not sent or not same_hash(sent, principal.csrf_token):
                raise PermissionDenied(
                    "missing or wrong CSRF token",
                    hint=f"send the session's token in the {CSRF_HEADER} header",
                )
        return principal


class AgentAccess:
    """Base of the dependencies that admit a host agent by its per-host credential."""


class AgentAuth(AgentAccess):
    """Dependency: a host agent with a valid, unrevoked credential."""

    def __call__(self, request: Request, session: DbSession) -> Principal:
        raw = _bearer(request)
        token = parse_token(raw, AGENT_PREFIX) if raw else None
        if token is None:
            raise AuthenticationRequired("agent credential missing (Authorization: Bearer pwa_…)")
        # One round trip: authenticate and record liveness together.
        asset_id, _ = authenticate_agent_row(
            session, token.row_id, hash_secret(token.secret), context(request).now()
        )
        return agent_principal(request, asset_id)


def agent_principal(request: Request, asset_id: int) -> Principal:
    """The principal of the agent of ``asset_id``, calling through ``request``."""
    return Principal(
        kind="agent",
        name=f"agent:{asset_id}",
        permissions=frozenset(),
        asset_id=asset_id,
        ip=client_ip(request),
    )


def bearer(request: Request) -> str:
    """The request's bearer credential, or an empty string."""
    return _bearer(request) or ""


class Public:
    """Dependency marker: the route is deliberately open; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __call__(self) -> None:
        return None
