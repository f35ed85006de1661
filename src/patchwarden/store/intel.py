"""Per-CVE intelligence: CVSS (NVD, CVE 5), KEV and EPSS, each updating its own columns."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date
from typing import Any

from sqlalchemy import Text, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from patchwarden.core.model import CvssScore, EpssScore, KevEntry, VulnIntel
from patchwarden.store.bulk import chunks, one_of
from patchwarden.store.models import VulnIntelRow, table_of


def _upsert(
    session: Session, rows: Sequence[dict[str, Any]], update_columns: Sequence[str]
) -> None:
    """INSERT … ON CONFLICT (cve_id) DO UPDATE the given columns, in batches."""
    if not rows:
        return
    dialect = session.connection().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    table = table_of(VulnIntelRow)
    for batch in chunks(rows, 2000):
        statement = insert_fn(table)
        statement = statement.on_conflict_do_update(
            index_elements=["cve_id"],
            set_={column: statement.excluded[column] for column in update_columns},
        )
        session.execute(statement, batch)


def _defaults(cve_id: str) -> dict[str, Any]:
    return {
        "cve_id": cve_id,
        "description": "",
        "cvss": [],
        "cvss_max": None,
        "epss_score": None,
        "epss_percentile": None,
        "epss_date": None,
        "epss_model": "",
        "kev_date_added": None,
        "kev_due_date": None,
        "kev_ransomware": False,
        "kev_vendor": "",
        "kev_product": "",
        "kev_name": "",
        "kev_required_action": "",
    }


def _score_to_json(score: CvssScore) -> list[Any]:
    return [score.version, score.vector, score.base_score, score.severity, score.source]


def _score_from_json(item: Sequence[Any]) -> CvssScore:
    version, vector, base, severity, source = item
    return CvssScore(version, vector, float(base), severity, source)


def upsert_cvss(session: Session, entries: Sequence[tuple[str, Sequence[CvssScore], str]]) -> int:
    """Merge CVSS vectors given as (cve_id, scores, description).

    A source's new vectors replace that source's old ones; other sources' stay.
    """
    if not entries:
        return 0
    merged: dict[str, tuple[Sequence[CvssScore], str]] = {}
    for cve_id, new_scores, new_description in entries:
        merged[cve_id] = (new_scores, new_description)
    stored: dict[str, tuple[list[Any], str]] = {}
    for batch in chunks(sorted(merged)):
        for cve_id, cvss, description in session.execute(
            select(VulnIntelRow.cve_id, VulnIntelRow.cvss, VulnIntelRow.description).where(
                one_of(session, VulnIntelRow.cve_id, batch)
            )
        ):
            stored[cve_id] = (cvss, description)
    rows: list[dict[str, Any]] = []
    for cve_id, (new_scores, new_description) in merged.items():
        old_scores, old_description = stored.get(cve_id, ([], ""))
        new_sources = {s.source for s in new_scores}
        scores = [s for s in old_scores if s[4] not in new_sources]
        scores.extend(_score_to_json(s) for s in new_scores)
        row = _defaults(cve_id)
        row["cvss"] = scores
        row["cvss_max"] = max((float(s[2]) for s in scores), default=None)
        row["description"] = new_description or old_description
        rows.append(row)
    _upsert(session, rows, ("cvss", "cvss_max", "description"))
    return len(rows)


def replace_kev(session: Session, entries: Sequence[KevEntry]) -> int:
    """Make the KEV columns equal the given catalog (entries absent from it are cleared)."""
    session.execute(
        update(VulnIntelRow)
        .where(VulnIntelRow.kev_date_added.is_not(None))
        .values(
            kev_date_added=None,
            kev_due_date=None,
            kev_ransomware=False,
            kev_vendor="",
            kev_product="",
            kev_name="",
            kev_required_action="",
        )
    )
    rows = []
    for entry in entries:
        row = _defaults(entry.cve_id)
        row.update(
            kev_date_added=entry.date_added,
            kev_due_date=entry.due_date,
            kev_ransomware=entry.ransomware,
            kev_vendor=entry.vendor,
            kev_product=entry.product,
            kev_name=entry.name,
            kev_required_action=entry.required_action,
        )
        rows.append(row)
    _upsert(
        session,
        rows,
        (
            "kev_date_added",
            "kev_due_date",
            "kev_ransomware",
            "kev_vendor",
            "kev_product",
            "kev_name",
            "kev_required_action",
        ),
    )
    return len(rows)


def replace_epss(session: Session, scores: Sequence[tuple[str, EpssScore]]) -> int:
    """Make the EPSS columns equal the given file (EPSS rescales every CVE daily)."""
    session.execute(
        update(VulnIntelRow)
        .where(VulnIntelRow.epss_score.is_not(None))
        .values(epss_score=None, epss_percentile=None, epss_date=None, epss_model="")
    )
    rows = []
    for cve_id, score in scores:
        row = _defaults(cve_id)
        row.update(
            epss_score=score.score,
            epss_percentile=score.percentile,
            epss_date=score.score_date,
            epss_model=score.model_version,
        )
        rows.append(row)
    _upsert(session, rows, ("epss_score", "epss_percentile", "epss_date", "epss_model"))
    return len(rows)


def _to_intel(row: VulnIntelRow) -> VulnIntel:
    epss = None
    if row.epss_score is not None and row.epss_date is not None:
        epss = EpssScore(
            score=row.epss_score,
            percentile=row.epss_percentile or 0.0,
            score_date=row.epss_date,
            model_version=row.epss_model,
        )
    kev = None
    if row.kev_date_added is not None and row.kev_due_date is not None:
        kev = KevEntry(
            cve_id=row.cve_id,
            date_added=row.kev_date_added,
            due_date=row.kev_due_date,
            ransomware=row.kev_ransomware,
            vendor=row.kev_vendor,
            product=row.kev_product,
            name=row.kev_name,
            required_action=row.kev_required_action,
        )
    return VulnIntel(
        cve_id=row.cve_id,
        cvss=tuple(_score_from_json(s) for s in row.cvss),
        epss=epss,
        kev=kev,
        description=row.description,
    )


def get_intel(session: Session, cve_ids: Iterable[str]) -> dict[str, VulnIntel]:
    """Intel for the given CVEs (absent CVEs are simply missing from the result)."""
    found: dict[str, VulnIntel] = {}
    for batch in chunks(sorted(set(cve_ids))):
        for row in session.scalars(
            select(VulnIntelRow).where(one_of(session, VulnIntelRow.cve_id, batch))
        ):
            found[row.cve_id] = _to_intel(row)
    return found


def intel_counts(session: Session) -> dict[str, Any]:
    """How many CVEs have CVSS, EPSS and KEV data, and the newest EPSS date."""
    cvss = session.scalar(
        select(func.count()).select_from(VulnIntelRow).where(VulnIntelRow.cvss_max.is_not(None))
    )
    epss = session.scalar(
        select(func.count()).select_from(VulnIntelRow).where(VulnIntelRow.epss_score.is_not(None))
    )
    kev = session.scalar(
        select(func.count())
        .select_from(VulnIntelRow)
        .where(VulnIntelRow.kev_date_added.is_not(None))
    )
    epss_date: date | None = session.scalar(select(func.max(VulnIntelRow.epss_date)))
    return {"cvss": cvss or 0, "epss": epss or 0, "kev": kev or 0, "epss_date": epss_date}


def cvss_counts_by_origin(session: Session) -> dict[str, int]:
    """CVEs holding a CVSS score from NVD (``nvd``) and from CVE JSON 5 (``cve5``).

    Score sources are ``nvd``/``nvd-secondary:…`` and ``cna``/``adp:…``; they are
    matched in the stored JSON text, which reads the same on SQLite and PostgreSQL.
    """
    text = cast(VulnIntelRow.cvss, Text)
    patterns = {"nvd": ['%"nvd%'], "cve5": ['%"cna"%', '%"adp:%']}
    return {
        origin: session.scalar(
            select(func.count())
            .select_from(VulnIntelRow)
            .where(or_(*(text.like(pattern) for pattern in likes)))
        )
        or 0
        for origin, likes in patterns.items()
    }
