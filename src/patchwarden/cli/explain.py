"""``patchwarden explain ID``: an advisory or CVE, its intel, and why it matters here."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from patchwarden.cli.common import database, print_json, stdout
from patchwarden.core.errors import NotFound
from patchwarden.reports.explain import Explanation, explain_id


def explain(
    ident: str = typer.Argument(..., metavar="ID", help="Advisory id (DSA-…, GHSA-…) or CVE id."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> int:
    """Show an advisory or CVE with its CVSS, EPSS and KEV data and the hosts it affects."""
    with database() as db, db.session() as session:
        found = explain_id(session, ident)
    if found is None:
        raise NotFound(
            f"nothing known about {ident!r}",
            hint="check the id, or import feeds first (patchwarden feeds sync / feeds import)",
        )
    if as_json:
        print_json(found.to_json())
    else:
        _print(found)
    return 0


def _print(found: Explanation) -> None:
    console = stdout()
    for adv in found.advisories:
        console.rule(f"[bold]{escape(adv.id)}[/]")
        console.print(escape(adv.summary or "(no summary)"), highlight=False)
        meta = [f"source {adv.source}"]
        if adv.published:
            meta.append(f"published {adv.published.date().isoformat()}")
        meta.append(f"modified {adv.modified.date().isoformat()}")
        if adv.withdrawn:
            meta.append(f"[red]withdrawn {adv.withdrawn.date().isoformat()}[/]")
        if adv.database_severity:
            meta.append(f"publisher severity {escape(adv.database_severity)}")
        console.print("  ".join(meta), highlight=False)
        if adv.aliases or adv.related:
            console.print(
                "aliases: " + escape(", ".join([*adv.aliases, *adv.related])), highlight=False
            )
        for affected in adv.affected:
            ranges = "; ".join(
                ", ".join(f"{e.kind} {e.version}" for e in r.events) for r in affected.ranges
            )
            note = f" ({affected.note})" if affected.note else ""
            console.print(
                f"  affects {escape(affected.ecosystem)} {escape(affected.name)}: "
                f"{escape(ranges or 'listed versions only')}{escape(note)}",
                highlight=False,
            )
    for intel in found.intel:
        console.rule(f"[bold]{escape(intel.cve_id)}[/]")
        if intel.description:
            console.print(escape(intel.description[:600]), highlight=False)
        for c in intel.cvss:
            console.print(
                f"  CVSS {c.version} {c.base_score:.1f} {c.severity}  {escape(c.vector)}"
                f"  ({escape(c.source)})",
                highlight=False,
            )
        if intel.epss:
            console.print(
                f"  EPSS {intel.epss.score:.5f} (percentile {intel.epss.percentile:.3f}, "
                f"{intel.epss.score_date.isoformat()})",
                highlight=False,
            )
        if intel.kev:
            ransomware = ", known ransomware use" if intel.kev.ransomware else ""
            console.print(
                f"  [bold red]CISA KEV[/]: added {intel.kev.date_added.isoformat()}, "
                f"due {intel.kev.due_date.isoformat()}{ransomware} — "
                f"{escape(intel.kev.required_action)}",
                highlight=False,
            )
    if not found.hosts:
        console.print("\nNo host in the inventory is affected.")
        return
    table = Table(title="Why it matters here", title_justify="left")
    for column in ("Host", "Package", "Installed", "Fixed in", "Pri", "Score", "Due", "Factors"):
        table.add_column(column, overflow="fold")
    for host in found.hosts:
        table.add_row(*(escape(str(v)) for v in _host_row(host)))
    console.print(table)


def _host_row(host: dict[str, Any]) -> list[str]:
    factors = "; ".join(f"{f['name']} {f['value']} ({f['effect']})" for f in host["risk_factors"])
    return [
        host["hostname"],
        host["package"],
        host["installed_version"],
        host["fixed_version"] or "no fix",
        host["priority"],
        f"{host['risk_score']:.1f}",
        host["due_date"] or "",
        factors,
    ]
