"""Findings: match pending packages once, fan matches out to assets, score them.

The pipeline (``refresh_findings``):

1. every package row not matched since the advisories last changed (``matched_at`` is
   NULL) is matched once — distinct (ecosystem, name, version) triples, however many
   assets share them — and the result cached in ``package_vuln``;
2. the database joins ``asset_package`` with ``package_vuln`` to list what every asset
   in scope should have; that is diffed against stored findings: new ones are inserted
   with ``first_seen = now``, vanished ones are resolved (``resolved_at = now``),
   returning ones reopen;
3. risk, priority and due date are recomputed from the advisory's threat and the
   asset's context, and written only where they changed.

The scope is every asset, some assets, or — after an inventory update — only some
assets' findings of the package rows the update added or removed. A package matched
in step 1 widens the scope to every asset holding it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from patchwarden.core import risk
from patchwarden.core.approval import ExceptionRule, covers
from patchwarden.core.cvss import score_vector
from patchwarden.core.errors import UnsupportedEcosystem, ValidationFailed
from patchwarden.core.matching import AdvisoryIndex
from patchwarden.core.model import AssetContext, CvssScore, InstalledPackage
from patchwarden.store.advisories import load_index
from patchwarden.store.bulk import chunks, insert_rows, one_of
from patchwarden.store.intel import get_intel
from patchwarden.store.inventory import asset_context
from patchwarden.store.models import (
    AdvisoryRow,
    AssetGroupMember,
    AssetPackage,
    AssetRow,
    FindingRow,
    PackageRow,
    PackageVuln,
    RiskExceptionRow,
    table_of,
)

#: Above this many distinct names, loading the whole index beats filtering by name.
_FULL_INDEX_NAMES = 20_000


@dataclass
class RefreshResult:
    """What a refresh did."""

    packages_matched: int = 0
    triples_matched: int = 0
    assets: int = 0
    new: int = 0
    resolved: int = 0
    reopened: int = 0
    rescored: int = 0
    problems: list[str] = field(default_factory=list)


@dataclass
class PendingMatch:
    """What ``match_pending`` matched: the package rows, the distinct triples among them,
    and problems worth reporting (unsupported ecosystems, bad advisory ranges)."""

    package_ids: list[int] = field(default_factory=list)
    triples: int = 0
    problems: list[str] = field(default_factory=list)


def match_pending(
    session: Session,
    *,
    now: datetime,
    asset_ids: Sequence[int] | None = None,
    index: AdvisoryIndex | None = None,
) -> PendingMatch:
    """Match package rows that have no current match (of ``asset_ids``, default all)."""
    query = select(
        PackageRow.id,
        PackageRow.name,
        PackageRow.version,
        PackageRow.ecosystem,
        PackageRow.arch,
        PackageRow.source_name,
        PackageRow.source_version,
    ).where(PackageRow.matched_at.is_(None))
    pending: list[tuple[int, InstalledPackage]] = []
    if asset_ids is None:
        rows: Iterable[Any] = session.execute(query)
        pending = [(row[0], InstalledPackage(*row[1:])) for row in rows]
    else:
        for batch in chunks(sorted(set(asset_ids))):
            sub = select(AssetPackage.package_id).where(
                one_of(session, AssetPackage.asset_id, batch)
            )
            pending.extend(
                (row[0], InstalledPackage(*row[1:]))
                for row in session.execute(query.where(PackageRow.id.in_(sub)))
            )
        pending = list(dict(pending).items())
    if not pending:
        return PendingMatch()
    # Claim the rows before matching: a concurrent transaction matching the same package
    # (two hosts' reports processed at once) holds its row lock until it commits, after
    # which the row is no longer unmatched and this one skips it.
    claimed: set[int] = set()
    for batch in chunks([pid for pid, _ in pending], 5000):
        claimed.update(
            session.scalars(
                update(PackageRow)
                .where(one_of(session, PackageRow.id, batch), PackageRow.matched_at.is_(None))
                .values(matched_at=now)
                .returning(PackageRow.id)
            )
        )
    pending = [(pid, package) for pid, package in pending if pid in claimed]
    if not pending:
        return PendingMatch()

    if index is None:
        names = {p.name for _, p in pending} | {p.source_name for _, p in pending}
        index = load_index(session, None if len(names) > _FULL_INDEX_NAMES else names)

    problems: list[str] = []
    reported: set[str] = set()
    memo: dict[tuple[str, str, str, str, str], tuple[Any, ...]] = {}
    found: list[tuple[int, Any]] = []
    for package_id, package in pending:
        memo_key = (
            package.ecosystem,
            package.name,
            package.version,
            package.source_name,
            package.source_version,
        )
        matches = memo.get(memo_key)
        if matches is None:
            try:
                matches = index.match_package(package)
            except UnsupportedEcosystem as exc:
                if package.ecosystem not in reported:
                    reported.add(package.ecosystem)
                    problems.append(f"{package.name} {package.version}: {exc}")
                matches = ()
            memo[memo_key] = matches
        found.extend((package_id, m) for m in matches)

    advisory_ids = _advisory_row_ids(session, {m.advisory_id for _, m in found})
    insert_rows(
        session,
        PackageVuln,
        ("package_id", "advisory_id", "fixed_version", "matched_name", "matched_version", "why"),
        (
            (pid, advisory_ids[m.advisory_id], m.fixed_version, m.name, m.version, m.why)
            for pid, m in found
        ),
    )
    problems.extend(index.problems[:20])
    return PendingMatch([pid for pid, _ in pending], len(memo), problems)


def _advisory_row_ids(session: Session, ext_ids: Iterable[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for batch in chunks(sorted(ext_ids)):
        for row_id, ext_id in session.execute(
            select(AdvisoryRow.id, AdvisoryRow.ext_id).where(
                one_of(session, AdvisoryRow.ext_id, batch)
            )
        ):
            found[ext_id] = row_id
    return found


def _advisory_cvss(severity: Iterable[Sequence[str]]) -> list[CvssScore]:
    scores = []
    for kind, vector in severity:
        if kind.startswith("CVSS_"):
            try:
                scores.append(score_vector(vector, source="advisory"))
            except ValidationFailed:
                continue  # a bad vector in an advisory must not hide the finding
    return scores


def threats_for(session: Session, advisory_ids: Iterable[int]) -> dict[int, risk.Threat]:
    """The folded threat (CVSS, EPSS, KEV) of each advisory row."""
    rows: list[tuple[int, str, list[Any], list[Any], list[Any], str, list[Any]]] = []
    for batch in chunks(sorted(set(advisory_ids))):
        rows.extend(
            session.execute(  # type: ignore[arg-type]
                select(
                    AdvisoryRow.id,
                    AdvisoryRow.ext_id,
                    AdvisoryRow.aliases,
                    AdvisoryRow.related,
                    AdvisoryRow.severity,
                    AdvisoryRow.database_severity,
                    AdvisoryRow.affected,
                ).where(one_of(session, AdvisoryRow.id, batch))
            )
        )
    cves: dict[int, list[str]] = {}
    for row_id, ext_id, aliases, related, *_ in rows:
        ids = dict.fromkeys(i for i in (ext_id, *aliases, *related) if i.startswith("CVE-"))
        cves[row_id] = list(ids)
    intel = get_intel(session, {c for ids in cves.values() for c in ids})
    threats: dict[int, risk.Threat] = {}
    for row_id, _ext, _aliases, _related, severity, db_severity, affected in rows:
        own = list(severity) + [s for a in affected for s in a.get("severity", [])]
        threats[row_id] = risk.summarize(
            (intel[c] for c in cves[row_id] if c in intel),
            publisher_severity=db_severity,
            advisory_cvss=_advisory_cvss(own),
        )
    return threats


def accepted_findings(
    session: Session, keys: Sequence[tuple[int, int, int]], *, now: datetime
) -> set[tuple[int, int, int]]:
    """The (asset, package, advisory) keys an approved, unexpired exception covers."""
    rules = [
        ExceptionRule(r.id, r.advisory, r.package, r.asset_id, r.group_id, r.expires_at)
        for r in session.scalars(
            select(RiskExceptionRow).where(
                RiskExceptionRow.status == "approved", RiskExceptionRow.expires_at > now
            )
        )
    ]
    if not rules or not keys:
        return set()
    asset_ids = sorted({a for a, _, _ in keys})
    groups: dict[int, set[int]] = {}
    for batch in chunks(asset_ids):
        for asset_id, group_id in session.execute(
            select(AssetGroupMember.asset_id, AssetGroupMember.group_id).where(
                one_of(session, AssetGroupMember.asset_id, batch)
            )
        ):
            groups.setdefault(asset_id, set()).add(group_id)
    names: dict[int, set[str]] = {}
    for batch in chunks(sorted({p for _, p, _ in keys})):
        for package_id, name, source in session.execute(
            select(PackageRow.id, PackageRow.name, PackageRow.source_name).where(
                one_of(session, PackageRow.id, batch)
            )
        ):
            names[package_id] = {name, source} - {""}
    advisory_names: dict[int, set[str]] = {}
    for batch in chunks(sorted({a for _, _, a in keys})):
        for row_id, ext_id, aliases, related in session.execute(
            select(
                AdvisoryRow.id, AdvisoryRow.ext_id, AdvisoryRow.aliases, AdvisoryRow.related
            ).where(one_of(session, AdvisoryRow.id, batch))
        ):
            advisory_names[row_id] = {ext_id, *aliases, *related}
    covered = set()
    for key in keys:
        asset_id, package_id, advisory_id = key
        for rule in rules:
            if any(
                covers(
                    rule,
                    advisory_ids=advisory_names.get(advisory_id, ()),
                    package=name,
                    asset_id=asset_id,
                    asset_groups=groups.get(asset_id, ()),
                    now=now,
                )
                for name in names.get(package_id, {""})
            ):
                covered.add(key)
                break
    return covered


#: A part of the fleet a refresh re-evaluates: assets (``None``: all) and, optionally,
#: only their findings of some package rows.
_Scope = tuple[list[int] | None, list[int] | None]


def _holders(session: Session, package_ids: Sequence[int], *, besides: Sequence[int]) -> list[int]:
    """Assets other than ``besides`` that hold any of ``package_ids``."""
    found: set[int] = set()
    for batch in chunks(sorted(package_ids)):
        found.update(
            session.scalars(
                select(AssetPackage.asset_id)
                .where(one_of(session, AssetPackage.package_id, batch))
                .distinct()
            )
        )
    return sorted(found - set(besides))


def _scopes(
    session: Session,
    asset_ids: Sequence[int] | None,
    packages: Collection[int] | None,
    rematched: Sequence[int],
) -> list[_Scope]:
    if asset_ids is None:
        return [(None, None)]
    own = sorted(set(asset_ids))
    scopes: list[_Scope] = []
    if packages is None:
        scopes.append((own, None))
    elif packages or rematched:
        scopes.append((own, sorted(set(packages) | set(rematched))))
    if rematched:
        # A package matched now may be held by other assets too (its match was
        # invalidated by an advisory import that has not refreshed them yet): their
        # findings of it change as well.
        others = _holders(session, rematched, besides=own)
        if others:
            scopes.append((others, sorted(rematched)))
    return scopes


def refresh_findings(
    session: Session,
    *,
    now: datetime,
    asset_ids: Sequence[int] | None = None,
    packages: Collection[int] | None = None,
    policy: risk.SloPolicy | None = None,
    index: AdvisoryIndex | None = None,
) -> RefreshResult:
    """Bring findings of the given assets (default: all) up to date; see module doc.

    With ``packages`` (package row ids, e.g. those an inventory update added and
    removed) only the given assets' findings of those packages are re-evaluated — all
    that an inventory change can alter; rescoring the rest (new intel, a changed asset
    context) is a refresh without ``packages``.
    """
    policy = policy or risk.SloPolicy()
    result = RefreshResult()
    matched = match_pending(session, now=now, asset_ids=asset_ids, index=index)
    result.packages_matched = len(matched.package_ids)
    result.triples_matched = matched.triples
    result.problems = matched.problems
    scopes = _scopes(session, asset_ids, packages, matched.package_ids)

    contexts: dict[int, AssetContext] = {}
    asset_query = select(AssetRow)
    for scope_assets, _packages in scopes:
        if scope_assets is None:
            for asset in session.scalars(asset_query):
                contexts[asset.id] = asset_context(asset)
            continue
        for batch in chunks(scope_assets):
            for asset in session.scalars(asset_query.where(one_of(session, AssetRow.id, batch))):
                contexts[asset.id] = asset_context(asset)
    result.assets = len(contexts)
    if not contexts:
        return result

    desired_query = select(
        AssetPackage.asset_id, PackageVuln.package_id, PackageVuln.advisory_id
    ).join(PackageVuln, PackageVuln.package_id == AssetPackage.package_id)
    existing_query = select(
        FindingRow.id,
        FindingRow.asset_id,
        FindingRow.package_id,
        FindingRow.advisory_id,
        FindingRow.state,
        FindingRow.first_seen,
        FindingRow.risk_score,
        FindingRow.priority,
        FindingRow.due_date,
    )
    # Core reads on the session's connection: plain rows, no ORM bookkeeping.
    connection = session.connection()
    desired: list[tuple[int, int, int]] = []
    existing: dict[tuple[int, int, int], tuple[Any, ...]] = {}
    for scope_assets, scope_packages in scopes:
        asset_batches = [None] if scope_assets is None else list(chunks(scope_assets))
        package_batches = [None] if scope_packages is None else list(chunks(scope_packages))
        for asset_batch in asset_batches:
            for package_batch in package_batches:
                wanted, stored = desired_query, existing_query
                if asset_batch is not None:
                    wanted = wanted.where(one_of(session, AssetPackage.asset_id, asset_batch))
                    stored = stored.where(one_of(session, FindingRow.asset_id, asset_batch))
                if package_batch is not None:
                    wanted = wanted.where(one_of(session, AssetPackage.package_id, package_batch))
                    stored = stored.where(one_of(session, FindingRow.package_id, package_batch))
                desired.extend(map(tuple, connection.execute(wanted)))
                existing.update(((r[1], r[2], r[3]), tuple(r)) for r in connection.execute(stored))

    threats = threats_for(session, {adv for _, _, adv in desired})
    accepted = accepted_findings(session, desired, now=now)
    assessed: dict[tuple[int, AssetContext, date], tuple[float, str, date]] = {}
    today = now.date()

    def assess(advisory_id: int, ctx: AssetContext, first_seen: date) -> tuple[float, str, date]:
        # Findings of one advisory on assets of one context first seen the same day
        # share score, priority and due date: compute each combination once.
        key = (advisory_id, ctx, first_seen)
        found = assessed.get(key)
        if found is None:
            threat = threats[advisory_id]
            scored = risk.score(threat, ctx)
            due = risk.due_date(scored.priority, first_seen, kev=threat.kev, policy=policy)
            found = assessed[key] = (scored.score, scored.priority, due)
        return found

    new_rows: list[tuple[Any, ...]] = []
    changes: list[dict[str, Any]] = []
    # (asset, package) and (package, advisory) are primary keys, so ``desired`` holds
    # each (asset, package, advisory) once; whatever stays in ``existing`` vanished.
    for key in desired:
        asset_id, package_id, advisory_id = key
        ctx = contexts[asset_id]
        old = existing.pop(key, None)
        wanted_state = "accepted" if key in accepted else "open"
        if old is None:
            score_value, priority, due = assess(advisory_id, ctx, today)
            new_rows.append(
                (
                    asset_id,
                    package_id,
                    advisory_id,
                    wanted_state,
                    now,
                    None,
                    score_value,
                    priority,
                    due,
                )
            )
            continue
        row_id, _a, _p, _adv, state, first_seen, old_score, old_priority, old_due = old
        score_value, priority, due = assess(advisory_id, ctx, first_seen.date())
        change: dict[str, Any] = {}
        if state == "fixed":
            change.update(state=wanted_state, resolved_at=None)
            result.reopened += 1
        elif state in ("open", "accepted") and state != wanted_state:
            # An exception was granted, or expired/was revoked: the finding follows it.
            change.update(state=wanted_state)
            result.reopened += wanted_state == "open"
        if (old_score, old_priority, old_due) != (score_value, priority, due):
            change.update(risk_score=score_value, priority=priority, due_date=due)
            result.rescored += 1
        if change:
            changes.append({"row_id": row_id, **_full_change(old, change)})

    for old in existing.values():
        if old[4] != "fixed":
            changes.append(
                {"row_id": old[0], **_full_change(old, {"state": "fixed", "resolved_at": now})}
            )
            result.resolved += 1

    result.new = insert_rows(
        session,
        FindingRow,
        (
            "asset_id",
            "package_id",
            "advisory_id",
            "state",
            "first_seen",
            "resolved_at",
            "risk_score",
            "priority",
            "due_date",
        ),
        new_rows,
    )
    if changes:
        finding_table = table_of(FindingRow)
        statement = (
            update(finding_table)
            .where(finding_table.c.id == bindparam("row_id"))
            .values(
                state=bindparam("state"),
                resolved_at=bindparam("resolved_at"),
                risk_score=bindparam("risk_score"),
                priority=bindparam("priority"),
                due_date=bindparam("due_date"),
            )
        )
        for change_batch in chunks(changes, 5000):
            session.connection().execute(statement, change_batch)
    return result


def _full_change(old: tuple[Any, ...], change: dict[str, Any]) -> dict[str, Any]:
    """Every updatable column, taking ``change`` over the stored values."""
    _id, _a, _p, _adv, state, _first, score_value, priority, due = old
    merged = {
        "state": state,
        "resolved_at": None,
        "risk_score": score_value,
        "priority": priority,
        "due_date": due,
    }
    merged.update(change)
    return merged
