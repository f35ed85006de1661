"""Users, sign-in (with rate limiting), sessions, API tokens — each change audited."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from patchwarden.core.errors import (
    AuthenticationRequired,
    Conflict,
    NotFound,
    PermissionDenied,
    RateLimited,
    ValidationFailed,
)
from patchwarden.server.context import ServerConfig
from patchwarden.server.security import (
    PERMISSIONS,
    ROLE_PERMISSIONS,
    ROLES,
    TOKEN_PREFIX,
    format_token,
    hash_password,
    hash_secret,
    new_secret,
    password_problem,
    verify_password,
)
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.lookup import by_id_or_name
from patchwarden.store.models import ApiTokenRow, LoginAttemptRow, SessionRow, UserRow

# A hash to verify against when the user does not exist, so timing does not reveal it.
_DUMMY_HASH = hash_password(secrets.token_hex(16))


def user_json(user: UserRow) -> dict[str, Any]:
    """The API/CLI form of a user (never the hash)."""
    return {
        "id": user.id,
        "username": user.username,
        "role": user.role,
        "disabled": user.disabled,
        "created_at": user.created_at.isoformat(),
        "last_login": user.last_login.isoformat() if user.last_login else None,
    }


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationFailed(f"unknown role {role!r}", hint=f"roles: {', '.join(ROLES)}")


def get_user(session: Session, ident: int | str) -> UserRow:
    """A user by id or username, or NotFound."""
    return by_id_or_name(session, UserRow, ident, name_column=UserRow.username, what="user")


def create_user(
    session: Session, actor: Actor, *, username: str, password: str, role: str, now: datetime
) -> UserRow:
    """Create a user with an argon2id password hash."""
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise ValidationFailed("a username needs 1-100 characters and no spaces")
    _check_role(role)
    problem = password_problem(password)
    if problem:
        raise ValidationFailed(problem)
    if session.scalars(select(UserRow.id).where(UserRow.username == username)).first():
        raise Conflict(f"user {username!r} already exists")
    user = UserRow(
        username=username, password_hash=hash_password(password), role=role, created_at=now
    )
    session.add(user)
    session.flush()
    audit.record(
        session,
        actor,
        "user.create",
        now=now,
        target_type="user",
        target_id=user.id,
        after=user_json(user),
    )
    return user


def update_user(
    session: Session,
    actor: Actor,
    user: UserRow,
    *,
    now: datetime,
    role: str | None = None,
    password: str | None = None,
    disabled: bool | None = None,
) -> UserRow:
    """Change a user's role, password or disabled flag."""
    before = user_json(user)
    if role is not None:
        _check_role(role)
        user.role = role
    if password is not None:
        problem = password_problem(password)
        if problem:
            raise ValidationFailed(problem)
        user.password_hash = hash_password(password)
    if disabled is not None:
        user.disabled = disabled
    if disabled or password is not None:
        # Changing credentials or disabling ends every session of the user.
        session.execute(delete(SessionRow).where(SessionRow.user_id == user.id))
    after = user_json(user)
    if password is not None:
        after["password_changed"] = True
    audit.record(
        session,
        actor,
        "user.update",
        now=now,
        target_type="user",
        target_id=user.id,
        before=before,
        after=after,
    )
    return user


def list_users(session: Session) -> list[UserRow]:
    """Every user, by name."""
    return list(session.scalars(select(UserRow).order_by(UserRow.username)))


def _too_many(session: Session, column: Any, value: str, since: datetime) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(LoginAttemptRow)
            .where(column == value, LoginAttemptRow.at > since)
        )
        or 0
    )


def authenticate(
    session: Session,
    *,
    username: str,
    password: str,
    ip: str,
    now: datetime,
    config: ServerConfig,
) -> UserRow:
    """Check a username and password, enforcing the failed-login limits.

    Failures are recorded in ``login_attempt`` (committed even though the request
    fails, so the caller commits before raising) and limited per user and per IP.
    """
    window = now - timedelta(minutes=config.login_window_minutes)
    user_failures = _too_many(session, LoginAttemptRow.username, username, window)
    ip_failures = _too_many(session, LoginAttemptRow.ip, ip, window)
    if (
        user_failures >= config.login_max_failures_user
        or ip_failures >= config.login_max_failures_ip
    ):
        raise RateLimited(
            "too many failed sign-ins; try again later",
            retry_after=config.login_window_minutes * 60,
        )
    user = session.scalars(select(UserRow).where(UserRow.username == username)).first()
    valid = verify_password(user.password_hash if user else _DUMMY_HASH, password)
    if user is None or not valid or user.disabled:
        session.add(LoginAttemptRow(username=username, ip=ip, at=now))
        audit.record(
            session,
            Actor(username or "?", "user", ip),
            "auth.login_failed",
            now=now,
            target_type="user",
            target_id=username,
        )
        raise AuthenticationRequired("wrong username or password")
    session.execute(delete(LoginAttemptRow).where(LoginAttemptRow.username == username))
    user.last_login = now
    return user


@dataclass(frozen=True, slots=True)
class NewSession:
    """A created browser session: the cookie value and its CSRF token."""

    cookie: str
    csrf_token: str
    expires_at: datetime


def start_session(
    session: Session, user: UserRow, *, ip: str, now: datetime, config: ServerConfig
) -> NewSession:
    """Open a browser session for a signed-in user."""
    cookie = new_secret()
    csrf = secrets.token_urlsafe(24)
    expires = now + timedelta(hours=config.session_hours)
    session.add(
        SessionRow(
            id=hash_secret(cookie),
            user_id=user.id,
            csrf_token=csrf,
            created_at=now,
            expires_at=expires,
            ip=ip,
        )
    )
    audit.record(
        session,
        Actor(user.username, "user", ip),
        "auth.login",
        now=now,
        target_type="user",
        target_id=user.id,
    )
    return NewSession(cookie, csrf, expires)


def end_session(session: Session, cookie: str, actor: Actor, *, now: datetime) -> None:
    """Sign out: delete the session row."""
    session.execute(delete(SessionRow).where(SessionRow.id == hash_secret(cookie)))
    audit.record(session, actor, "auth.logout", now=now, target_type="user", target_id=actor.name)


def token_json(row: ApiTokenRow) -> dict[str, Any]:
    """The API/CLI form of a token (never the secret)."""
    return {
        "id": row.id,
        "name": row.name,
        "user_id": row.user_id,
        "scopes": list(row.scopes),
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at.isoformat(),
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
        "last_used": row.last_used.isoformat() if row.last_used else None,
    }


def create_token(
    session: Session,
    actor: Actor,
    user: UserRow,
    *,
    name: str,
    scopes: Sequence[str] | None,
    days: int,
    now: datetime,
) -> tuple[ApiTokenRow, str]:
    """Create an API token for ``user``; returns the row and the secret (shown once).

    Scopes default to the user's role permissions and may only narrow them.
    """
    if not 1 <= days <= 366:
        raise ValidationFailed("token lifetime must be 1-366 days")
    allowed = ROLE_PERMISSIONS[user.role]
    wanted = set(scopes) if scopes else set(allowed)
    unknown = wanted - set(PERMISSIONS)
    if unknown:
        raise ValidationFailed(f"unknown scopes: {', '.join(sorted(unknown))}")
    beyond = wanted - allowed
    if beyond:
        raise PermissionDenied(f"role {user.role} cannot grant scopes {', '.join(sorted(beyond))}")
    secret = new_secret()
    row = ApiTokenRow(
        user_id=user.id,
        name=name.strip() or "token",
        secret_hash=hash_secret(secret),
        scopes=sorted(wanted),
        created_at=now,
        expires_at=now + timedelta(days=days),
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        actor,
        "token.create",
        now=now,
        target_type="api_token",
        target_id=row.id,
        after=token_json(row),
    )
    return row, format_token(TOKEN_PREFIX, row.id, secret)


def revoke_token(
    session: Session, actor: Actor, token_id: int, *, now: datetime, owner_id: int | None
) -> ApiTokenRow:
    """Revoke a token; ``owner_id`` limits it to that user's tokens (None: any)."""
    row = session.get(ApiTokenRow, token_id)
    if row is None or (owner_id is not None and row.user_id != owner_id):
        raise NotFound(f"no API token {token_id}")
    before = token_json(row)
    row.revoked_at = row.revoked_at or now
    audit.record(
        session,
        actor,
        "token.revoke",
        now=now,
        target_type="api_token",
        target_id=row.id,
        before=before,
        after=token_json(row),
    )
    return row


def list_tokens(session: Session, *, user_id: int | None) -> list[ApiTokenRow]:
    """Tokens of one user (or everyone's when ``user_id`` is None)."""
    query = select(ApiTokenRow).order_by(ApiTokenRow.id)
    if user_id is not None:
        query = query.where(ApiTokenRow.user_id == user_id)
    return list(session.scalars(query))
