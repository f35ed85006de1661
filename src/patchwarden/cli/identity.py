"""Who runs a CLI command that changes something: an authenticated patchwarden user.

The CLI works on the database directly, but it changes nothing as an anonymous local
operator. Every change is made by a patchwarden user who proved who they are with an
API token — ``PATCHWARDEN_TOKEN``, or the one ``patchwarden login`` stored for this
database — and is checked against the same role permissions and token scopes as the API
(``server.auth.token_principal``). Four-eyes rules compare user ids, so ``bob`` through
the API and ``bob`` in the CLI are one person, and the Unix login has no say.

Reading needs only access to the database. Outside these rules, on purpose: ``db
upgrade``, ``bootstrap`` (the first admin of an empty user table) and ``up`` /
``server``, which act as the system.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy.orm import Session

from patchwarden.cli.common import database
from patchwarden.cli.common import now as clock
from patchwarden.core.errors import AuthenticationRequired, ConfigError, PermissionDenied
from patchwarden.server.auth import Principal, token_principal
from patchwarden.settings import Settings, load_settings
from patchwarden.store.audit import Actor


@dataclass(frozen=True, slots=True)
class StoredLogin:
    """What ``patchwarden login`` keeps for one database."""

    token: str
    username: str
    expires_at: str


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read the CLI credentials {path}: {exc.strerror}") from exc
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(
            f"the CLI credentials file {path} is not valid JSON",
            hint="delete it and run `patchwarden login` again",
        ) from exc
    return parsed if isinstance(parsed, dict) else {}


def _write(path: Path, logins: dict[str, Any]) -> None:
    """Replace the credentials file atomically, readable by its owner only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = path.with_name(path.name + ".tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(orjson.dumps(logins, option=orjson.OPT_INDENT_2))
        os.replace(temporary, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write the CLI credentials {path}: {exc.strerror}",
            hint="set PATCHWARDEN_CREDENTIALS_FILE to a writable place",
        ) from exc


def database_key(session: Session) -> str:
    """The database a session works on, as logins are filed (password hidden)."""
    return session.get_bind().engine.url.render_as_string(hide_password=True)


def stored_login(settings: Settings, key: str) -> StoredLogin | None:
    """The login stored for the database ``key``, if any."""
    entry = _read(settings.credentials_file).get(key)
    if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
        return None
    return StoredLogin(
        token=entry["token"],
        username=str(entry.get("username", "")),
        expires_at=str(entry.get("expires_at", "")),
    )


def store_login(settings: Settings, key: str, login: StoredLogin) -> None:
    """Remember ``login`` for the database ``key`` (replacing an earlier one)."""
    logins = _read(settings.credentials_file)
    logins[key] = {
        "token": login.token,
        "username": login.username,
        "expires_at": login.expires_at,
    }
    _write(settings.credentials_file, logins)


def forget_login(settings: Settings, key: str) -> StoredLogin | None:
    """Remove and return the login stored for the database ``key``."""
    login = stored_login(settings, key)
    if login is not None:
        logins = _read(settings.credentials_file)
        logins.pop(key, None)
        _write(settings.credentials_file, logins)
    return login


def presented_token(settings: Settings, key: str) -> tuple[str, str] | None:
    """The token this command runs with and where it came from, or None."""
    configured = settings.token.get_secret_value().strip()
    if configured:
        return configured, "PATCHWARDEN_TOKEN"
    login = stored_login(settings, key)
    if login is not None:
        return login.token, f"patchwarden login ({settings.credentials_file})"
    return None


def operator(session: Session, permission: str, *, now: datetime) -> Principal:
    """The signed-in user running this command, holding ``permission``.

    Raises AuthenticationRequired without a valid token and PermissionDenied when the
    user's role (narrowed by the token's scopes) lacks ``permission`` — the same rules
    and words as the API.
    """
    presented = presented_token(load_settings(), database_key(session))
    if presented is None:
        raise AuthenticationRequired(
            "this command changes patchwarden data: it needs a signed-in patchwarden user",
            hint="run `patchwarden login USERNAME` (or set PATCHWARDEN_TOKEN to an API token)",
        )
    raw, source = presented
    try:
        principal = token_principal(session, raw, now, ip="", kind="cli")
    except AuthenticationRequired as exc:
        raise AuthenticationRequired(
            f"{exc.message} (from {source})",
            hint="run `patchwarden login USERNAME` again, or set PATCHWARDEN_TOKEN to a "
            "valid API token",
        ) from exc
    if permission not in principal.permissions:
        raise PermissionDenied(
            f"{principal.name} ({principal.role}) lacks the '{permission}' permission"
        )
    return principal


def actor(session: Session, permission: str) -> Actor:
    """The signed-in user holding ``permission`` (``operator``), as the audit log
    records them. Every CLI command that changes something asks for this first."""
    return operator(session, permission, now=clock()).actor()


def require(permission: str) -> Actor:
    """Check, in a transaction of its own, that this command's user holds
    ``permission`` — before long work (collection, downloads) starts."""
    with database() as db, db.session() as session:
        return actor(session, permission)
