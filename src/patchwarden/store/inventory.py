"""Assets and their installed packages."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from operator import attrgetter
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from patchwarden.core.errors import NotFound
from patchwarden.core.model import AssetContext, InstalledPackage, Inventory
from patchwarden.store.bulk import chunks, insert_rows, one_of
from patchwarden.store.models import AssetPackage, AssetRow, PackageRow, table_of

PackageIdentity = tuple[str, str, str, str, str, str]


_IDENTITY = attrgetter("ecosystem", "name", "version", "arch", "source_name", "source_version")


def identity(package: InstalledPackage) -> PackageIdentity:
    """The unique key of a package row."""
    key: PackageIdentity = _IDENTITY(package)
    return key


class PackageIds:
    """A cache of package identity → row id, shared across many inventories.

    Loading a fleet calls ``ensure`` once per host; rows already seen are never queried
    again, so the cost is one query per batch of packages not seen before.
    """

    _NAMES = ("ecosystem", "name", "version", "arch", "source_name", "source_version")
    _COLUMNS = tuple(getattr(PackageRow, name) for name in _NAMES)

    def __init__(self) -> None:
        self._ids: dict[PackageIdentity, int] = {}

    def _load(self, session: Session, keys: Iterable[PackageIdentity]) -> None:
        """Read the row ids of these identities (those that exist).

        Filtering on ecosystem, name and version lets the unique index answer; the
        few other combinations of those values the query returns are kept as well.
        """
        for batch in chunks(sorted(keys), 500):
            for row in session.execute(
                select(PackageRow.id, *self._COLUMNS).where(
                    one_of(session, PackageRow.ecosystem, sorted({key[0] for key in batch})),
                    one_of(session, PackageRow.name, sorted({key[1] for key in batch})),
                    one_of(session, PackageRow.version, sorted({key[2] for key in batch})),
                )
            ):
                self._ids[tuple(row[1:])] = row[0]

    def held_by(self, session: Session, asset_id: int) -> set[int]:
        """Row ids of the packages ``asset_id`` holds now, remembering their identities.

        An inventory update mostly repeats the previous one: with these known, only the
        packages that changed are looked up.
        """
        held: set[int] = set()
        for row in session.execute(
            select(PackageRow.id, *self._COLUMNS)
            .join(AssetPackage, AssetPackage.package_id == PackageRow.id)
            .where(AssetPackage.asset_id == asset_id)
        ):
            self._ids[tuple(row[1:])] = row[0]
            held.add(row[0])
        return held

    def ensure(self, session: Session, packages: Iterable[InstalledPackage]) -> list[int]:
        """Row ids for ``packages`` (in order), creating the missing rows."""
        wanted: list[PackageIdentity] = list(map(_IDENTITY, packages))
        missing = {key for key in wanted if key not in self._ids}
        if missing:
            self._load(session, missing)
            still = sorted(key for key in missing if key not in self._ids)
            if still:
                # Another transaction may insert the same package meanwhile (two hosts
                # uploading the same update): skip those rows, then read their ids.
                statement = _insert_ignoring_conflicts(session)
                for key_batch in chunks(still, 500):
                    rows = session.execute(
                        statement.returning(PackageRow.id, *self._COLUMNS),
                        [dict(zip(self._NAMES, key, strict=True)) for key in key_batch],
                    )
                    for row in rows:
                        self._ids[tuple(row[1:])] = row[0]
                self._load(session, [key for key in still if key not in self._ids])
        lost = [key for key in missing if key not in self._ids]
        if lost:
            raise RuntimeError(f"package rows vanished while recording an inventory: {lost[:3]}")
        return [self._ids[key] for key in wanted]


def _insert_ignoring_conflicts(session: Session) -> Any:
    """``INSERT … ON CONFLICT DO NOTHING`` into package, in the session's dialect."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql_insert(PackageRow).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite_insert(PackageRow).on_conflict_do_nothing()
    return table_of(PackageRow).insert()


def find_asset(session: Session, *, hostname: str) -> AssetRow | None:
    """The asset with this hostname or fqdn, if any (the oldest when several)."""
    return session.scalars(
        select(AssetRow)
        .where((AssetRow.hostname == hostname) | (AssetRow.fqdn == hostname))
        .order_by(AssetRow.id)
        .limit(1)
    ).first()


def get_asset(session: Session, asset_id: int) -> AssetRow:
    """The asset with this id, or NotFound."""
    row = session.get(AssetRow, asset_id)
    if row is None:
        raise NotFound(f"no asset with id {asset_id}")
    return row


def asset_context(row: AssetRow) -> AssetContext:
    """The risk context of an asset row."""
    exposure: Any = row.exposure if row.exposure in ("internet", "internal") else "internal"
    data_class: Any = (
        row.data_class
        if row.data_class in ("public", "internal", "confidential", "restricted")
        else "internal"
    )
    return AssetContext(criticality=row.criticality, exposure=exposure, data_class=data_class)


@dataclass(frozen=True)
class StoredInventory:
    """What storing an inventory changed: the asset, and which package rows it gained
    and lost (both empty when the package set is unchanged)."""

    asset_id: int
    added: tuple[int, ...] = ()
    removed: tuple[int, ...] = ()
    changed: bool = False


def record_inventory(session: Session, inventory: Inventory, **options: Any) -> tuple[int, bool]:
    """``store_inventory`` (same options), returning ``(asset_id, changed)`` only."""
    stored = store_inventory(session, inventory, **options)
    return stored.asset_id, stored.changed


def store_inventory(
    session: Session,
    inventory: Inventory,
    *,
    now: datetime,
    asset_id: int | None = None,
    criticality: int | None = None,
    exposure: str | None = None,
    data_class: str | None = None,
    source: str = "scan",
    package_ids: PackageIds | None = None,
    content_hash: str | None = None,
) -> StoredInventory:
    """Store an inventory for its asset (created when new, found by hostname).

    ``criticality``, ``exposure`` and ``data_class`` overwrite the stored context when
    given; otherwise the asset keeps its own (defaults 3, internal, internal). An
    unchanged inventory (same content hash; pass ``content_hash`` when already known)
    touches only last_seen and host facts. The result names the package rows added and
    removed, which is all a findings refresh of this asset has to look at.
    """
    if asset_id is not None:
        asset = get_asset(session, asset_id)
    else:
        found = find_asset(session, hostname=inventory.hostname)
        if found is None:
            asset = AssetRow(hostname=inventory.hostname, created_at=now, source=source)
            session.add(asset)
        else:
            asset = found
    if criticality is not None:
        asset.criticality = criticality
    if exposure is not None:
        asset.exposure = exposure
    if data_class is not None:
        asset.data_class = data_class
    os_info = inventory.os
    if os_info is not None:
        asset.os_id = os_info.id
        asset.os_version = os_info.version_id
        asset.os_name = os_info.pretty_name or os_info.name
        asset.os_ecosystem = os_info.ecosystem
        asset.os_family = os_info.family
    asset.kernel = inventory.kernel or asset.kernel
    asset.arch = inventory.arch or asset.arch
    asset.reboot_required = inventory.reboot_required
    asset.last_seen = now
    asset.last_inventory = now
    session.flush()

    digest = content_hash or inventory.content_hash()
    if asset.inventory_hash == digest:
        return StoredInventory(asset.id)
    asset.inventory_hash = digest

    cache = package_ids or PackageIds()
    current = cache.held_by(session, asset.id)
    wanted = set(cache.ensure(session, inventory.packages))
    removed = sorted(current - wanted)
    added = sorted(wanted - current)
    for batch in chunks(removed):
        session.execute(
            delete(AssetPackage).where(
                AssetPackage.asset_id == asset.id, one_of(session, AssetPackage.package_id, batch)
            )
        )
    insert_rows(
        session, AssetPackage, ("asset_id", "package_id"), ((asset.id, pid) for pid in added)
    )
    return StoredInventory(asset.id, tuple(added), tuple(removed), changed=True)


def asset_packages(session: Session, asset_id: int) -> list[InstalledPackage]:
    """The packages stored for an asset."""
    rows = session.execute(
        select(
            PackageRow.name,
            PackageRow.version,
            PackageRow.ecosystem,
            PackageRow.arch,
            PackageRow.source_name,
            PackageRow.source_version,
        )
        .join(AssetPackage, AssetPackage.package_id == PackageRow.id)
        .where(AssetPackage.asset_id == asset_id)
        .order_by(PackageRow.name)
    )
    return [InstalledPackage(*row) for row in rows]
