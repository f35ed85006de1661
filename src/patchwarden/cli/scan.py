"""``patchwarden scan``: this host or an inventory file → risk-ranked findings."""

from __future__ import annotations

import sys
from dataclasses import replace
from enum import StrEnum
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from patchwarden.cli.common import (
    EXIT_OK,
    EXIT_THRESHOLD,
    database,
    now,
    print_json,
    stderr,
    stdout,
)
from patchwarden.cli.identity import require
from patchwarden.collect.files import load_inventory_file
from patchwarden.collect.local import collect_local
from patchwarden.core import ecosystems
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import PRIORITIES, Inventory
from patchwarden.reports.scan import (
    Coverage,
    HostReport,
    host_report,
    report_to_csv,
    report_to_json,
    summary_counts,
    uncovered,
)
from patchwarden.store.findings import refresh_findings
from patchwarden.store.inventory import record_inventory


class OutputFormat(StrEnum):
    """Output formats of ``scan``."""

    table = "table"
    json = "json"
    csv = "csv"


class Exposure(StrEnum):
    """Asset exposure choices."""

    internet = "internet"
    internal = "internal"


class DataClass(StrEnum):
    """Data classification choices."""

    public = "public"
    internal = "internal"
    confidential = "confidential"
    restricted = "restricted"


class FailOn(StrEnum):
    """Priority thresholds for ``--fail-on``."""

    P1 = "P1"
    P2 = "P2"
    P3 = "P3"
    P4 = "P4"


def scan(
    inventory: Path | None = typer.Option(
        None,
        "--inventory",
        "-i",
        help="Inventory file to scan instead of this host (dpkg status, dpkg-query, "
        "rpm -qa, Alpine installed db, pip freeze, or patchwarden JSON).",
        exists=True,
        dir_okay=False,
        readable=True,
    ),
    ecosystem: str | None = typer.Option(
        None,
        "--ecosystem",
        "-e",
        help="OSV ecosystem of the inventory's packages, e.g. Debian:12, AlmaLinux:9.",
    ),
    hostname: str | None = typer.Option(
        None, "--hostname", help="Name to record the scanned host under."
    ),
    criticality: int | None = typer.Option(
        None, "--criticality", min=1, max=5, help="Business criticality 1 (low) - 5 (highest)."
    ),
    exposure: Exposure | None = typer.Option(None, "--exposure", help="Network exposure."),
    data_class: DataClass | None = typer.Option(
        None, "--data-class", help="Most sensitive data on the host."
    ),
    output: OutputFormat = typer.Option(
        OutputFormat.table, "--format", "-f", help="Output format."
    ),
    fail_on: FailOn | None = typer.Option(
        None,
        "--fail-on",
        help="Exit with code 1 when a finding of this priority or higher is open.",
    ),
    python: bool = typer.Option(
        False, "--python", help="Also scan this interpreter's Python packages (PyPI)."
    ),
    limit: int = typer.Option(
        0, "--limit", min=0, help="Show at most this many findings in the table (0: all)."
    ),
) -> int:
    """Scan this host (or an inventory file) and list what to patch, by risk and due date."""
    require("assets:write")  # the scan records the host and its findings
    if ecosystem is not None and not ecosystems.is_supported(ecosystem):
        ecosystems.info(ecosystem)  # raises UnsupportedEcosystem with the known list
    if inventory is not None:
        inv = load_inventory_file(inventory, ecosystem=ecosystem, hostname=hostname)
    else:
        inv = collect_local(include_python=python)
        if hostname:
            inv = _renamed(inv, hostname)
    if not inv.hostname:
        raise ValidationFailed(
            "the inventory names no host", hint="pass --hostname to record it under a name"
        )
    moment = now()
    with database() as db, db.session() as session:
        asset_id, _changed = record_inventory(
            session,
            inv,
            now=moment,
            criticality=criticality,
            exposure=exposure.value if exposure else None,
            data_class=data_class.value if data_class else None,
        )
        refreshed = refresh_findings(session, now=moment, asset_ids=[asset_id])
        report = host_report(
            session,
            asset_id,
            now=moment,
            package_count=len(inv.packages),
            problems=[*inv.problems, *refreshed.problems],
        )
    if output is not OutputFormat.table:
        # The table says it in place of the findings; JSON also has it in "coverage".
        _print_coverage(stderr(), uncovered(report.coverage))
    if output is OutputFormat.json:
        print_json(report_to_json(report))
    elif output is OutputFormat.csv:
        sys.stdout.write(report_to_csv(report))
    else:
        _print_table(report, limit)
    if fail_on is not None:
        threshold = PRIORITIES.index(fail_on.value)
        if any(PRIORITIES.index(f.risk.priority) <= threshold for f in report.findings):
            return EXIT_THRESHOLD
    return EXIT_OK


def _renamed(inv: Inventory, hostname: str) -> Inventory:
    return replace(inv, hostname=hostname)


def _print_coverage(console: Console, missing: list[Coverage]) -> None:
    """Say which ecosystems were not checked because no loaded advisory covers them."""
    for item in missing:
        console.print(
            f"[bold yellow]Not checked:[/] no loaded advisory covers {escape(item.ecosystem)} "
            f"({item.packages} packages); {escape(item.hint)}",
            highlight=False,
            soft_wrap=True,
        )


_PRIORITY_STYLE = {"P1": "bold red", "P2": "red", "P3": "yellow", "P4": "cyan"}


def _print_table(report: HostReport, limit: int) -> None:
    console = stdout()
    counts = summary_counts(report)
    by = counts["by_priority"]
    console.print(
        f"[bold]{escape(report.hostname)}[/]  {escape(report.os_name or '?')}  "
        f"({escape(report.ecosystem or 'unknown ecosystem')})  "
        f"{report.package_count} packages  criticality {report.criticality}  "
        f"{report.exposure}",
        highlight=False,
    )
    console.print(
        f"{counts['findings']} findings: [bold red]P1 {by['P1']}[/]  [red]P2 {by['P2']}[/]  "
        f"[yellow]P3 {by['P3']}[/]  [cyan]P4 {by['P4']}[/]   overdue {counts['overdue']}   "
        f"no fix yet {counts['unfixed']}",
        highlight=False,
    )
    for problem in report.problems[:10]:
        console.print(f"[yellow]note:[/] {escape(problem)}", highlight=False)
    if len(report.problems) > 10:
        console.print(f"[yellow]note:[/] … {len(report.problems) - 10} more", highlight=False)
    missing = uncovered(report.coverage)
    _print_coverage(console, missing)
    if not report.findings:
        if not missing:
            console.print("[green]No open findings.[/]")
        elif len(missing) < len(report.coverage):
            console.print("No open findings among the packages the loaded advisories cover.")
        return
    today = report.generated_at.date()
    fixable = [f for f in report.findings if f.fixed_version is not None]
    shown = fixable[:limit] if limit else fixable
    table = Table(title="Findings (highest risk first)", title_justify="left")
    for column in ("Pri", "Score", "Due", "Package", "Installed", "Fixed in", "Advisory", "CVE"):
        table.add_column(column, overflow="fold")
    for f in shown:
        due = f.due_date.isoformat() if f.due_date else ""
        if f.overdue(today):
            due = f"[bold red]{due} overdue[/]"
        cves = [a for a in f.aliases if a.startswith("CVE-")]
        table.add_row(
            f"[{_PRIORITY_STYLE[f.risk.priority]}]{f.risk.priority}[/]",
            f"{f.risk.score:.1f}" + (" KEV" if f.kev else ""),
            due,
            escape(f.package),
            escape(f.installed_version),
            escape(f.fixed_version or ""),
            escape(f.advisory_id),
            escape(", ".join(cves[:3]) + (" …" if len(cves) > 3 else "")),
        )
    console.print(table)
    if limit and len(fixable) > limit:
        console.print(f"… {len(fixable) - limit} more (use --limit 0 or --format json)")

    if report.remediation:
        plan = Table(title="Remediation: upgrades, most risk removed first", title_justify="left")
        for column in ("Upgrade", "From", "To at least", "Binaries", "Fixes", "Risk removed"):
            plan.add_column(column, overflow="fold")
        for u in report.remediation:
            plan.add_row(
                escape(u.name),
                escape(u.installed_version),
                escape(u.target_version),
                escape(", ".join(u.packages)),
                str(len(u.advisories)),
                f"{u.risk_removed:.1f}",
            )
        console.print(plan)
    if report.unfixed:
        unfixed = Table(
            title="No fix available yet (consider an exception or mitigation)",
            title_justify="left",
        )
        for column in ("Pri", "Score", "Package", "Installed", "Advisory", "Why"):
            unfixed.add_column(column, overflow="fold")
        for f in report.unfixed:
            unfixed.add_row(
                f"[{_PRIORITY_STYLE[f.risk.priority]}]{f.risk.priority}[/]",
                f"{f.risk.score:.1f}",
                escape(f.package),
                escape(f.installed_version),
                escape(f.advisory_id),
                escape(f.why),
            )
        console.print(unfixed)
