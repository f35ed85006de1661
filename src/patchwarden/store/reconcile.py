"""One asset per host, whoever reports it: CMDB imports, discovery and SSH collection.

Every source names hosts differently — an agent by ``uname -n``, a CMDB by its CI name,
fqdn, serial and addresses, a network scan by IP and reverse DNS — so each new report is
*matched* to the assets already known before anything is written. Keys are tried in
this order, and the first key that matches names how an asset was found:

1. ``fqdn`` — the fully qualified names are equal (case-insensitive, trailing dot
   ignored; a dotted host name counts as a fully qualified name);
2. ``hostname`` — the short names (first DNS label) are equal, unless both sides
   have fully qualified names and those differ (``web.a.example`` is not
   ``web.b.example``);
3. ``serial`` — equal serial numbers, ignoring placeholders firmware writes
   (``To Be Filled By O.E.M.``, ``Default string``, ``0`` …, see ``PLACEHOLDER_SERIALS``);
4. ``ip`` — a shared address (unspecified, link-local and multicast addresses never
   identify a host).

A report that matches one asset merges into it. A report that matches *two or more*
assets (say its name matches one and its address another) is a conflict: it is not
applied and both sides are listed, for a person to decide. So is a batch in which two
reports claim the same asset, or two new reports share a key.

What each source may change is fixed: a CMDB import fills and overwrites business
context (owner, environment, criticality, exposure, location, time zone; tags are
added), fills identity fields that are empty (fqdn, serial) and adds addresses; it never
touches what an agent or SSH collection reported (OS, kernel, packages, host name).
``source`` only moves up the ranking agent > ssh > cmdb > discovery, and ``status``
from ``discovered`` (seen on the network) to ``unmanaged`` (known, no agent yet).

Every function works inside the caller's transaction and audits each change there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from patchwarden.core.model import Inventory
from patchwarden.store import audit
from patchwarden.store.audit import Actor
from patchwarden.store.bulk import chunks
from patchwarden.store.findings import refresh_findings
from patchwarden.store.groups import recompute_for_assets
from patchwarden.store.inventory import record_inventory
from patchwarden.store.models import AssetRow

MATCH_KEYS = ("fqdn", "hostname", "serial", "ip")

#: Serial numbers firmware and hypervisors fill in when there is none (upper case).
PLACEHOLDER_SERIALS = frozenset(
    {
        "0",
        "00000000",
        "0000000000",
        "0123456789",
        "123456789",
        "CHASSIS SERIAL NUMBER",
        "DEFAULT STRING",
        "INVALID",
        "N/A",
        "NA",
        "NONE",
        "NOT APPLICABLE",
        "NOT SPECIFIED",
        "NULL",
        "SYSTEM SERIAL NUMBER",
        "TO BE FILLED BY O.E.M.",
        "UNKNOWN",
    }
)

# Higher wins: a source never replaces a better-informed one.
SOURCE_RANK = {"discovery": 1, "cmdb": 2, "scan": 3, "ssh": 3, "agent": 4}

# Business-context fields a CMDB record overwrites when it carries a value.
_CONTEXT_FIELDS = ("owner", "environment", "location", "timezone")
# Fields whose change alters risk scores, so findings are rescored.
_RISK_FIELDS = frozenset({"criticality", "exposure"})


class ImportedHost(Protocol):
    """What ``reconcile`` reads from a record (``collect.cmdb.CmdbRecord`` has it)."""

    @property
    def row(self) -> int: ...
    @property
    def hostname(self) -> str: ...
    @property
    def fqdn(self) -> str: ...
    @property
    def ips(self) -> tuple[str, ...]: ...
    @property
    def serial(self) -> str: ...
    @property
    def owner(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def criticality(self) -> int | None: ...
    @property
    def exposure(self) -> str: ...
    @property
    def location(self) -> str: ...
    @property
    def timezone(self) -> str: ...
    @property
    def tags(self) -> tuple[str, ...]: ...
    @property
    def label(self) -> str: ...


class ProbedHost(Protocol):
    """What ``register_discovered`` reads (``collect.discovery.DiscoveredHost`` has it)."""

    @property
    def address(self) -> str: ...
    @property
    def hostname(self) -> str: ...
    @property
    def open_ports(self) -> tuple[int, ...]: ...


# -------------------------------------------------------------------------- matching


@dataclass(frozen=True, slots=True)
class Identity:
    """The keys a host can be recognised by (any may be empty)."""

    hostname: str = ""
    fqdn: str = ""
    serial: str = ""
    ips: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ConflictSide:
    """One asset a report matched, and by which keys."""

    asset_id: int
    hostname: str
    matched_by: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Resolution:
    """Which asset a report belongs to: one (``asset_id``), none, or several (conflict)."""

    asset_id: int | None = None
    matched_by: str = ""
    candidates: tuple[ConflictSide, ...] = ()

    @property
    def conflict(self) -> bool:
        """Whether the report matched more than one asset."""
        return len(self.candidates) > 1


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def names_of(hostname: str, fqdn: str) -> tuple[str, frozenset[str]]:
    """The fully qualified name (``""`` when unknown) and the short names of a host.

    Names that are IP addresses are not names (discovered hosts are often named by
    their address; ``10.0.0.5`` must not become the short name ``10``).
    """
    host = hostname.strip().lower().rstrip(".")
    full = fqdn.strip().lower().rstrip(".")
    host = "" if _is_ip(host) else host
    full = "" if _is_ip(full) else full
    if not full and "." in host:
        full = host
    shorts = frozenset(name.split(".", 1)[0] for name in (host, full) if name)
    return full, shorts


def serial_key(serial: str) -> str:
    """The matching form of a serial number; ``""`` for placeholders."""
    key = " ".join(serial.strip().upper().split())
    return "" if key in PLACEHOLDER_SERIALS else key


def ip_keys(addresses: Iterable[object]) -> list[str]:
    """Canonical addresses that may identify a host (see module doc), in order."""
    keys: list[str] = []
    for item in addresses:
        try:
            address = ipaddress.ip_address(str(item).strip())
        except ValueError:
            continue
        if address.is_unspecified or address.is_link_local or address.is_multicast:
            continue
        if str(address) not in keys:
            keys.append(str(address))
    return keys


class IdentityIndex:
    """Lookup of assets (or any numbered hosts) by every matching key."""

    def __init__(self) -> None:
        self._full: dict[str, set[int]] = {}
        self._short: dict[str, set[int]] = {}
        self._serial: dict[str, set[int]] = {}
        self._ip: dict[str, set[int]] = {}
        self._full_of: dict[int, str] = {}
        self.labels: dict[int, str] = {}

    @classmethod
    def load(cls, session: Session) -> IdentityIndex:
        """Every asset's keys, read once."""
        index = cls()
        rows = session.execute(
            select(
                AssetRow.id,
                AssetRow.hostname,
                AssetRow.fqdn,
                AssetRow.serial,
                AssetRow.ip_addresses,
            )
        )
        for asset_id, hostname, fqdn, serial, ips in rows:
            index.add(asset_id, Identity(hostname, fqdn, serial, tuple(ips or ())))
        return index

    def add(self, ident: int, identity: Identity, label: str = "") -> None:
        """Index ``identity`` under the number ``ident``."""
        full, shorts = names_of(identity.hostname, identity.fqdn)
        self.labels[ident] = label or identity.hostname or identity.fqdn
        if full:
            self._full.setdefault(full, set()).add(ident)
            self._full_of[ident] = full
        for short in shorts:
            self._short.setdefault(short, set()).add(ident)
        serial = serial_key(identity.serial)
        if serial:
            self._serial.setdefault(serial, set()).add(ident)
        for address in ip_keys(identity.ips):
            self._ip.setdefault(address, set()).add(ident)

    def matches(self, identity: Identity) -> dict[int, list[str]]:
        """Every indexed number ``identity`` matches, with the keys, in MATCH_KEYS order."""
        found: dict[int, list[str]] = {}

        def hit(ids: Iterable[int], key: str) -> None:
            for ident in ids:
                keys = found.setdefault(ident, [])
                if key not in keys:
                    keys.append(key)

        full, shorts = names_of(identity.hostname, identity.fqdn)
        if full:
            hit(self._full.get(full, ()), "fqdn")
        for short in sorted(shorts):
            hit(
                (
                    ident
                    for ident in self._short.get(short, ())
                    if not (full and self._full_of.get(ident, full) != full)
                ),
                "hostname",
            )
        serial = serial_key(identity.serial)
        if serial:
            hit(self._serial.get(serial, ()), "serial")
        for address in ip_keys(identity.ips):
            hit(self._ip.get(address, ()), "ip")
        return found

    def resolve(self, identity: Identity) -> Resolution:
        """The one asset ``identity`` belongs to, none, or the conflicting candidates."""
        found = self.matches(identity)
        sides = tuple(
            ConflictSide(ident, self.labels.get(ident, ""), tuple(keys))
            for ident, keys in sorted(
                found.items(), key=lambda item: (MATCH_KEYS.index(item[1][0]), item[0])
            )
        )
        if len(sides) == 1:
            return Resolution(sides[0].asset_id, sides[0].matched_by[0], sides)
        return Resolution(candidates=sides)


def _identity(host: ImportedHost) -> Identity:
    return Identity(host.hostname, host.fqdn, host.serial, tuple(host.ips))


def _upgrade_source(asset: AssetRow, source: str) -> None:
    if SOURCE_RANK.get(source, 0) > SOURCE_RANK.get(asset.source, 0):
        asset.source = source


# ------------------------------------------------------------------------ CMDB import


@dataclass(frozen=True, slots=True)
class CreatedAsset:
    """A record that matched no asset and created one (``asset_id`` None in a dry run)."""

    row: int
    asset_id: int | None
    hostname: str


@dataclass(frozen=True, slots=True)
class MergedAsset:
    """A record merged into an existing asset; ``changed`` names the fields it changed."""

    row: int
    asset_id: int
    hostname: str
    matched_by: str
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class UnmatchedRecord:
    """A record that matched nothing and was not created (``create_missing=False``)."""

    row: int
    record: str


@dataclass(frozen=True, slots=True)
class ImportConflict:
    """A record not applied: it matched several assets, or shares its asset or keys
    with other records (``rows``)."""

    row: int
    record: str
    reason: str
    assets: tuple[ConflictSide, ...] = ()
    rows: tuple[int, ...] = ()


@dataclass(slots=True)
class ReconcileReport:
    """What an import did (or, in a dry run, would do)."""

    source: str
    dry_run: bool
    records: int = 0
    created: list[CreatedAsset] = field(default_factory=list)
    merged: list[MergedAsset] = field(default_factory=list)
    unmatched: list[UnmatchedRecord] = field(default_factory=list)
    conflicts: list[ImportConflict] = field(default_factory=list)
    rescored: list[int] = field(default_factory=list)

    @property
    def updated(self) -> int:
        """Merged records that changed their asset."""
        return sum(1 for merged in self.merged if merged.changed)

    def counts(self) -> dict[str, int]:
        """The summary numbers (also what the ``cmdb.import`` audit event records)."""
        return {
            "records": self.records,
            "created": len(self.created),
            "merged": len(self.merged),
            "updated": self.updated,
            "unmatched": len(self.unmatched),
            "conflicts": len(self.conflicts),
        }

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values (``--json`` output)."""
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            **self.counts(),
            "created_assets": [
                {"row": c.row, "asset_id": c.asset_id, "hostname": c.hostname} for c in self.created
            ],
            "merged_assets": [
                {
                    "row": m.row,
                    "asset_id": m.asset_id,
                    "hostname": m.hostname,
                    "matched_by": m.matched_by,
                    "changed": list(m.changed),
                }
                for m in self.merged
            ],
            "unmatched_records": [{"row": u.row, "record": u.record} for u in self.unmatched],
            "conflict_records": [
                {
                    "row": c.row,
                    "record": c.record,
                    "reason": c.reason,
                    "assets": [
                        {
                            "asset_id": side.asset_id,
                            "hostname": side.hostname,
                            "matched_by": list(side.matched_by),
                        }
                        for side in c.assets
                    ],
                    "rows": list(c.rows),
                }
                for c in self.conflicts
            ],
            "rescored_assets": self.rescored,
        }


def reconcile(
    session: Session,
    records: Sequence[ImportedHost],
    *,
    now: datetime,
    actor: Actor,
    source: str = "cmdb",
    label: str = "",
    dry_run: bool = False,
    create_missing: bool = True,
) -> ReconcileReport:
    """Merge imported records into the assets (see module doc) in the caller's transaction.

    Records matching no asset create one (source ``source``, status ``unmanaged``), or
    are listed as unmatched when ``create_missing`` is false. Conflicts are reported,
    never applied. Each created or changed asset is audited (``asset.create`` /
    ``asset.update``), then one ``cmdb.import`` event summarises the import (``label``,
    e.g. the file name, is its target). Dynamic groups are recomputed for touched
    assets and findings rescored where criticality or exposure changed. With
    ``dry_run`` nothing is written and the report says what would happen.
    """
    report = ReconcileReport(source=source, dry_run=dry_run, records=len(records))
    index = IdentityIndex.load(session)
    resolutions = [index.resolve(_identity(record)) for record in records]

    claims: dict[int, list[int]] = {}
    fresh: list[int] = []
    for position, resolution in enumerate(resolutions):
        if resolution.asset_id is not None:
            claims.setdefault(resolution.asset_id, []).append(position)
        elif not resolution.conflict:
            fresh.append(position)
    pending = IdentityIndex()
    for position in fresh:
        pending.add(position, _identity(records[position]))

    merges: list[int] = []
    creations: list[int] = []
    for position, resolution in enumerate(resolutions):
        record = records[position]
        label_of = record.label
        if resolution.conflict:
            report.conflicts.append(
                ImportConflict(
                    record.row,
                    label_of,
                    f"matches {len(resolution.candidates)} different assets",
                    resolution.candidates,
                )
            )
        elif resolution.asset_id is not None:
            claimants = claims[resolution.asset_id]
            if len(claimants) > 1:
                others = tuple(records[p].row for p in claimants if p != position)
                report.conflicts.append(
                    ImportConflict(
                        record.row,
                        label_of,
                        f"other records also match asset {resolution.asset_id}",
                        resolution.candidates,
                        others,
                    )
                )
            else:
                merges.append(position)
        else:
            twins = sorted(set(pending.matches(_identity(record))) - {position})
            if twins:
                report.conflicts.append(
                    ImportConflict(
                        record.row,
                        label_of,
                        "other records in this import name the same new host",
                        rows=tuple(records[p].row for p in twins),
                    )
                )
            elif create_missing:
                creations.append(position)
            else:
                report.unmatched.append(UnmatchedRecord(record.row, label_of))

    touched: list[int] = []
    rescore: list[int] = []
    assets = _load_assets(session, [resolutions[p].asset_id or 0 for p in merges])
    for position in merges:
        record, resolution = records[position], resolutions[position]
        asset = assets[resolution.asset_id or 0]
        changes = _merge_changes(asset, record, source)
        report.merged.append(
            MergedAsset(record.row, asset.id, asset.hostname, resolution.matched_by, tuple(changes))
        )
        if dry_run or not changes:
            continue
        before = {name: old for name, (old, _new) in changes.items()}
        for name, (_old, new) in changes.items():
            setattr(asset, name, new)
        session.flush()
        audit.record(
            session,
            actor,
            "asset.update",
            now=now,
            target_type="asset",
            target_id=asset.id,
            before=before,
            after={name: new for name, (_old, new) in changes.items()},
        )
        touched.append(asset.id)
        if _RISK_FIELDS & set(changes):
            rescore.append(asset.id)

    for position in creations:
        record = records[position]
        if dry_run:
            report.created.append(CreatedAsset(record.row, None, _new_hostname(record)))
            continue
        asset = _new_asset(record, now=now, source=source)
        session.add(asset)
        session.flush()
        audit.record(
            session,
            actor,
            "asset.create",
            now=now,
            target_type="asset",
            target_id=asset.id,
            after=_asset_fields(asset),
        )
        report.created.append(CreatedAsset(record.row, asset.id, asset.hostname))
        touched.append(asset.id)

    if dry_run:
        return report
    audit.record(
        session,
        actor,
        "cmdb.import",
        now=now,
        target_type="import",
        target_id=label or source,
        after=report.counts(),
    )
    recompute_for_assets(session, touched)
    if rescore:
        refresh_findings(session, now=now, asset_ids=rescore)
    report.rescored = sorted(rescore)
    return report


def _load_assets(session: Session, ids: Sequence[int]) -> dict[int, AssetRow]:
    found: dict[int, AssetRow] = {}
    for batch in chunks(sorted(set(ids))):
        for asset in session.scalars(select(AssetRow).where(AssetRow.id.in_(batch))):
            found[asset.id] = asset
    return found


def _merge_changes(
    asset: AssetRow, record: ImportedHost, source: str
) -> dict[str, tuple[Any, Any]]:
    """Field -> (before, after) for what ``record`` changes on ``asset``."""
    changes: dict[str, tuple[Any, Any]] = {}

    def change(name: str, new: Any) -> None:
        old = getattr(asset, name)
        if new != old:
            changes[name] = (old, new)

    for name in _CONTEXT_FIELDS:
        value = getattr(record, name)
        if value:
            change(name, value)
    if record.criticality is not None:
        change("criticality", record.criticality)
    if record.exposure:
        change("exposure", record.exposure)
    if record.tags:
        change("tags", sorted(set(asset.tags) | set(record.tags)))
    if record.fqdn and not asset.fqdn:
        change("fqdn", record.fqdn)
    if serial_key(record.serial) and not asset.serial:
        change("serial", record.serial)
    if record.ips:
        change("ip_addresses", _merged_ips(asset.ip_addresses, record.ips))
    if asset.status == "discovered":
        change("status", "unmanaged")
    if SOURCE_RANK.get(source, 0) > SOURCE_RANK.get(asset.source, 0):
        change("source", source)
    return changes


def _merged_ips(current: Sequence[Any], new: Iterable[str]) -> list[str]:
    merged = [str(item) for item in current]
    merged.extend(address for address in new if address not in merged)
    return merged


def _new_hostname(record: ImportedHost) -> str:
    if record.hostname:
        return record.hostname
    if record.fqdn:
        return record.fqdn.split(".", 1)[0]
    if record.ips:
        return record.ips[0]
    return record.serial


def _new_asset(record: ImportedHost, *, now: datetime, source: str) -> AssetRow:
    return AssetRow(
        hostname=_new_hostname(record),
        fqdn=record.fqdn,
        ip_addresses=list(record.ips),
        serial=record.serial if serial_key(record.serial) else "",
        owner=record.owner,
        environment=record.environment,
        criticality=record.criticality if record.criticality is not None else 3,
        exposure=record.exposure or "internal",
        location=record.location,
        timezone=record.timezone,
        tags=sorted(set(record.tags)),
        source=source,
        status="unmanaged",
        created_at=now,
    )


def _asset_fields(asset: AssetRow) -> dict[str, Any]:
    return {
        "hostname": asset.hostname,
        "fqdn": asset.fqdn,
        "ip_addresses": list(asset.ip_addresses),
        "serial": asset.serial,
        "owner": asset.owner,
        "environment": asset.environment,
        "criticality": asset.criticality,
        "exposure": asset.exposure,
        "location": asset.location,
        "timezone": asset.timezone,
        "tags": list(asset.tags),
        "source": asset.source,
        "status": asset.status,
    }


# ------------------------------------------------------------------------- discovery


@dataclass(frozen=True, slots=True)
class RegisteredHost:
    """What happened to one discovered host: ``created``, ``updated``, ``unchanged`` or
    ``conflict`` (it matched several assets and was left alone)."""

    address: str
    outcome: str
    asset_id: int | None = None
    hostname: str = ""
    changed: tuple[str, ...] = ()
    conflicts: tuple[ConflictSide, ...] = ()


@dataclass(slots=True)
class RegisterReport:
    """Every discovered host and what registering it did."""

    hosts: list[RegisteredHost] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        """How many hosts had ``outcome``."""
        return sum(1 for host in self.hosts if host.outcome == outcome)

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON values."""
        return {
            **{o: self.count(o) for o in ("created", "updated", "unchanged", "conflict")},
            "hosts": [
                {
                    "address": h.address,
                    "outcome": h.outcome,
                    "asset_id": h.asset_id,
                    "hostname": h.hostname,
                    "changed": list(h.changed),
                    "conflicts": [
                        {
                            "asset_id": s.asset_id,
                            "hostname": s.hostname,
                            "matched_by": list(s.matched_by),
                        }
                        for s in h.conflicts
                    ],
                }
                for h in self.hosts
            ],
        }


def register_discovered(
    session: Session, hosts: Sequence[ProbedHost], *, now: datetime, actor: Actor
) -> RegisterReport:
    """Register discovered hosts as assets (status ``discovered``, source ``discovery``).

    A host matching an existing asset by IP or reverse-DNS name adds its address to
    that asset (and its fqdn when the asset has none) instead of duplicating it; a
    discovery-only asset also gets ``last_seen`` updated. Other assets' ``last_seen``
    stays as their agent or collector set it. Audited per asset plus one
    ``discovery.register`` summary; dynamic groups are recomputed for touched assets.
    """
    report = RegisterReport()
    index = IdentityIndex.load(session)
    touched: list[int] = []
    for host in hosts:
        name = "" if _is_ip(host.hostname) else host.hostname.lower().rstrip(".")
        identity = Identity(
            hostname=name.split(".", 1)[0] if name else "",
            fqdn=name if "." in name else "",
            ips=(host.address,),
        )
        resolution = index.resolve(identity)
        if resolution.conflict:
            report.hosts.append(
                RegisteredHost(host.address, "conflict", conflicts=resolution.candidates)
            )
            continue
        if resolution.asset_id is None:
            asset = AssetRow(
                hostname=identity.hostname or host.address,
                fqdn=identity.fqdn,
                ip_addresses=[host.address],
                source="discovery",
                status="discovered",
                created_at=now,
                last_seen=now,
            )
            session.add(asset)
            session.flush()
            after = {**_asset_fields(asset), "open_ports": list(host.open_ports)}
            audit.record(
                session,
                actor,
                "asset.create",
                now=now,
                target_type="asset",
                target_id=asset.id,
                after=after,
            )
            index.add(asset.id, Identity(asset.hostname, asset.fqdn, "", (host.address,)))
            report.hosts.append(RegisteredHost(host.address, "created", asset.id, asset.hostname))
            touched.append(asset.id)
            continue
        asset = session.get_one(AssetRow, resolution.asset_id)
        changes: dict[str, tuple[Any, Any]] = {}
        ips = _merged_ips(asset.ip_addresses, [host.address])
        if ips != list(asset.ip_addresses):
            changes["ip_addresses"] = (list(asset.ip_addresses), ips)
        if identity.fqdn and not asset.fqdn:
            changes["fqdn"] = (asset.fqdn, identity.fqdn)
        for field_name, (_old, new) in changes.items():
            setattr(asset, field_name, new)
        if asset.source == "discovery":
            asset.last_seen = now
        if changes:
            session.flush()
            audit.record(
                session,
                actor,
                "asset.update",
                now=now,
                target_type="asset",
                target_id=asset.id,
                before={k: old for k, (old, _new) in changes.items()},
                after={k: new for k, (_old, new) in changes.items()},
            )
            index.add(asset.id, Identity(asset.hostname, asset.fqdn, "", tuple(ips)))
            touched.append(asset.id)
        report.hosts.append(
            RegisteredHost(
                host.address,
                "updated" if changes else "unchanged",
                asset.id,
                asset.hostname,
                tuple(changes),
            )
        )
    audit.record(
        session,
        actor,
        "discovery.register",
        now=now,
        target_type="discovery",
        target_id="",
        after={o: report.count(o) for o in ("created", "updated", "unchanged", "conflict")},
    )
    recompute_for_assets(session, touched)
    return report


# ---------------------------------------------------------------------- SSH collection


@dataclass(frozen=True, slots=True)
class CollectedOutcome:
    """Where a collected inventory went: ``asset_id`` (None on conflict), whether the
    asset was created, whether its packages changed, and the key that matched it."""

    asset_id: int | None
    created: bool = False
    changed: bool = False
    matched_by: str = ""
    conflicts: tuple[ConflictSide, ...] = ()


def record_collected(
    session: Session,
    inventory: Inventory,
    *,
    now: datetime,
    actor: Actor,
    address: str = "",
    name: str = "",
    source: str = "ssh",
    index: IdentityIndex | None = None,
) -> CollectedOutcome:
    """Store an inventory collected agentlessly, matched like any other report.

    ``address`` is the IP the collector reached and ``name`` the name it was given
    (used as fqdn when fully qualified). A new host becomes an ``unmanaged`` asset;
    a match that names several assets records nothing and returns the conflict. The
    caller refreshes findings and groups of the returned assets (once per batch) and
    may pass one ``index`` for the whole batch (it is kept up to date here).
    """
    target = "" if _is_ip(name) else name.lower().rstrip(".")
    identity = Identity(
        hostname=inventory.hostname,
        fqdn=target if "." in target else "",
        ips=(address,) if address else (),
    )
    index = index if index is not None else IdentityIndex.load(session)
    resolution = index.resolve(identity)
    if resolution.conflict:
        return CollectedOutcome(None, conflicts=resolution.candidates)
    created = resolution.asset_id is None
    if resolution.asset_id is None:
        asset = AssetRow(
            hostname=inventory.hostname,
            fqdn=identity.fqdn,
            ip_addresses=list(identity.ips),
            source=source,
            status="unmanaged",
            created_at=now,
        )
        session.add(asset)
        session.flush()
        audit.record(
            session,
            actor,
            "asset.create",
            now=now,
            target_type="asset",
            target_id=asset.id,
            after=_asset_fields(asset),
        )
    else:
        asset = session.get_one(AssetRow, resolution.asset_id)
    asset_id, changed = record_inventory(session, inventory, now=now, asset_id=asset.id)
    asset.ip_addresses = _merged_ips(asset.ip_addresses, identity.ips)
    asset.fqdn = asset.fqdn or identity.fqdn
    if asset.status == "discovered":
        asset.status = "unmanaged"
    _upgrade_source(asset, source)
    session.flush()
    index.add(
        asset.id, Identity(asset.hostname, asset.fqdn, asset.serial, tuple(asset.ip_addresses))
    )
    audit.record(
        session,
        actor,
        f"{source}.inventory",
        now=now,
        target_type="asset",
        target_id=asset_id,
        after={
            "packages": len(inventory.packages),
            "hash": inventory.content_hash(),
            "address": address,
            "changed": changed,
        },
    )
    return CollectedOutcome(asset_id, created, changed, resolution.matched_by)
