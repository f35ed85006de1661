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
from patchwarden.server.types import text_problem
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


def _check_grantable(role: str, within: frozenset[str] | None, what: str) -> None:
    """Refuse to hand out ``role`` when it holds permissions the caller lacks.

    ``within`` is the caller's own permissions (None: no limit, e.g. the local CLI). A
    scoped API token with ``users:write`` could otherwise create an admin, or set the
    password of a stronger user and sign in as them.
    """
    if within is None:
        return
    missing = ROLE_PERMISSIONS[role] - within
    if missing:
        raise PermissionDenied(
            f"cannot {what}: role {role} holds permissions you lack ({', '.join(sorted(missing))})",
            hint="only a caller holding every permission of a role can grant it",
        )


def get_user(session: Session, ident: int | str) -> UserRow:
    """A user by id or username, or NotFound."""
    return by_id_or_name(session, UserRow, ident, name_column=UserRow.username, what="user")


def create_user(
    session: Session,
    actor: Actor,
    *,
    username: str,
    password: str,
    role: str,
    now: datetime,
    within: frozenset[str] | None = None,
) -> UserRow:
    """Create a user with an argon2id password hash.

    ``within``: the caller's permissions; a role beyond them is refused.
    """
    username = username.strip()
    if not username or len(username) > 100 or any(c.isspace() for c in username):
        raise ValidationFailed("a username needs 1-100 characters and no spaces")
    _check_role(role)
    _check_grantable(role, within, f"create user {username!r}")
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
    within: frozenset[str] | None = None,
) -> UserRow:
    """Change a user's role, password or disabled flag.

    ``within``: the caller's permissions. Anything but disabling (a new role, a new
    password, enabling) hands out the user's rights, so the user's current and new
    role must not hold permissions beyond them.
    """
    before = user_json(user)
    if role is not None:
        _check_role(role)
    if role is not None or password is not None or disabled is False:
        _check_grantable(user.role, within, f"change user {user.username!r}")
    if role is not None:
        _check_grantable(role, within, f"give user {user.username!r} role {role}")
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


def _failures(session: Session, since: datetime, *conditions: Any) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(LoginAttemptRow)
            .where(LoginAttemptRow.at > since, *conditions)
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
    fails, so the caller commits before raising) and limited per (user, IP) and per
    IP. Counting a user's failures per IP means guessing from one address cannot lock
    the user out everywhere else (five bad passwords from anyone used to lock the
    real admin out); ``ip`` is the peer address, or the forwarded one only from
    trusted proxies (``PATCHWARDEN_TRUSTED_PROXIES``).
    """
    for value in (username, password):
        problem = text_problem(value)
        if problem:
            raise ValidationFailed(f"a username or password {problem}")
    window = now - timedelta(minutes=config.login_window_minutes)
    pair_failures = _failures(
        session, window, LoginAttemptRow.username == username, LoginAttemptRow.ip == ip
    )
    ip_failures = _failures(session, window, LoginAttemptRow.ip == ip)
    if (
        pair_failures >= config.login_max_failures_user
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
    session.execute(
        delete(LoginAttemptRow).where(
            LoginAttemptRow.username == username, LoginAttemptRow.ip == ip
        )
    )
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


DEFAULT_TOKEN_DAYS = 90


def create_token(
    session: Session,
    actor: Actor,
    user: UserRow,
    *,
    name: str,
    scopes: Sequence[str] | None,
    days: int | None,
    now: datetime,
    within: frozenset[str] | None = None,
    not_after: datetime | None = None,
) -> tuple[ApiTokenRow, str]:
    """Create an API token for ``user``; returns the row and the secret (shown once).

    Scopes default to the user's role permissions and may only narrow them. When a
    token creates the token, ``within`` (its permissions) and ``not_after`` (its expiry)
    bound the new one too: a token never mints a broader or longer-lived token. Without
    ``days`` the lifetime is 90 days, shortened to ``not_after``; more days than
    ``not_after`` allows are refused.
    """
    if days is not None and not 1 <= days <= 366:
        raise ValidationFailed("token lifetime must be 1-366 days")
    allowed = ROLE_PERMISSIONS[user.role]
    wanted = set(scopes) if scopes else set(allowed if within is None else allowed & within)
    unknown = wanted - set(PERMISSIONS)
    if unknown:
        raise ValidationFailed(f"unknown scopes: {', '.join(sorted(unknown))}")
    beyond = wanted - allowed
    if beyond:
        raise PermissionDenied(f"role {user.role} cannot grant scopes {', '.join(sorted(beyond))}")
    if within is not None and wanted - within:
        raise PermissionDenied(
            f"a token cannot grant scopes it lacks: {', '.join(sorted(wanted - within))}",
            hint="sign in with a password, or use a token holding those scopes",
        )
    expires = now + timedelta(days=DEFAULT_TOKEN_DAYS if days is None else days)
    if not_after is not None and expires > not_after:
        if days is not None:
            raise PermissionDenied(
                f"a token cannot outlive the token that creates it "
                f"(which expires {not_after.isoformat()})",
                hint="ask for fewer days, or leave 'days' out to take the longest allowed",
            )
        expires = not_after
    secret = new_secret()
    row = ApiTokenRow(
        user_id=user.id,
        name=name.strip() or "token",
        secret_hash=hash_secret(secret),
        scopes=sorted(wanted),
        created_at=now,
        expires_at=expires,
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
