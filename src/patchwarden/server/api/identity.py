"""Sign-in (JSON), users, API tokens, enrollment tokens."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from patchwarden.core.errors import AuthenticationRequired, PermissionDenied, RateLimited
from patchwarden.server.auth import (
    SESSION_COOKIE,
    DbSession,
    Permission,
    Principal,
    Public,
    TransactionalRoute,
    client_ip,
    context,
)
from patchwarden.server.openapi import errors
from patchwarden.server.services import agents, identity
from patchwarden.server.types import Id, JsonObject, Text

router = APIRouter(route_class=TransactionalRoute, prefix="/api/v1", tags=["identity"])

Reader = Annotated[Principal, Depends(Permission("read"))]
SelfTokens = Annotated[Principal, Depends(Permission("tokens:self"))]
UserAdmin = Annotated[Principal, Depends(Permission("users:write"))]
UserReader = Annotated[Principal, Depends(Permission("audit:read"))]
Enroller = Annotated[Principal, Depends(Permission("enroll:write"))]


class Credentials(BaseModel):
    """Username and password."""

    username: Text = Field(..., max_length=100)
    password: Text = Field(..., max_length=1024)


def sign_in(request: Request, response: Response, username: str, password: str) -> dict[str, Any]:
    """Check credentials (rate-limited), open a session, set its cookie."""
    ctx = context(request)
    ip = client_ip(request)
    failure: Exception | None = None
    with ctx.db.session() as session:
        try:
            user = identity.authenticate(
                session,
                username=username,
                password=password,
                ip=ip,
                now=ctx.now(),
                config=ctx.config,
            )
            opened = identity.start_session(session, user, ip=ip, now=ctx.now(), config=ctx.config)
            body = {"user": identity.user_json(user), "csrf_token": opened.csrf_token}
        except (AuthenticationRequired, RateLimited) as exc:
            failure = exc  # keep the failed-attempt record: commit, then refuse
    if failure is not None:
        raise failure
    response.set_cookie(
        SESSION_COOKIE,
        opened.cookie,
        httponly=True,
        samesite="lax",
        secure=ctx.config.secure_cookies,
        max_age=ctx.config.session_hours * 3600,
        path="/",
    )
    return body


@router.post(
    "/session",
    dependencies=[Depends(Public("this is how one signs in"))],
    responses=errors(401, 429),
)
def login(body: Credentials, request: Request, response: Response) -> dict[str, Any]:
    """Sign in; sets the session cookie and returns the CSRF token for later writes."""
    return sign_in(request, response, body.username, body.password)


@router.delete("/session")
def logout(request: Request, response: Response, who: Reader, session: DbSession) -> dict[str, str]:
    """Sign out of the current browser session."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        identity.end_session(session, cookie, who.actor(), now=context(request).now())
    response.delete_cookie(SESSION_COOKIE, path="/")
    return {"status": "signed out"}


@router.get("/me")
def me(who: Reader) -> dict[str, Any]:
    """Who the caller is and what they may do."""
    return {
        "name": who.name,
        "kind": who.kind,
        "role": who.role,
        "permissions": sorted(who.permissions),
        "csrf_token": who.csrf_token or None,
    }


# ------------------------------------------------------------------------- users


class NewUser(BaseModel):
    """A user to create."""

    username: Text = Field(..., max_length=100)
    password: Text = Field(..., max_length=1024)
    role: Text = Field(..., max_length=40)


class UserChange(BaseModel):
    """Changes to a user (all optional)."""

    role: Text | None = Field(None, max_length=40)
    password: Text | None = Field(None, max_length=1024)
    disabled: bool | None = None


@router.get("/users")
def list_users(_who: UserReader, session: DbSession) -> dict[str, Any]:
    """Every user."""
    users = identity.list_users(session)
    return {"items": [identity.user_json(u) for u in users], "total": len(users)}


@router.post("/users", status_code=201, responses=errors(409))
def create_user(
    body: NewUser, request: Request, who: UserAdmin, session: DbSession
) -> dict[str, Any]:
    """Create a user."""
    user = identity.create_user(
        session,
        who.actor(),
        username=body.username,
        password=body.password,
        role=body.role,
        now=context(request).now(),
        within=who.permissions,
    )
    return identity.user_json(user)


@router.patch("/users/{user_id}")
def update_user(
    user_id: Id, body: UserChange, request: Request, who: UserAdmin, session: DbSession
) -> dict[str, Any]:
    """Change a user's role, password or disabled flag."""
    user = identity.get_user(session, user_id)
    if user.id == who.user_id and (body.disabled or (body.role and body.role != "admin")):
        raise PermissionDenied("you cannot disable or demote yourself")
    identity.update_user(
        session,
        who.actor(),
        user,
        now=context(request).now(),
        role=body.role,
        password=body.password,
        disabled=body.disabled,
        within=who.permissions,
    )
    return identity.user_json(user)


# ------------------------------------------------------------------------ tokens


class NewToken(BaseModel):
    """An API token to create for the caller."""

    name: Text = Field("token", max_length=100)
    scopes: list[Annotated[Text, Field(max_length=40)]] | None = Field(None, max_length=20)
    days: int | None = Field(
        None,
        ge=1,
        le=366,
        description="Lifetime (default 90 days; a token creating a token: at most its own).",
    )


@router.get("/tokens")
def list_tokens(who: SelfTokens, session: DbSession) -> dict[str, Any]:
    """The caller's API tokens."""
    rows = identity.list_tokens(session, user_id=who.user_id)
    return {"items": [identity.token_json(r) for r in rows], "total": len(rows)}


@router.post("/tokens", status_code=201)
def create_token(
    body: NewToken, request: Request, who: SelfTokens, session: DbSession
) -> dict[str, Any]:
    """Create an API token for the caller; the secret is in the answer only.

    A token creating a token passes on at most its own scopes and lifetime."""
    if who.user_id is None:
        raise PermissionDenied("only users have API tokens")
    user = identity.get_user(session, who.user_id)
    from_token = who.token_expires_at is not None  # an API token, not a browser session
    row, secret = identity.create_token(
        session,
        who.actor(),
        user,
        name=body.name,
        scopes=body.scopes,
        days=body.days,
        now=context(request).now(),
        within=who.permissions if from_token else None,
        not_after=who.token_expires_at,
    )
    return {**identity.token_json(row), "token": secret}


@router.delete("/tokens/{token_id}")
def revoke_token(
    token_id: Id, request: Request, who: SelfTokens, session: DbSession
) -> dict[str, Any]:
    """Revoke one of the caller's tokens (admins: anyone's)."""
    owner = None if "users:write" in who.permissions else who.user_id
    row = identity.revoke_token(
        session, who.actor(), token_id, now=context(request).now(), owner_id=owner
    )
    return identity.token_json(row)


# ------------------------------------------------------------- enrollment tokens


class NewEnrollmentToken(BaseModel):
    """An enrollment token to create."""

    hours: int = Field(24, ge=1, le=24 * 90)
    max_uses: int = Field(1, ge=1, le=100_000)
    note: Text = Field("", max_length=200)
    defaults: JsonObject = Field(default_factory=dict)
    asset_id: Id | None = Field(
        None, description="Bind the token to this asset: a single-use re-enroll token."
    )


@router.get("/enrollment-tokens")
def list_enrollment_tokens(_who: Enroller, session: DbSession) -> dict[str, Any]:
    """Every enrollment token."""
    rows = agents.list_enrollment_tokens(session)
    return {"items": [agents.enrollment_json(r) for r in rows], "total": len(rows)}


@router.post("/enrollment-tokens", status_code=201, responses=errors(404))
def create_enrollment_token(
    body: NewEnrollmentToken, request: Request, who: Enroller, session: DbSession
) -> dict[str, Any]:
    """Create an enrollment token; the secret is in the answer only."""
    row, secret = agents.create_enrollment_token(
        session,
        who.actor(),
        now=context(request).now(),
        hours=body.hours,
        max_uses=body.max_uses,
        note=body.note,
        defaults=body.defaults,
        asset_id=body.asset_id,
    )
    return {**agents.enrollment_json(row), "token": secret}


@router.delete("/enrollment-tokens/{token_id}")
def revoke_enrollment_token(
    token_id: Id, request: Request, who: Enroller, session: DbSession
) -> dict[str, Any]:
    """Revoke an enrollment token."""
    row = agents.revoke_enrollment_token(session, who.actor(), token_id, now=context(request).now())
    return agents.enrollment_json(row)
