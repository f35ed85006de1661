"""``patchwarden login``, ``logout``, ``whoami`` and ``bootstrap``: the CLI's identity.

See cli/identity.py for the rules: changes are made by a signed-in patchwarden user.
``login`` checks a password exactly like the web sign-in (same failure limits, same
audit events) and stores a short-lived API token for this database; ``bootstrap`` is
the one local command that creates a user without one — the first admin, and only
while there is no user at all.
"""

from __future__ import annotations

import getpass
import socket
from datetime import datetime

import typer
from rich.markup import escape
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from patchwarden.cli.common import (
    EXIT_OK,
    database,
    now,
    print_json,
    read_secret,
    settings,
    stderr,
    stdout,
)
from patchwarden.cli.identity import (
    StoredLogin,
    database_key,
    forget_login,
    operator,
    presented_token,
    store_login,
)
from patchwarden.core.errors import (
    AuthenticationRequired,
    Conflict,
    PatchwardenError,
    RateLimited,
)
from patchwarden.server.main import config_from
from patchwarden.server.security import TOKEN_PREFIX, hash_secret, parse_token, same_hash
from patchwarden.server.services import identity
from patchwarden.store.audit import Actor
from patchwarden.store.models import ApiTokenRow, UserRow

JsonFlag = typer.Option(False, "--json", help="Print JSON.")


def login(
    username: str = typer.Argument(..., help="Your patchwarden username."),
    days: int = typer.Option(1, "--days", min=1, max=30, help="How long the login lasts."),
    as_json: bool = JsonFlag,
) -> int:
    """Sign in: the password is checked like the web sign-in, and an API token for this
    database is stored (PATCHWARDEN_CREDENTIALS_FILE, mode 0600) for later commands."""
    cfg = settings()
    password = read_secret("password: ")
    moment = now()
    failure: PatchwardenError | None = None
    with database() as db, db.session() as session:
        try:
            user = identity.authenticate(
                session,
                username=username,
                password=password,
                ip="cli",
                now=moment,
                config=config_from(cfg),
            )
        except (AuthenticationRequired, RateLimited) as exc:
            failure = exc  # the failed attempt is recorded: commit it, then refuse
        else:
            key = database_key(session)
            previous = forget_login(cfg, key)
            if previous is not None:
                _revoke_login(session, previous, moment)
            row, secret = identity.create_token(
                session,
                Actor(user.username, "cli", "", user.id),
                user,
                name=f"cli login on {socket.gethostname()}"[:100],
                scopes=None,
                days=days,
                now=moment,
            )
            stored = StoredLogin(secret, user.username, row.expires_at.isoformat())
            store_login(cfg, key, stored)
    if failure is not None:
        raise failure
    if as_json:
        print_json({"username": stored.username, "expires_at": stored.expires_at})
    else:
        stdout().print(
            f"signed in as {escape(stored.username)} until {stored.expires_at} "
            f"(token kept in {escape(str(cfg.credentials_file))})",
            highlight=False,
        )
    return EXIT_OK


def _revoke_login(session: Session, login: StoredLogin, moment: datetime) -> None:
    """Revoke a stored login's token, as its own user (nothing to do once it is gone)."""
    token = parse_token(login.token, TOKEN_PREFIX)
    row = session.get(ApiTokenRow, token.row_id) if token else None
    if token is None or row is None or row.revoked_at is not None:
        return
    if not same_hash(row.secret_hash, hash_secret(token.secret)):
        return  # not this row's secret: never revoke someone else's token
    user = session.get(UserRow, row.user_id)
    name = user.username if user else str(row.user_id)
    identity.revoke_token(
        session, Actor(name, "cli", "", row.user_id), row.id, now=moment, owner_id=row.user_id
    )


def logout(as_json: bool = JsonFlag) -> int:
    """Sign out: revoke the stored login token of this database and forget it."""
    cfg = settings()
    with database() as db, db.session() as session:
        key = database_key(session)
        stored = forget_login(cfg, key)
        if stored is not None:
            _revoke_login(session, stored, now())
    if as_json:
        print_json({"signed_out": stored.username if stored else None})
    elif stored is None:
        stdout().print("not signed in to this database")
    else:
        stdout().print(f"signed out {escape(stored.username)}", highlight=False)
    return EXIT_OK


def whoami(as_json: bool = JsonFlag) -> int:
    """Who the CLI acts as on this database, and what they may do."""
    cfg = settings()
    with database() as db, db.session() as session:
        presented = presented_token(cfg, database_key(session))
        if presented is None:
            raise AuthenticationRequired(
                "not signed in to this database",
                hint="run `patchwarden login USERNAME` (or set PATCHWARDEN_TOKEN)",
            )
        who = operator(session, "read", now=now())
    permissions = sorted(who.permissions)
    out = {
        "name": who.name,
        "user_id": who.user_id,
        "role": who.role,
        "permissions": permissions,
        "source": presented[1],
    }
    if as_json:
        print_json(out)
    else:
        stdout().print(
            f"{escape(who.name)}: role {who.role}; may {', '.join(permissions)} "
            f"(token from {escape(presented[1])})",
            highlight=False,
        )
    return EXIT_OK


def bootstrap(
    username: str = typer.Argument("admin", help="Name of the first admin."),
    as_json: bool = JsonFlag,
) -> int:
    """Create the first admin of an empty database (refused once any user exists; from
    then on users are created by a signed-in admin with `patchwarden users create`)."""
    password = read_secret("password for the first admin: ", confirm=True)
    local = getpass.getuser()
    with database() as db, db.session() as session:
        if session.scalar(select(func.count()).select_from(UserRow)):
            raise Conflict(
                "patchwarden already has users: bootstrap only creates the first admin",
                hint="sign in as an admin (`patchwarden login`) and use `patchwarden users create`",
            )
        user = identity.create_user(
            session,
            Actor(f"bootstrap (local login {local})", "system"),
            username=username,
            password=password,
            role="admin",
            now=now(),
        )
        out = identity.user_json(user)
    if as_json:
        print_json(out)
    else:
        stdout().print(f"created the first admin {escape(username)}", highlight=False)
        stderr().print(f"next: patchwarden login {escape(username)}", highlight=False)
    return EXIT_OK
