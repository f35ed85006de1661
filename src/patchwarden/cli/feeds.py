"""``patchwarden feeds import|sync|status``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from patchwarden.cli.common import (
    EXIT_ERROR,
    EXIT_OK,
    database,
    download_progress,
    now,
    print_json,
    settings,
    stderr,
    stdout,
)
from patchwarden.cli.identity import require
from patchwarden.collect.osrelease import parse_os_release
from patchwarden.core import ecosystems
from patchwarden.feeds.importer import ImportReport, import_files
from patchwarden.feeds.inflate import InflateLimits
from patchwarden.feeds.sync import (
    NVD_API_URL,
    AlpineSecdbFeed,
    DebianTrackerFeed,
    EpssFeed,
    FeedSource,
    KevFeed,
    NvdOptions,
    OsvFeed,
    fetch_nvd_pages,
    sync,
)
from patchwarden.settings import Settings
from patchwarden.store.advisories import count_advisories, count_by_feed
from patchwarden.store.db import Database
from patchwarden.store.intel import cvss_counts_by_origin, intel_counts
from patchwarden.store.models import AssetRow, FeedState

app = typer.Typer(help="Import, download and inspect vulnerability feeds.", no_args_is_help=True)


class FeedFormat(StrEnum):
    """Feed formats ``feeds import --format`` accepts."""

    osv = "osv"
    debian_tracker = "debian-tracker"
    debian_dsa = "debian-dsa"
    debian_dla = "debian-dla"
    alpine_secdb = "alpine-secdb"
    nvd = "nvd"
    cve5 = "cve5"
    kev = "kev"
    epss = "epss"


class SyncFeed(StrEnum):
    """Feeds ``feeds sync --feed`` can download."""

    osv = "osv"
    kev = "kev"
    epss = "epss"
    debian_tracker = "debian-tracker"
    alpine = "alpine"
    nvd = "nvd"


def inflate_limits(cfg: Settings) -> InflateLimits:
    """The decompression bounds of feed data, from the ``PATCHWARDEN_FEED_MAX_*`` settings."""
    return InflateLimits(
        member_bytes=cfg.feed_max_member_bytes,
        total_bytes=cfg.feed_max_total_bytes,
        ratio=cfg.feed_max_ratio,
    )


def _import_json(report: ImportReport) -> dict[str, Any]:
    refresh = report.refresh
    return {
        "files": [
            {
                "feed": f.feed,
                "kind": f.kind,
                "source": f.source,
                "records": f.records,
                "added": f.added,
                "updated": f.updated,
                "unchanged": f.unchanged,
                "withdrawn": f.withdrawn,
                "intel": f.intel,
                "problems": f.problems,
            }
            for f in report.files
        ],
        "refresh": None
        if refresh is None
        else {
            "assets": refresh.assets,
            "packages_matched": refresh.packages_matched,
            "new_findings": refresh.new,
            "resolved": refresh.resolved,
            "rescored": refresh.rescored,
        },
    }


def _print_import(report: ImportReport) -> None:
    console = stdout()
    for f in report.files:
        parts = [f"{f.records} records"]
        if f.added or f.updated or f.unchanged:
            parts.append(f"{f.added} added, {f.updated} updated, {f.unchanged} unchanged")
        if f.withdrawn:
            parts.append(f"{f.withdrawn} withdrawn")
        if f.intel:
            parts.append(f"{f.intel} CVEs of intel")
        # One line per file, however long its path: soft_wrap leaves wrapping to the terminal.
        console.print(
            f"[green]imported[/] {escape(f.feed)} from {escape(f.source)}: {', '.join(parts)}",
            highlight=False,
            soft_wrap=True,
        )
        for problem in f.problems[:5]:
            console.print(
                f"  [yellow]skipped:[/] {escape(problem)}", highlight=False, soft_wrap=True
            )
        if len(f.problems) > 5:
            console.print(
                f"  [yellow]… {len(f.problems) - 5} more skipped ranges[/]", highlight=False
            )
    if report.refresh is not None and report.refresh.assets:
        r = report.refresh
        console.print(
            f"findings refreshed on {r.assets} assets: {r.new} new, {r.resolved} resolved, "
            f"{r.rescored} rescored",
            highlight=False,
        )


@app.command("import")
def import_command(
    paths: list[Path] = typer.Argument(
        ..., help="Feed files or directories (OSV dirs, all.zip, JSON, CSV, …).", exists=True
    ),
    feed_format: FeedFormat | None = typer.Option(
        None, "--format", help="Force the format instead of detecting it."
    ),
    no_refresh: bool = typer.Option(
        False, "--no-refresh", help="Do not re-match stored hosts after importing."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> int:
    """Import feed files. All files are validated first; any error imports nothing."""
    require("feeds:write")
    limits = inflate_limits(settings())
    status = stderr().status("parsing and importing…") if not as_json else _Null()
    with database() as db, status:
        report = import_files(
            db,
            paths,
            now=now(),
            kind=feed_format.value if feed_format else None,
            refresh=not no_refresh,
            limits=limits,
        )
    if as_json:
        print_json(_import_json(report))
    else:
        _print_import(report)
    return EXIT_OK


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_args: object) -> None:
        return None


def default_osv_ecosystems(db: Database) -> list[str]:
    """Base ecosystems of the stored assets, or of this host when there are none."""
    with db.session() as session:
        found = {
            ecosystems.split(eco)[0]
            for eco in session.scalars(select(AssetRow.os_ecosystem).distinct())
            if eco
        }
    if not found:
        try:
            text = Path("/etc/os-release").read_text(encoding="utf-8")
        except OSError:
            text = ""  # an unreadable os-release only loses the default
        host = parse_os_release(text) if text else None
        if host is not None and host.ecosystem:
            found.add(ecosystems.split(host.ecosystem)[0])
    return sorted(found)


@app.command("sync")
def sync_command(
    feeds: list[SyncFeed] = typer.Option(
        [],
        "--feed",
        help="Feeds to sync (repeatable). Default: osv, kev, epss.",
    ),
    osv_ecosystems: list[str] = typer.Option(
        [],
        "--ecosystem",
        help="OSV ecosystems to download (repeatable), e.g. Debian, PyPI, 'Rocky Linux'. "
        "Default: the ecosystems of the stored hosts, else this host's.",
    ),
    alpine_releases: list[str] = typer.Option(
        [], "--alpine-release", help="Alpine secdb releases, e.g. v3.20 (with --feed alpine)."
    ),
    source: str | None = typer.Option(
        None,
        "--source",
        help="Mirror base URL or directory to download from instead of the official sites.",
    ),
    nvd_api_key: str = typer.Option(
        "", "--nvd-api-key", envvar="PATCHWARDEN_NVD_API_KEY", help="NVD API key (optional)."
    ),
    nvd_url: str = typer.Option(
        NVD_API_URL, "--nvd-url", help="NVD CVE API 2.0 endpoint (for a mirror)."
    ),
    force: bool = typer.Option(False, "--force", help="Ignore ETags; download everything."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> int:
    """Download feeds (conditional requests), verify them, import them in one transaction."""
    require("feeds:write")
    chosen = {f.value for f in feeds} or {"osv", "kev", "epss"}
    cfg = settings()
    moment = now()
    with database() as db:
        sources: list[FeedSource] = []
        if "osv" in chosen:
            ecos = osv_ecosystems or default_osv_ecosystems(db)
            if not ecos:
                stderr().print(
                    "[yellow]no OSV ecosystem to sync[/]: no hosts recorded and this host's "
                    "OS is unknown; pass --ecosystem"
                )
            sources.extend(OsvFeed(e) for e in ecos)
        if "kev" in chosen:
            sources.append(KevFeed())
        if "epss" in chosen:
            sources.append(EpssFeed())
        if "debian-tracker" in chosen:
            sources.append(DebianTrackerFeed())
        if "alpine" in chosen:
            sources.extend(AlpineSecdbFeed(r) for r in alpine_releases or ["v3.20"])
        with download_progress(not as_json) as progress:
            report = sync(
                db,
                sources,
                cache_dir=cfg.feed_cache_dir,
                now=moment,
                mirror=source,
                progress=progress,
                force=force,
                limits=inflate_limits(cfg),
            )
            nvd_report = None
            if "nvd" in chosen and not any(o.status == "failed" for o in report.outcomes):
                nvd_report = _sync_nvd(db, cfg, moment, nvd_url, nvd_api_key)
    failed = [o for o in report.outcomes if o.status == "failed"]
    if as_json:
        print_json(
            {
                "feeds": [
                    {"feed": o.feed, "status": o.status, "detail": o.detail, "bytes": o.bytes}
                    for o in report.outcomes
                ],
                "imported": _import_json(report.imported) if report.imported else None,
                "nvd": _import_json(nvd_report) if nvd_report else None,
            }
        )
    else:
        console = stdout()
        for o in report.outcomes:
            style = {"updated": "green", "not-modified": "dim", "failed": "bold red"}[o.status]
            detail = f": {escape(o.detail)}" if o.detail else ""
            console.print(
                f"[{style}]{o.status}[/] {escape(o.feed)}{detail}", highlight=False, soft_wrap=True
            )
        if report.imported:
            _print_import(report.imported)
        if nvd_report:
            _print_import(nvd_report)
        if failed:
            stderr().print(
                "[bold red]sync failed[/]: nothing was imported; the previous data is intact."
            )
    return EXIT_ERROR if failed else EXIT_OK


def _sync_nvd(
    db: Database, cfg: Settings, moment: datetime, url: str, api_key: str
) -> ImportReport:
    with db.session() as session:
        state = session.get(FeedState, "nvd")
        since = state.last_sync if state is not None else None
    pages_dir = cfg.feed_cache_dir / "nvd"
    pages_dir.mkdir(parents=True, exist_ok=True)
    for old in pages_dir.glob("nvd-page-*.json"):
        old.unlink()
    limits = inflate_limits(cfg)
    pages = fetch_nvd_pages(
        NvdOptions(api_url=url, api_key=api_key, since=since),
        now=moment,
        cache_dir=pages_dir,
        limits=limits,
    )
    # An incremental window with no changed CVE is a page of none: not an error here.
    report = import_files(db, pages, now=moment, kind="nvd", limits=limits, allow_empty=True)
    with db.session() as session:
        state = session.get(FeedState, "nvd")
        if state is not None:
            state.last_sync = moment
            state.source = url
    return report


def _age(moment: datetime, then: datetime | None) -> str:
    if then is None:
        return "never"
    seconds = int((moment - then).total_seconds())
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400 * 2:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def stored_records(session: Session, states: list[FeedState]) -> dict[str, int]:
    """How many records each feed holds in the store now (not just its last import).

    Advisories count for the feed that last imported them; KEV and EPSS are replaced
    whole, so their stored entries are theirs; NVD and CVE JSON 5 count the CVEs that
    hold a score from them.
    """
    advisories = count_by_feed(session)
    intel = intel_counts(session)
    cvss = cvss_counts_by_origin(session) if any(s.kind in ("nvd", "cve5") for s in states) else {}
    by_kind = {"kev": intel["kev"], "epss": intel["epss"], **cvss}
    return {s.name: by_kind.get(s.kind, advisories.get(s.name, 0)) for s in states}


def _last_import_text(state: FeedState) -> str:
    if state.last_import is None:
        return ""
    changes = state.meta.get("last_import") if isinstance(state.meta, dict) else None
    text = f"{state.last_import:%Y-%m-%d %H:%M}: {state.records} records"
    if isinstance(changes, dict) and any(changes.get(k) for k in ("added", "updated", "unchanged")):
        text += (
            f" ({changes.get('added', 0)} added, {changes.get('updated', 0)} updated, "
            f"{changes.get('unchanged', 0)} unchanged)"
        )
    return text


@app.command("status")
def status_command(
    as_json: bool = typer.Option(False, "--json", help="Print the status as JSON."),
) -> int:
    """List feeds with the records stored, what the last import held, and their age."""
    moment = now()
    with database() as db, db.session() as session:
        states = list(session.scalars(select(FeedState).order_by(FeedState.name)))
        stored = stored_records(session, states)
        by_source = count_advisories(session)
        intel = intel_counts(session)
    feeds = []
    for s in states:
        seen = s.last_sync or s.last_import
        feeds.append(
            {
                "feed": s.name,
                "kind": s.kind,
                "source": s.source,
                "records": stored[s.name],
                "last_import_records": s.records,
                "last_import": s.last_import.isoformat() if s.last_import else None,
                "last_sync": s.last_sync.isoformat() if s.last_sync else None,
                "age_seconds": int((moment - seen).total_seconds()) if seen else None,
                "meta": s.meta,
            }
        )
    totals = {
        "advisories_by_source": by_source,
        "cves_with_cvss": intel["cvss"],
        "cves_with_epss": intel["epss"],
        "kev_entries": intel["kev"],
        "epss_date": intel["epss_date"].isoformat() if intel["epss_date"] else None,
    }
    if as_json:
        print_json({"feeds": feeds, "totals": totals})
        return EXIT_OK
    console = stdout()
    if not states:
        console.print(
            "No feeds imported yet. Run [bold]patchwarden feeds sync[/] or "
            "[bold]patchwarden feeds import FILE…[/]"
        )
        return EXIT_OK
    table = Table(title="Feeds", title_justify="left")
    for column in ("Feed", "Stored", "Last import", "Last sync", "Age", "Source"):
        table.add_column(column, overflow="fold")
    for s in states:
        table.add_row(
            escape(s.name),
            f"{stored[s.name]:,}",
            _last_import_text(s),
            s.last_sync.strftime("%Y-%m-%d %H:%M") if s.last_sync else "",
            _age(moment, s.last_sync or s.last_import),
            escape(s.source),
        )
    console.print(table)
    console.print(
        "advisories: "
        + ", ".join(f"{escape(k)} {v}" for k, v in sorted(by_source.items()))
        + f"   CVEs with CVSS {intel['cvss']}, EPSS {intel['epss']}, KEV {intel['kev']}",
        highlight=False,
    )
    return EXIT_OK
