"""``patchwarden server`` and ``patchwarden up`` (the main job)."""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import typer
import uvicorn
from rich.markup import escape
from sqlalchemy import func, select

from patchwarden.cli.common import now, settings, stderr, stdout
from patchwarden.cli.feeds import default_osv_ecosystems, inflate_limits
from patchwarden.cli.local_agent import start_local_agent
from patchwarden.core.errors import ConfigError, PatchwardenError
from patchwarden.feeds.sync import EpssFeed, FeedSource, KevFeed, OsvFeed, sync
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from patchwarden.server.main import config_from
from patchwarden.server.report_worker import ReportWorkers, run_worker
from patchwarden.server.services import identity
from patchwarden.settings import Settings
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database, open_database
from patchwarden.store.models import FeedState, UserRow


def _tls_options(cert: Path | None, key: Path | None) -> dict[str, Any]:
    if (cert is None) != (key is None):
        raise ConfigError("TLS needs both --tls-cert and --tls-key")
    if cert is None or key is None:
        return {}
    for path in (cert, key):
        if not path.is_file():
            raise ConfigError(f"TLS file {path} does not exist")
    return {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}


def proxy_options(cfg: Settings) -> dict[str, Any]:
    """uvicorn's forwarded-header handling: only from PATCHWARDEN_TRUSTED_PROXIES.

    uvicorn's defaults believe ``X-Forwarded-For`` from 127.0.0.1, so any local client
    could pick the address that sign-in limits and the audit log see.
    """
    if not cfg.trusted_proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": cfg.trusted_proxies}


def server(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(
        1, "--workers", min=1, max=64, help="Worker processes (use PostgreSQL above 1)."
    ),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate (HTTPS)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key (HTTPS)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
    report_processes: int | None = typer.Option(
        None,
        "--report-processes",
        min=0,
        max=16,
        help="Processes applying agent reports (default: PATCHWARDEN_REPORT_PROCESSES, "
        "else as many as --workers on PostgreSQL, 0 on SQLite = a thread in each worker).",
    ),
) -> int:
    """Run the API, agent endpoint and web UI under uvicorn."""
    cfg = settings()
    tls = _tls_options(tls_cert, tls_key)
    sqlite = cfg.effective_database_url.startswith("sqlite")
    if workers > 1 and sqlite:
        raise ConfigError(
            "several workers need PostgreSQL",
            hint="set PATCHWARDEN_DATABASE_URL=postgresql+psycopg://… or use --workers 1",
        )
    if report_processes is None:
        report_processes = cfg.report_processes
    if report_processes is None:
        # As many as there are request processes: under load the requests get the
        # cores first (niceness), and the backlog drains in parallel afterwards.
        report_processes = 0 if sqlite else workers
    # Migrate (and create the audit key) once here, before any worker starts; workers
    # only check the schema and load the key.
    _open_checked(cfg).dispose()
    if tls:
        os.environ["PATCHWARDEN_SECURE_COOKIES"] = "1"
    report_workers = None
    if report_processes:
        # The uvicorn workers inherit the environment: they only acknowledge reports.
        os.environ["PATCHWARDEN_REPORT_PROCESSOR"] = "external"
        report_workers = ReportWorkers(report_processes, nice=cfg.report_nice)
        report_workers.start()
    try:
        uvicorn.run(
            "patchwarden.server.main:app_factory",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=log_level,
            **proxy_options(cfg),
            **tls,
        )
    finally:
        if report_workers is not None:
            report_workers.stop()
    return 0


def report_worker(
    index: int = typer.Option(0, "--index", min=0, help="This worker's share (0-based)."),
    count: int = typer.Option(1, "--count", min=1, max=16, help="Workers sharing the reports."),
    nice: int | None = typer.Option(
        None, "--nice", min=0, max=19, help="Niceness (default PATCHWARDEN_REPORT_NICE)."
    ),
    parent_pid: int | None = typer.Option(
        None, "--parent-pid", help="Exit when this process is no longer the parent."
    ),
) -> int:
    """Apply acknowledged agent reports from the database until stopped (SIGTERM).

    `patchwarden server` runs these itself; run them by hand only with servers started
    with PATCHWARDEN_REPORT_PROCESSOR=external and --report-processes 0."""
    if index >= count:
        raise ConfigError(f"--index {index} is not below --count {count}")
    cfg = settings()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s report-worker %(message)s")
    db = open_database(cfg.effective_database_url, pool_size=2, audit_key=cfg.load_audit_key())
    try:
        run_worker(
            db,
            clock=now,
            index=index,
            count=count,
            nice=cfg.report_nice if nice is None else nice,
            parent_pid=parent_pid,
        )
    finally:
        db.dispose()
    return 0


def _open_checked(cfg: Settings) -> Database:
    """The migrated database with the audit key (created when missing), refused when the
    audit log is keyed with another key: found at start, not at the first change."""
    db = open_database(
        cfg.effective_database_url, migrate=True, audit_key=cfg.load_audit_key(create=True)
    )
    try:
        with db.session() as session:
            audit.check_key(session)
    except BaseException:
        db.dispose()
        raise
    return db


def bootstrap_admin(db: Database, cfg: Settings) -> str | None:
    """Create the 'admin' user when there are no users; returns a generated password."""
    with db.session() as session:
        if session.scalar(select(func.count()).select_from(UserRow)):
            return None
        generated = None
        password = cfg.admin_password
        if not password:
            password = generated = secrets.token_urlsafe(15)
        identity.create_user(
            session,
            Actor("patchwarden up", "system"),
            username="admin",
            password=password,
            role="admin",
            now=now(),
        )
    return generated


def _initial_feeds(db: Database, cfg: Settings) -> str:
    """Sync feeds once when none were ever imported; returns a one-line outcome."""
    with db.session() as session:
        if session.scalar(select(func.count()).select_from(FeedState)):
            return "feeds already imported (patchwarden feeds status)"
    sources: list[FeedSource] = [OsvFeed(e) for e in default_osv_ecosystems(db)]
    sources += [KevFeed(), EpssFeed()]
    try:
        report = sync(
            db,
            sources,
            cache_dir=cfg.feed_cache_dir,
            now=now(),
            mirror=cfg.feeds_mirror or None,
            timeout=30.0,
            limits=inflate_limits(cfg),
        )
    except PatchwardenError as exc:
        return f"feed sync failed: {exc}"
    failed = [o for o in report.outcomes if o.status == "failed"]
    if failed:
        names = ", ".join(o.feed for o in failed)
        return f"feed sync failed for {names} (first error: {failed[0].detail})"
    return f"feeds synced: {', '.join(o.feed for o in report.outcomes)}"


def up(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="TCP port."),
    agent: bool = typer.Option(True, "--agent/--no-agent", help="Run a local agent too."),
    feeds: bool = typer.Option(True, "--feeds/--no-feeds", help="Sync feeds on first start."),
) -> int:
    """The main job: server on the embedded database, admin account, a local agent for
    this host, feeds when reachable — and the dashboard URL."""
    cfg = settings()
    db = _open_checked(cfg)
    generated = bootstrap_admin(db, cfg)
    # One process on the embedded database: it applies agent reports in a thread.
    ctx = AppContext(db=db, config=replace(config_from(cfg), apply_reports=True))
    app = create_app(ctx)
    uv = uvicorn.Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", **proxy_options(cfg))
    )
    thread = threading.Thread(target=uv.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise ConfigError(
                f"the server could not start on {host}:{port}",
                hint="is the port in use? pass --port",
            )
        time.sleep(0.05)
    url = f"http://{host}:{port}"
    console = stdout()
    console.print(f"[bold green]patchwarden is running[/]: dashboard {url}/", highlight=False)
    console.print(f"database: {escape(db.url)}", highlight=False)
    if generated:
        console.print(
            f"[bold]admin account created[/]: user [bold]admin[/], password "
            f"[bold]{escape(generated)}[/] (shown once; set PATCHWARDEN_ADMIN_PASSWORD to choose)",
            highlight=False,
        )
    console.print(
        "CLI: [bold]patchwarden login admin[/] once, then commands that change things "
        "run as that user",
        highlight=False,
    )
    if feeds:
        outcome = _initial_feeds(db, cfg)
        style = "yellow" if "failed" in outcome else "green"
        console.print(f"[{style}]{escape(outcome)}[/]", highlight=False)
        if "failed" in outcome:
            console.print(
                "[bold yellow]No vulnerability data yet[/]: findings appear after "
                "[bold]patchwarden feeds sync[/] (or feeds import FILE, or "
                "PATCHWARDEN_FEEDS_MIRROR=DIR|URL for an offline mirror).",
                highlight=False,
            )
    agent_handle = None
    if agent:
        try:
            agent_handle = start_local_agent(db, cfg, server_url=url)
            console.print(f"local agent enrolled: {escape(agent_handle.description)}")
        except PatchwardenError as exc:
            stderr().print(f"[yellow]local agent not started:[/] {escape(str(exc))}")
    console.print("press Ctrl+C to stop")
    try:
        while thread.is_alive():
            thread.join(timeout=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if agent_handle is not None:
            agent_handle.stop()
        uv.should_exit = True
        thread.join(timeout=10)
        db.dispose()
    return 0
