"""Fleet administration from the server's machine: users, tokens, enrollment tokens,
assets, groups and the audit log. Each command works on the configured database
directly; changes are made as the signed-in patchwarden user (cli/identity.py), with
the same permissions as the API, and audited like an API call."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.markup import escape
from rich.table import Table

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
from patchwarden.cli.identity import actor, operator
from patchwarden.core.documents import parse_document
from patchwarden.core.errors import PermissionDenied, ValidationFailed
from patchwarden.server.security import ROLES
from patchwarden.server.services import agents, identity
from patchwarden.server.services.assets import (
    AssetFilter,
    asset_detail,
    delete_asset,
    list_assets,
    update_asset,
)
from patchwarden.store import audit
from patchwarden.store.groups import (
    create_group,
    delete_group,
    get_group,
    group_json,
    groups_with_counts,
    member_count,
    set_static_members,
    update_group,
)

users_app = typer.Typer(
    help="Users and roles (admin, operator, approver, auditor).", no_args_is_help=True
)
tokens_app = typer.Typer(help="API tokens (scoped, expiring, stored hashed).", no_args_is_help=True)
enroll_app = typer.Typer(help="Agent enrollment tokens.", no_args_is_help=True)
assets_app = typer.Typer(
    help="Assets: list, show, change context, delete, revoke agents.", no_args_is_help=True
)
groups_app = typer.Typer(
    help="Asset groups: static members or dynamic filters.", no_args_is_help=True
)
audit_app = typer.Typer(help="The hash-chained audit log.", no_args_is_help=True)

JsonFlag = typer.Option(False, "--json", help="Print JSON.")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(escape("" if v is None else str(v)) for v in row))
    stdout().print(table)


# --------------------------------------------------------------------------- users


@users_app.command("list")
def users_list(as_json: bool = JsonFlag) -> int:
    """List users."""
    with database() as db, db.session() as session:
        users = [identity.user_json(u) for u in identity.list_users(session)]
    if as_json:
        print_json(users)
    else:
        _table(
            "Users",
            ["id", "username", "role", "disabled", "last login"],
            [[u["id"], u["username"], u["role"], u["disabled"], u["last_login"]] for u in users],
        )
    return EXIT_OK


@users_app.command("create")
def users_create(
    username: str,
    role: str = typer.Option(..., "--role", help=f"One of: {', '.join(ROLES)}."),
    password: str | None = typer.Option(
        None, "--password", help="Password (default: prompt, or one line on stdin)."
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Create a user."""
    secret = password if password is not None else read_secret("password: ", confirm=True)
    with database() as db, db.session() as session:
        user = identity.create_user(
            session,
            actor(session, "users:write"),
            username=username,
            password=secret,
            role=role,
            now=now(),
        )
        out = identity.user_json(user)
    print_json(out) if as_json else stdout().print(f"created user {escape(username)} ({role})")
    return EXIT_OK


@users_app.command("set")
def users_set(
    username: str,
    role: str | None = typer.Option(None, "--role", help="New role."),
    disabled: bool | None = typer.Option(None, "--disable/--enable", help="Disable or enable."),
    password: bool = typer.Option(False, "--password", help="Set a new password (prompted)."),
    as_json: bool = JsonFlag,
) -> int:
    """Change a user's role, password or disabled flag."""
    secret = read_secret("password: ", confirm=True) if password else None
    with database() as db, db.session() as session:
        user = identity.get_user(session, username)
        identity.update_user(
            session,
            actor(session, "users:write"),
            user,
            now=now(),
            role=role,
            password=secret,
            disabled=disabled,
        )
        out = identity.user_json(user)
    print_json(out) if as_json else stdout().print(f"updated user {escape(username)}")
    return EXIT_OK


# -------------------------------------------------------------------------- tokens


@tokens_app.command("create")
def tokens_create(
    username: str | None = typer.Option(
        None, "--user", help="Owner of the token (default: you; others need users:write)."
    ),
    name: str = typer.Option("token", "--name", help="A label for the token."),
    scopes: list[str] = typer.Option(
        [], "--scope", help="Permission (repeatable); default: all of the user's role."
    ),
    days: int | None = typer.Option(
        None,
        "--days",
        min=1,
        max=366,
        help="Lifetime in days (default 90, cut to the expiry of the token you act with).",
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Create an API token; the secret is printed once. It holds at most the scopes and
    lives at most as long as the token the CLI acts with (your login or
    PATCHWARDEN_TOKEN), like a token created through the API with a token."""
    with database() as db, db.session() as session:
        who = operator(session, "tokens:self", now=now())
        user = identity.get_user(session, username if username else who.user_id or 0)
        if user.id != who.user_id and "users:write" not in who.permissions:
            raise PermissionDenied(
                f"{who.name} may create tokens only for themselves (users:write needed)"
            )
        # The CLI acts with a token: what it creates is bounded by it, as over the API.
        row, secret = identity.create_token(
            session,
            who.actor(),
            user,
            name=name,
            scopes=scopes or None,
            days=days,
            now=now(),
            within=who.permissions,
            not_after=who.token_expires_at,
        )
        out = {**identity.token_json(row), "token": secret}
        username = user.username
    if as_json:
        print_json(out)
    else:
        stdout().print(f"token {row.id} for {escape(username)}, expires {out['expires_at']}:")
        stdout().print(secret, highlight=False)
        stderr().print("store it now: it is not shown again")
    return EXIT_OK


@tokens_app.command("list")
def tokens_list(
    username: str | None = typer.Option(None, "--user", help="Only this user's tokens."),
    as_json: bool = JsonFlag,
) -> int:
    """List API tokens (never their secrets)."""
    with database() as db, db.session() as session:
        owner = identity.get_user(session, username).id if username else None
        tokens = [identity.token_json(t) for t in identity.list_tokens(session, user_id=owner)]
    if as_json:
        print_json(tokens)
    else:
        _table(
            "API tokens",
            ["id", "user", "name", "scopes", "expires", "revoked", "last used"],
            [
                [
                    t["id"],
                    t["user_id"],
                    t["name"],
                    " ".join(t["scopes"]),
                    t["expires_at"],
                    t["revoked_at"],
                    t["last_used"],
                ]
                for t in tokens
            ],
        )
    return EXIT_OK


@tokens_app.command("revoke")
def tokens_revoke(token_id: int, as_json: bool = JsonFlag) -> int:
    """Revoke one of your API tokens (anyone's with users:write)."""
    with database() as db, db.session() as session:
        who = operator(session, "tokens:self", now=now())
        owner = None if "users:write" in who.permissions else who.user_id
        out = identity.token_json(
            identity.revoke_token(session, who.actor(), token_id, now=now(), owner_id=owner)
        )
    print_json(out) if as_json else stdout().print(f"revoked token {token_id}")
    return EXIT_OK


# ---------------------------------------------------------------------- enrollment


@enroll_app.command("create")
def enroll_create(
    hours: int = typer.Option(24, "--hours", min=1, max=24 * 90, help="Lifetime in hours."),
    uses: int = typer.Option(1, "--uses", min=1, max=100_000, help="How many hosts may use it."),
    note: str = typer.Option("", "--note", help="Free text shown in listings."),
    defaults: str = typer.Option(
        "{}",
        "--defaults",
        help='JSON asset defaults, e.g. \'{"environment": "prod", "tags": ["web"]}\'.',
    ),
    asset: int | None = typer.Option(
        None,
        "--asset",
        min=1,
        help="Bind the token to this asset id: single use, replaces the asset's agent.",
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Create an enrollment token for agents; the secret is printed once.

    With --asset it is a re-enroll token: the one way to replace the agent of an asset
    whose agent is live (or to attach an agent to an asset known without one).
    """
    parsed = _json_object(defaults, "--defaults")
    with database() as db, db.session() as session:
        row, secret = agents.create_enrollment_token(
            session,
            actor(session, "enroll:write"),
            now=now(),
            hours=hours,
            max_uses=uses,
            note=note,
            defaults=parsed,
            asset_id=asset,
        )
        out = {**agents.enrollment_json(row), "token": secret}
    if as_json:
        print_json(out)
    elif asset is not None:
        stdout().print(
            f"re-enroll token {row.id} for asset {asset}: single use, expires {out['expires_at']}"
        )
        stdout().print(secret, highlight=False)
        stderr().print(
            f"on the host: patchwarden-agent.pyz enroll TOKEN --server URL "
            f"(revokes asset {asset}'s current agent credential)"
        )
    else:
        stdout().print(f"enrollment token {row.id}: {uses} use(s), expires {out['expires_at']}")
        stdout().print(secret, highlight=False)
        stderr().print("on the host: patchwarden-agent.pyz enroll TOKEN --server URL")
    return EXIT_OK


@enroll_app.command("list")
def enroll_list(as_json: bool = JsonFlag) -> int:
    """List enrollment tokens."""
    with database() as db, db.session() as session:
        rows = [agents.enrollment_json(r) for r in agents.list_enrollment_tokens(session)]
    if as_json:
        print_json(rows)
    else:
        _table(
            "Enrollment tokens",
            ["id", "note", "uses", "max", "expires", "revoked"],
            [
                [r["id"], r["note"], r["uses"], r["max_uses"], r["expires_at"], r["revoked_at"]]
                for r in rows
            ],
        )
    return EXIT_OK


@enroll_app.command("revoke")
def enroll_revoke(token_id: int, as_json: bool = JsonFlag) -> int:
    """Revoke an enrollment token."""
    with database() as db, db.session() as session:
        out = agents.enrollment_json(
            agents.revoke_enrollment_token(
                session, actor(session, "enroll:write"), token_id, now=now()
            )
        )
    print_json(out) if as_json else stdout().print(f"revoked enrollment token {token_id}")
    return EXIT_OK


# -------------------------------------------------------------------------- assets


@assets_app.command("list")
def assets_list(
    q: str = typer.Option("", "--search", "-q", help="Hostname or FQDN contains."),
    group: str | None = typer.Option(None, "--group", help="Group name or id."),
    environment: str = typer.Option("", "--environment"),
    tag: str = typer.Option("", "--tag"),
    limit: int = typer.Option(100, "--limit", min=1, max=1000),
    offset: int = typer.Option(0, "--offset", min=0),
    as_json: bool = JsonFlag,
) -> int:
    """List assets with their open findings."""
    moment = now()
    with database() as db, db.session() as session:
        group_id = get_group(session, group).id if group else None
        page = list_assets(
            session,
            AssetFilter(q=q, group=group_id, environment=environment, tag=tag),
            limit=limit,
            offset=offset,
            today=moment.date(),
        )
    if as_json:
        print_json(page.to_json())
        return EXIT_OK
    _table(
        f"Assets ({page.total})",
        ["id", "host", "os", "source", "last seen", "P1", "P2", "P3", "P4", "overdue"],
        [
            [
                a["id"],
                a["hostname"],
                a["os"]["ecosystem"],
                a["source"],
                a["last_seen"],
                *a["open_findings"].values(),
                a["overdue"],
            ]
            for a in page.items
        ],
    )
    return EXIT_OK


@assets_app.command("show")
def assets_show(asset_id: int, as_json: bool = JsonFlag) -> int:
    """Show one asset."""
    with database() as db, db.session() as session:
        out = asset_detail(session, asset_id, today=now().date())
    if as_json:
        print_json(out)
    else:
        for key in (
            "hostname",
            "fqdn",
            "os",
            "kernel",
            "criticality",
            "exposure",
            "data_class",
            "owner",
            "environment",
            "location",
            "tags",
            "groups",
            "source",
            "status",
            "last_seen",
            "open_findings",
            "overdue",
            "agent",
        ):
            stdout().print(f"[bold]{key}[/]: {escape(json.dumps(out.get(key)))}", highlight=False)
    return EXIT_OK


@assets_app.command("set")
def assets_set(
    asset_id: int,
    criticality: int | None = typer.Option(None, "--criticality", min=1, max=5),
    exposure: str | None = typer.Option(None, "--exposure", help="internet or internal."),
    data_class: str | None = typer.Option(None, "--data-class"),
    owner: str | None = typer.Option(None, "--owner"),
    environment: str | None = typer.Option(None, "--environment"),
    location: str | None = typer.Option(None, "--location"),
    timezone: str | None = typer.Option(None, "--timezone"),
    tags: list[str] = typer.Option([], "--tag", help="Replace tags (repeatable)."),
    as_json: bool = JsonFlag,
) -> int:
    """Change an asset's business context; findings are rescored."""
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "criticality": criticality,
            "exposure": exposure,
            "data_class": data_class,
            "owner": owner,
            "environment": environment,
            "location": location,
            "timezone": timezone,
        }.items()
        if v is not None
    }
    if tags:
        changes["tags"] = tags
    if not changes:
        raise ValidationFailed("nothing to change", hint="pass at least one option")
    moment = now()
    with database() as db, db.session() as session:
        update_asset(session, actor(session, "assets:write"), asset_id, changes, now=moment)
        out = asset_detail(session, asset_id, today=moment.date())
    print_json(out) if as_json else stdout().print(f"updated asset {asset_id}")
    return EXIT_OK


@assets_app.command("delete")
def assets_delete(asset_id: int) -> int:
    """Delete an asset with its findings and agent credentials."""
    with database() as db, db.session() as session:
        delete_asset(session, actor(session, "assets:write"), asset_id, now=now())
    stdout().print(f"deleted asset {asset_id}")
    return EXIT_OK


@assets_app.command("revoke-agent")
def assets_revoke(asset_id: int) -> int:
    """Revoke the asset's agent credentials (locked out at once)."""
    with database() as db, db.session() as session:
        count = agents.revoke_credentials(
            session, actor(session, "assets:write"), asset_id, now=now()
        )
    stdout().print(f"revoked {count} credential(s) of asset {asset_id}")
    return EXIT_OK


# -------------------------------------------------------------------------- groups


@groups_app.command("list")
def groups_list(as_json: bool = JsonFlag) -> int:
    """List groups."""
    with database() as db, db.session() as session:
        groups = [group_json(g, n) for g, n in groups_with_counts(session)]
    if as_json:
        print_json(groups)
    else:
        _table(
            "Groups",
            ["id", "name", "kind", "members", "filter"],
            [
                [g["id"], g["name"], g["kind"], g["members"], json.dumps(g["filter"])]
                for g in groups
            ],
        )
    return EXIT_OK


@groups_app.command("create")
def groups_create(
    name: str,
    description: str = typer.Option("", "--description"),
    group_filter: str | None = typer.Option(
        None, "--filter", help='Dynamic filter JSON, e.g. \'{"tags_any": ["web"]}\'.'
    ),
    members: list[int] = typer.Option([], "--member", help="Asset id (static; repeatable)."),
    as_json: bool = JsonFlag,
) -> int:
    """Create a static (--member) or dynamic (--filter) group."""
    parsed = _json_object(group_filter, "--filter") if group_filter else None
    with database() as db, db.session() as session:
        group = create_group(
            session,
            actor(session, "groups:write"),
            name=name,
            now=now(),
            description=description,
            group_filter=parsed,
            members=members,
        )
        out = group_json(group, member_count(session, group.id))
    print_json(out) if as_json else stdout().print(
        f"created {out['kind']} group {escape(name)} with {out['members']} member(s)"
    )
    return EXIT_OK


def _json_object(text: str, option: str) -> dict[str, Any]:
    """The JSON object an option holds, parsed as plain data (bounded size and nesting,
    finite numbers, no duplicate keys: core/documents.py)."""
    return parse_document(text, source=option, yaml_syntax=False, what=f"{option}")


@groups_app.command("set")
def groups_set(
    group: str,
    description: str | None = typer.Option(None, "--description"),
    group_filter: str | None = typer.Option(None, "--filter", help="New filter JSON."),
    add: list[int] = typer.Option([], "--add", help="Add member asset id (static)."),
    remove: list[int] = typer.Option([], "--remove", help="Remove member asset id (static)."),
    as_json: bool = JsonFlag,
) -> int:
    """Change a group's description, filter or members."""
    moment = now()
    with database() as db, db.session() as session:
        row = get_group(session, group)
        if description is not None or group_filter is not None:
            update_group(
                session,
                actor(session, "groups:write"),
                row,
                now=moment,
                description=description,
                group_filter=_json_object(group_filter, "--filter") if group_filter else None,
            )
        if add or remove:
            set_static_members(
                session, actor(session, "groups:write"), row, now=moment, add=add, remove=remove
            )
        out = group_json(row, member_count(session, row.id))
    print_json(out) if as_json else stdout().print(
        f"group {escape(out['name'])}: {out['members']} member(s)"
    )
    return EXIT_OK


@groups_app.command("delete")
def groups_delete(group: str) -> int:
    """Delete a group (its assets stay)."""
    with database() as db, db.session() as session:
        delete_group(session, actor(session, "groups:write"), get_group(session, group), now=now())
    stdout().print(f"deleted group {escape(group)}")
    return EXIT_OK


# --------------------------------------------------------------------------- audit


@audit_app.command("verify")
def audit_verify(
    checkpoint: Path | None = typer.Option(
        None,
        "--checkpoint",
        help="Checkpoint file: every checkpoint's signature is checked, and that the "
        "database still holds the checkpointed event with that hash.",
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Recompute the keyed chain; exit 1 when it was tampered with (or, with
    --checkpoint, cut back or rewritten since a checkpoint)."""
    lines = audit.read_checkpoint_lines(checkpoint) if checkpoint is not None else None
    with database() as db, db.session() as session:
        result = audit.verify(session, checkpoints=lines)
    if as_json:
        print_json(result.as_json())
    elif result.ok:
        legacy = (
            f", the first {result.legacy_events} written before the chain was keyed"
            if result.legacy_events
            else ""
        )
        anchored = (
            f"; {result.checkpoints} checkpoints match"
            if checkpoint is not None
            else " (not compared with checkpoints: pass --checkpoint FILE)"
        )
        stdout().print(
            f"[green]audit log intact[/]: {result.events} events{legacy}, "
            f"key {result.key_id}{anchored}",
            highlight=False,
            soft_wrap=True,
        )
    else:
        stderr().print(f"[bold red]audit log tampered[/]: {escape(result.problem)}", soft_wrap=True)
    return EXIT_OK if result.ok else 1


@audit_app.command("checkpoint")
def audit_checkpoint(
    file: Path | None = typer.Option(
        None,
        "--file",
        help="Checkpoint file to append to (default PATCHWARDEN_AUDIT_CHECKPOINT_FILE, "
        "else $PATCHWARDEN_HOME/audit-checkpoints.jsonl).",
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Verify the chain since the file's last checkpoint, then append a signed
    checkpoint of its head; exit 1 (nothing written) when the chain does not verify."""
    path = file or settings().audit_checkpoint_path
    with database() as db, db.session() as session:
        outcome = audit.write_checkpoint(session, path, now=now())
    result = outcome.verified
    if as_json:
        written = outcome.written
        print_json(
            {
                "written": None if written is None else orjson.loads(written.line()),
                "file": str(path),
                "verified": result.as_json(),
            }
        )
    elif not result.ok:
        stderr().print(
            f"[bold red]audit log tampered, no checkpoint written[/]: {escape(result.problem)}",
            soft_wrap=True,
        )
    elif outcome.written is None:
        stdout().print(
            f"nothing new to checkpoint: the last checkpoint covers all {result.events} events"
            if result.events
            else "nothing to checkpoint: the audit log is empty",
            highlight=False,
        )
    else:
        stdout().print(
            f"checkpoint of event {outcome.written.seq} "
            f"(hash {outcome.written.hash[:16]}…) appended to {escape(str(path))}",
            highlight=False,
            soft_wrap=True,
        )
    return EXIT_OK if result.ok else 1


@audit_app.command("export")
def audit_export(
    output: Path | None = typer.Option(None, "--output", "-o", help="File (default: stdout)."),
    after: int = typer.Option(0, "--after", min=0, help="Only events after this sequence."),
) -> int:
    """Export events as JSON lines (one event per line, with its hashes)."""
    with database() as db, db.session() as session:
        handle = output.open("wb") if output else sys.stdout.buffer
        try:
            count = 0
            for row in audit.iter_events(session, after_seq=after):
                handle.write(orjson.dumps(audit.event_json(row)) + b"\n")
                count += 1
        finally:
            if output:
                handle.close()
    if output:
        stderr().print(f"exported {count} events to {escape(str(output))}")
    return EXIT_OK
