"""The foundation benchmark: a synthetic fleet matched in memory, naively and in the database.

Run from the repository root::

    .venv/bin/python -m bench.fleet --hosts 10000 --packages 1500 --backend sqlite,postgres
    .venv/bin/python -m bench.fleet --quick          # small smoke run, about a minute

See bench/README.md for what each figure means, docs/performance.md for results.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    add_output_arguments,
    machine,
    parse_sized,
    peak_rss_mib,
    rss_mib,
    shared_data_dir,
    timed,
)
from bench.database import BackendResult, measure_backend
from bench.matcher import measure_matcher, measure_naive
from bench.synth import AdvisoryConfig, FleetConfig, affected_entries, build_advisories, build_fleet

#: The fixed "now" of the run: advisories and findings get stable timestamps.
NOW = datetime(2026, 9, 1, 12, 0, tzinfo=UTC)

#: Targets from the issue.
TARGET_TRIPLES_PER_S = 300_000
TARGET_FULL_REFRESH_S = 30.0

_FULL = {
    "hosts": 10_000,
    "packages": 1_500,
    "advisories": 200_000,
    "repeat": 5,
    "db_repeat": 3,
    "naive_hosts": 50,
}
_QUICK = {
    "hosts": 300,
    "packages": 400,
    "advisories": 30_000,
    "repeat": 3,
    "db_repeat": 1,
    "naive_hosts": 10,
}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fleet",
        description="Fleet-scale matching benchmark (see bench/README.md).",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes for a smoke run (explicit options still win)",
    )
    parser.add_argument("--hosts", type=int, help=f"hosts in the fleet ({_FULL['hosts']})")
    parser.add_argument("--packages", type=int, help=f"packages per host ({_FULL['packages']})")
    parser.add_argument(
        "--advisories",
        type=int,
        help=f"advisories in all, real + generated ({_FULL['advisories']})",
    )
    parser.add_argument(
        "--backend",
        default="sqlite,postgres",
        help="comma-separated: sqlite, postgres, or none (sqlite,postgres)",
    )
    parser.add_argument(
        "--repeat", type=int, help=f"in-memory matcher repetitions ({_FULL['repeat']})"
    )
    parser.add_argument(
        "--db-repeat", type=int, help=f"database refresh repetitions ({_FULL['db_repeat']})"
    )
    parser.add_argument(
        "--naive-hosts",
        type=int,
        help=f"hosts sampled for the naive approach ({_FULL['naive_hosts']})",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data (1)")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="folder for the throwaway SQLite file (system temp)",
    )
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="run every database refresh under cProfile (slower) and keep the .prof files here",
    )
    add_output_arguments(parser)
    return parse_sized(parser, _FULL, _QUICK)


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main() -> None:
    """Build the data, run the three measures and print (and optionally save) figures."""
    args = _arguments()
    root = shared_data_dir()
    report: dict[str, Any] = {
        "machine": machine(),
        "patchwarden": _source(),
        "arguments": {
            k: str(v) if isinstance(v, Path) else v
            for k, v in vars(args).items()
            if k != "postgres_url"
        },
    }

    _log(f"building fleet: {args.hosts} hosts x {args.packages} packages")
    fleet, fleet_s = timed(
        lambda: build_fleet(
            root, FleetConfig(hosts=args.hosts, packages=args.packages, seed=args.seed)
        )
    )
    _log(f"building advisories: {args.advisories}")
    (advisories, counts), advisories_s = timed(
        lambda: build_advisories(
            root, fleet, AdvisoryConfig(total=args.advisories, seed=args.seed), NOW
        )
    )
    report["data"] = {
        "fleet_build_s": fleet_s,
        "advisories_build_s": advisories_s,
        "hosts": len(fleet.hosts),
        "hosts_per_profile": {
            p: sum(1 for h in fleet.hosts if h.profile == p) for p in fleet.profiles
        },
        "host_packages": sum(len(h.inventory.packages) for h in fleet.hosts),
        "distinct_packages": len(fleet.interned),
        "profiles": {
            p.name: {
                "ecosystem": p.ecosystem,
                "base_groups": len(p.base),
                "real_binaries": p.real_binaries,
                "extra_groups": len(p.extras),
                "archive_groups": len(p.archive),
            }
            for p in fleet.profiles.values()
        },
        "advisories": len(advisories),
        "affected_entries": affected_entries(advisories),
        "advisory_sources": counts,
        "rss_after_data_mib": rss_mib(),
    }
    _log(
        f"data ready: {len(advisories)} advisories, {len(fleet.interned)} distinct packages, "
        f"RSS {rss_mib():.0f} MiB"
    )

    _log("measure 1: in-memory matcher")
    matcher, _index, by_package = measure_matcher(fleet, advisories, args.repeat)
    report["matcher"] = {**asdict(matcher), **matcher.summary()}
    _log(
        f"  {matcher.distinct_triples} distinct triples: "
        f"warm {report['matcher']['warm_triples_per_s']:,.0f}/s, "
        f"cold {report['matcher']['cold_triples_per_s']:,.0f}/s"
    )

    _log(f"measure 2: naive per-host approach on {args.naive_hosts} hosts")
    naive = measure_naive(fleet, advisories, by_package, args.naive_hosts)
    report["naive"] = asdict(naive)
    report["naive"]["ratio_vs_index"] = (
        naive.fleet_extrapolated_s / report["matcher"]["fleet_in_memory_s"]
    )
    _log(
        f"  {naive.per_host_s * 1000:.0f} ms/host -> fleet ~{naive.fleet_extrapolated_s:.0f} s "
        f"(x{report['naive']['ratio_vs_index']:.0f} the index); "
        f"{naive.agree}/{naive.sample_packages} packages agree"
    )
    report["peak_rss_main_mib"] = peak_rss_mib()
    del by_package, _index

    report["database"] = {}
    backends = [b.strip() for b in args.backend.split(",") if b.strip() and b.strip() != "none"]
    for backend in backends:
        _log(f"measure 3: {backend}")
        result: BackendResult = measure_backend(
            backend,
            fleet,
            advisories,
            NOW,
            repeat=args.db_repeat,
            postgres_admin_url=args.postgres_url,
            workdir=args.workdir,
            profile_dir=args.profile_dir,
            log=_log,
        )
        report["database"][backend] = {**asdict(result), **result.summary()}

    for figures in report["database"].values():
        # The database must hold exactly the findings the in-memory fan-out counted.
        figures["findings_match_in_memory"] = figures["findings"] == matcher.findings
    report["targets"] = _targets(report)
    report["machine"]["load_average_at_end"] = machine()["load_average_at_start"]
    _print_report(report)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
        _log(f"figures written to {args.json}")


def _source() -> str:
    """Where the measured patchwarden code was imported from."""
    import patchwarden

    return str(Path(patchwarden.__file__).resolve().parent)


def _targets(report: dict[str, Any]) -> dict[str, Any]:
    rate = report["matcher"]["warm_triples_per_s"]
    targets: dict[str, Any] = {
        "triples_per_s_per_core": {
            "target": TARGET_TRIPLES_PER_S,
            "warm": rate,
            "cold": report["matcher"]["cold_triples_per_s"],
            "met_warm": rate >= TARGET_TRIPLES_PER_S,
            "met_cold": report["matcher"]["cold_triples_per_s"] >= TARGET_TRIPLES_PER_S,
        },
    }
    for backend, figures in report["database"].items():
        targets[f"full_refresh_{backend}"] = {
            "target_s": TARGET_FULL_REFRESH_S,
            "median_s": figures["full_s"],
            "met": figures["full_s"] <= TARGET_FULL_REFRESH_S,
        }
    return targets


def _phases(run: dict[str, Any]) -> str:
    """One refresh's time split: match_pending (with index load and package_vuln
    insert), threats_for, finding insert, the rest (queries, diff, scoring), commit."""
    phases = run["phases"]
    wrapped = sum(phases.get(k, 0.0) for k in ("match_pending", "threats_for", "insert finding"))
    parts = {
        "match_pending": phases.get("match_pending", 0.0),
        "(load_index)": phases.get("load_index", 0.0),
        "(insert package_vuln)": phases.get("insert package_vuln", 0.0),
        "threats_for": phases.get("threats_for", 0.0),
        "insert finding": phases.get("insert finding", 0.0),
        "rest": run["refresh_s"] - wrapped,
        "commit": run["commit_s"],
    }
    return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in parts.items())


def _print_report(report: dict[str, Any]) -> None:
    m, n, d = report["matcher"], report["naive"], report["data"]
    lines = [
        "",
        f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"Python {report['machine']['python']}",
        f"fleet: {d['hosts']} hosts, {d['host_packages']:,} host packages, "
        f"{d['distinct_packages']:,} distinct packages; {d['advisories']:,} advisories "
        f"({d['affected_entries']:,} affected entries)",
        "",
        "| measure | figure |",
        "|---|---|",
        f"| index build (flatten + add) | {m['index_build_median_s']:.2f} s |",
        f"| distinct lookup triples | {m['distinct_triples']:,} ({m['triples_with_matches']:,} "
        f"with matches) |",
        f"| match, cold (fresh index, no key cache) | {m['cold_median_s']:.3f} s = "
        f"{m['cold_triples_per_s']:,.0f} triples/s |",
        f"| match, warm | {m['warm_median_s']:.3f} s = {m['warm_triples_per_s']:,.0f} triples/s |",
        f"| match per CPU second, cold / warm | {m['cold_triples_per_cpu_s']:,.0f} / "
        f"{m['warm_triples_per_cpu_s']:,.0f} triples/s |",
        f"| match_package, warm, distinct packages | {m['packages_warm_median_s']:.3f} s = "
        f"{m['warm_packages_per_s']:,.0f} packages/s |",
        f"| fan-out to hosts in memory | {m['fanout_median_s']:.2f} s, "
        f"{m['findings']:,} findings |",
        f"| findings per host | median {m['findings_per_host']['median']:.0f}, "
        f"p90 {m['findings_per_host']['p90']}, max {m['findings_per_host']['max']} |",
        f"| naive, per host | {n['per_host_s'] * 1000:.0f} ms ({n['sample_hosts']} hosts) |",
        f"| naive, fleet (extrapolated) | {n['fleet_extrapolated_s']:,.0f} s = "
        f"x{n['ratio_vs_index']:,.0f} the indexed {m['fleet_in_memory_s']:.2f} s |",
    ]
    for backend, b in report["database"].items():
        lines += [
            f"| {backend}: setup (advisories / inventories) | {b['setup_advisories_s']:.0f} s /"
            f" {b['setup_inventories_s']:.0f} s |",
            f"| {backend}: full refresh | {b['full_s']:.1f} s (client CPU {b['full_cpu_s']:.1f} s),"
            f" {b['findings']:,} findings, "
            f"peak RSS {b['full_peak_rss_mib']:.0f} MiB |",
            f"| {backend}: full refresh phases (first run) | {_phases(b['full'][0])} |",
            f"| {backend}: findings equal the in-memory count | {b['findings_match_in_memory']} |",
            f"| {backend}: unchanged refresh | {b['unchanged_s']:.1f} s |",
            f"| {backend}: incremental refresh (one host) | {b['incremental_s'] * 1000:.0f} ms |",
        ]
    lines.append("")
    for name, target in report["targets"].items():
        lines.append(f"target {name}: {target}")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
