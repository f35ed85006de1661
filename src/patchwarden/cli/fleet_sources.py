"""``patchwarden ssh-collect | cmdb-import | discover``: hosts from outside the agent.

Wiring only: the collectors live in ``patchwarden.collect`` (ssh, cmdb, discovery) and
the matching, merging and auditing in ``patchwarden.store.reconcile``. Each command
works on the configured database as the local operator (``cli:<os user>``); the command
reference is docs/fleet-sources.md.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from patchwarden.cli.common import EXIT_OK, database, now, print_json, stderr, stdout
from patchwarden.cli.identity import actor, require
from patchwarden.collect.cmdb import CmdbImport, load_cmdb_file, load_mapping
from patchwarden.collect.discovery import DEFAULT_MAX_HOSTS, DEFAULT_PORTS, discover
from patchwarden.collect.ssh import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PORT,
    SshResult,
    SshTarget,
    collect_many,
)
from patchwarden.core.errors import ValidationFailed
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import recompute_for_assets
from patchwarden.store.reconcile import (
    CollectedOutcome,
    IdentityIndex,
    ReconcileReport,
    reconcile,
    record_collected,
    register_discovered,
)

#: Exit code when part of the work was not done (failed hosts, records not applied).
EXIT_PARTIAL = 1

app = typer.Typer(
    help="Hosts from outside the agent: SSH collection, CMDB import, network discovery.",
    no_args_is_help=True,
)

JsonFlag = typer.Option(False, "--json", help="Print JSON instead of tables.")


class CmdbFormat(StrEnum):
    """Formats ``cmdb-import --format`` accepts."""

    csv = "csv"
    servicenow = "servicenow"


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A Rich bar on stderr (only on a terminal), fed with (done, total)."""
    if not sys.stderr.isatty():
        yield lambda _done, _total: None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr(),
        transient=True,
    )
    task = bar.add_task(label, total=None)
    with bar:
        yield lambda done, total: bar.update(task, completed=done, total=total)


# ----------------------------------------------------------------------- ssh-collect


def parse_host(text: str, *, user: str, port: int) -> tuple[str, str, int]:
    """``[user@]host[:port]`` (IPv6 as ``[addr]:port``) -> (user, host, port)."""
    spec = text.strip()
    if "@" in spec:
        user, spec = spec.rsplit("@", 1)
    if spec.startswith("["):
        host, bracket, rest = spec[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValidationFailed(f"bad host {text!r}: use [IPv6]:port")
        port_text = rest[1:]
    elif spec.count(":") == 1:
        host, port_text = spec.split(":")
    else:
        host, port_text = spec, ""
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValidationFailed(f"bad port in {text!r}")
        port = int(port_text)
    if not host:
        raise ValidationFailed(f"bad host {text!r}: no host name")
    return user, host, port


@app.command("ssh-collect")
def ssh_collect(
    hosts: list[str] = typer.Argument(..., help="Hosts as [user@]host[:port]."),
    user: str = typer.Option("", "--user", "-u", help="Remote user (default: your name)."),
    key: list[Path] = typer.Option(
        [],
        "--key",
        "-k",
        help="Private key file (repeatable). Default: ssh-agent keys and ~/.ssh/id_*.",
        exists=True,
        dir_okay=False,
    ),
    known_hosts: Path = typer.Option(
        ...,
        "--known-hosts",
        help="known_hosts file the host keys are verified against (required).",
        dir_okay=False,
    ),
    port: int = typer.Option(DEFAULT_PORT, "--port", "-p", min=1, max=65535, help="SSH port."),
    sudo: bool = typer.Option(
        False, "--sudo", help="Run the package queries with sudo -n (never prompts)."
    ),
    parallel: int = typer.Option(10, "--parallel", min=1, max=256, help="Hosts at a time."),
    timeout: float = typer.Option(
        300.0, "--timeout", min=1.0, help="Seconds allowed per host, all commands included."
    ),
    connect_timeout: float = typer.Option(
        DEFAULT_CONNECT_TIMEOUT,
        "--connect-timeout",
        min=1.0,
        help="Seconds allowed to connect and log in.",
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Collect inventories over SSH (no agent needed) and record them as assets."""
    operator = require("assets:write")
    targets = []
    for text in hosts:
        target_user, host, target_port = parse_host(text, user=user, port=port)
        targets.append(
            SshTarget(
                host=host,
                known_hosts=known_hosts,
                port=target_port,
                username=target_user,
                key_files=tuple(key),
                sudo=sudo,
                connect_timeout=connect_timeout,
                command_timeout=timeout,
            )
        )
    finished = 0
    with _progress("collecting over SSH") as advance:

        def done(_result: SshResult) -> None:
            nonlocal finished
            finished += 1
            advance(finished, len(targets))

        results = asyncio.run(
            collect_many(targets, parallelism=parallel, timeout=timeout, on_done=done)
        )
    moment = now()
    outcomes: list[CollectedOutcome | None] = []
    with database() as db, db.session() as session:
        index = IdentityIndex.load(session)
        for result in results:
            if result.inventory is None:
                outcomes.append(None)
                continue
            outcomes.append(
                record_collected(
                    session,
                    result.inventory,
                    now=moment,
                    actor=operator,
                    address=result.address,
                    name=result.target.host,
                    index=index,
                )
            )
        recorded = sorted({o.asset_id for o in outcomes if o and o.asset_id is not None})
        changed = sorted({o.asset_id for o in outcomes if o and o.asset_id and o.changed})
        if changed:
            refresh_findings(session, now=moment, asset_ids=changed)
        recompute_for_assets(session, recorded)
    rows = [_ssh_row(result, outcome) for result, outcome in zip(results, outcomes, strict=True)]
    if as_json:
        print_json({"hosts": rows})
    else:
        _ssh_table(rows)
    return EXIT_OK if all(row["ok"] for row in rows) else EXIT_PARTIAL


def _ssh_row(result: SshResult, outcome: CollectedOutcome | None) -> dict[str, Any]:
    inventory = result.inventory
    row: dict[str, Any] = {
        "host": result.target.host,
        "port": result.target.port,
        "ok": False,
        "error": result.error,
        "hint": result.hint,
        "address": result.address,
        "seconds": round(result.elapsed, 3),
    }
    if inventory is None or outcome is None:
        return row
    if outcome.asset_id is None:
        sides = ", ".join(f"asset {s.asset_id} ({s.hostname})" for s in outcome.conflicts)
        row["error"] = f"matches several assets, not recorded: {sides}"
        return row
    row.update(
        ok=True,
        asset_id=outcome.asset_id,
        created=outcome.created,
        changed=outcome.changed,
        matched_by=outcome.matched_by,
        hostname=inventory.hostname,
        ecosystem=inventory.os.ecosystem if inventory.os else "",
        kernel=inventory.kernel,
        packages=len(inventory.packages),
        reboot_required=inventory.reboot_required,
        problems=list(inventory.problems),
    )
    return row


def _ssh_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title="SSH collection", title_justify="left")
    for column in ("Host", "Result", "Asset", "Ecosystem", "Packages", "Reboot"):
        table.add_column(column, overflow="fold")
    for row in rows:
        if not row["ok"]:
            table.add_row(escape(row["host"]), f"[red]{escape(row['error'])}[/]", "", "", "", "")
            continue
        how = "new" if row["created"] else f"matched by {row['matched_by']}"
        table.add_row(
            escape(row["host"]),
            "[green]ok[/]" + ("" if row["changed"] else " (unchanged)"),
            f"{row['asset_id']} {escape(row['hostname'])} ({how})",
            escape(row["ecosystem"] or "?"),
            str(row["packages"]),
            "yes" if row["reboot_required"] else "",
        )
    stdout().print(table)
    for row in rows:
        if row.get("hint"):
            stderr().print(f"[yellow]hint[/] {escape(row['host'])}: {escape(row['hint'])}")


# ----------------------------------------------------------------------- cmdb-import


@app.command("cmdb-import")
def cmdb_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="CSV or JSON export."),
    file_format: CmdbFormat | None = typer.Option(
        None, "--format", "-f", help="Input format (default: detected)."
    ),
    mapping: Path | None = typer.Option(
        None, "--mapping", exists=True, dir_okay=False, help="JSON column mapping."
    ),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; write nothing."),
    create: bool = typer.Option(
        True, "--create/--no-create", help="Create assets for records that match none."
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Import a CMDB export: merge business context into assets, create the missing ones."""
    parsed = load_cmdb_file(
        file,
        format=file_format.value if file_format else None,
        mapping=load_mapping(mapping) if mapping else None,
    )
    with database() as db, db.session() as session:
        report = reconcile(
            session,
            parsed.records,
            now=now(),
            actor=actor(session, "assets:write"),
            label=file.name,
            dry_run=dry_run,
            create_missing=create,
        )
    skipped = parsed.rows - len(parsed.records)
    if as_json:
        print_json(
            {
                "file": str(file),
                "format": parsed.format,
                "rows": parsed.rows,
                "skipped_rows": skipped,
                "problems": [
                    {"row": p.row, "column": p.column, "message": p.message}
                    for p in parsed.problems
                ],
                **report.to_json(),
            }
        )
    else:
        _cmdb_summary(parsed, report)
    return EXIT_PARTIAL if report.conflicts or skipped else EXIT_OK


def _cmdb_summary(parsed: CmdbImport, report: ReconcileReport) -> None:
    out = stdout()
    counts = report.counts()
    verb = "would be" if report.dry_run else "were"
    out.print(
        f"{parsed.rows} rows ({parsed.format}): {counts['created']} assets {verb} created, "
        f"{counts['merged']} matched ({counts['updated']} changed), "
        f"{counts['unmatched']} unmatched, {counts['conflicts']} conflicts",
        highlight=False,
    )
    for problem in parsed.problems[:20]:
        out.print(f"[yellow]problem[/] {escape(str(problem))}", highlight=False)
    if len(parsed.problems) > 20:
        out.print(f"[yellow]problem[/] … {len(parsed.problems) - 20} more (use --json)")
    if report.merged:
        table = Table(title="Matched assets", title_justify="left")
        for column in ("Row", "Asset", "Matched by", "Changed"):
            table.add_column(column, overflow="fold")
        for merged in report.merged:
            table.add_row(
                str(merged.row),
                f"{merged.asset_id} {escape(merged.hostname)}",
                merged.matched_by,
                escape(", ".join(merged.changed) or "-"),
            )
        out.print(table)
    if report.conflicts:
        table = Table(title="Conflicts (not applied)", title_justify="left")
        for column in ("Row", "Record", "Why", "Assets / rows"):
            table.add_column(column, overflow="fold")
        for conflict in report.conflicts:
            sides = [
                f"asset {s.asset_id} {s.hostname} by {'+'.join(s.matched_by)}"
                for s in conflict.assets
            ]
            sides += [f"row {row}" for row in conflict.rows]
            table.add_row(
                str(conflict.row),
                escape(conflict.record),
                escape(conflict.reason),
                escape("; ".join(sides)),
            )
        out.print(table)


# -------------------------------------------------------------------------- discover


def parse_ports(text: str) -> tuple[int, ...]:
    """``22,80,8000-8010`` -> the ports, in order, without repeats."""
    ports: list[int] = []
    for part in text.split(","):
        item = part.strip()
        if not item:
            continue
        low, dash, high = item.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValidationFailed(f"bad port list {text!r}: {item!r} is not a port or range")
        first, last = int(low), int(high) if dash else int(low)
        if not 1 <= first <= last <= 65535:
            raise ValidationFailed(f"bad port list {text!r}: {item!r} is outside 1-65535")
        ports.extend(p for p in range(first, last + 1) if p not in ports)
    if not ports:
        raise ValidationFailed("no ports given")
    return tuple(ports)


@app.command("discover")
def discover_command(
    cidr: str = typer.Argument(..., help="Network to scan, e.g. 10.0.5.0/24."),
    ports: str = typer.Option(
        ",".join(str(p) for p in DEFAULT_PORTS), "--ports", help="Ports: 22,80,8000-8010."
    ),
    rate: float = typer.Option(50.0, "--rate", min=0.1, help="Connection attempts per second."),
    concurrency: int = typer.Option(64, "--concurrency", min=1, max=1024, help="In flight."),
    timeout: float = typer.Option(1.0, "--timeout", min=0.05, help="Seconds per attempt."),
    max_hosts: int = typer.Option(
        DEFAULT_MAX_HOSTS, "--max-hosts", min=1, help="Refuse larger networks."
    ),
    resolve: bool = typer.Option(True, "--resolve/--no-resolve", help="Reverse DNS names."),
    register: bool = typer.Option(
        True, "--register/--no-register", help="Record found hosts as discovered assets."
    ),
    as_json: bool = JsonFlag,
) -> int:
    """Find hosts on a network by TCP connect probes; optionally register them."""
    operator = require("assets:write") if register else None
    port_list = parse_ports(ports)
    with _progress(f"scanning {cidr}") as advance:
        found = asyncio.run(
            discover(
                cidr,
                ports=port_list,
                rate=rate,
                concurrency=concurrency,
                timeout=timeout,
                max_hosts=max_hosts,
                resolve_names=resolve,
                progress=advance,
            )
        )
    registered = None
    if operator is not None:
        with database() as db, db.session() as session:
            registered = register_discovered(session, found, now=now(), actor=operator)
    outcome = {h.address: h for h in registered.hosts} if registered else {}
    if as_json:
        print_json(
            {
                "network": cidr,
                "ports": list(port_list),
                "hosts": [
                    {
                        "address": h.address,
                        "hostname": h.hostname,
                        "open_ports": list(h.open_ports),
                        "closed_ports": list(h.closed_ports),
                        "asset_id": outcome[h.address].asset_id if h.address in outcome else None,
                        "outcome": outcome[h.address].outcome if h.address in outcome else "",
                    }
                    for h in found
                ],
                "registered": registered.to_json() if registered else None,
            }
        )
        return EXIT_OK
    table = Table(title=f"Hosts found in {escape(cidr)}", title_justify="left")
    for column in ("Address", "Name", "Open ports", "Asset"):
        table.add_column(column, overflow="fold")
    for host in found:
        entry = outcome.get(host.address)
        table.add_row(
            host.address,
            escape(host.hostname),
            ", ".join(str(p) for p in host.open_ports) or "(none open)",
            f"{entry.asset_id or ''} {entry.outcome}" if entry else "",
        )
    stdout().print(table)
    if not found:
        stdout().print("No host answered.")
    return EXIT_OK
