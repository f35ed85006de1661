"""CVE JSON 5 records (the CVE Program's cvelistV5, CISA vulnrichment) to CVSS scores.

Vectors come from ``containers.cna.metrics[]`` (source ``cna``) and from each
``containers.adp[].metrics[]`` (source ``adp:<providerMetadata.shortName>``, e.g.
``adp:CISA-ADP``), under ``cvssV4_0`` / ``cvssV3_1`` / ``cvssV3_0`` / ``cvssV2_0``. Other
metric entries (CISA's SSVC ``other`` objects, ``format``/``scenarios``) are ignored.
Rejected records are kept with no scores and their rejection reason as description, so
an import can retire their intel. Timestamps without a zone are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from patchwarden.core.cvss import score_vector
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import CvssScore
from patchwarden.feeds.formats._common import (
    Where,
    as_object,
    english_description,
    get_list,
    get_object,
    get_str,
    iso_timestamp,
    load_json,
)
from patchwarden.feeds.parsed import CveCvss, ParsedFeed

_EXPECTED = "a CVE JSON 5 record ({dataType: CVE_RECORD, cveMetadata, containers})"
_CVSS_KEYS = ("cvssV4_0", "cvssV3_1", "cvssV3_0", "cvssV2_0")


def parse_cve5(data: bytes, source: str) -> ParsedFeed:
    """Parse one CVE JSON 5 record (a JSON list of records is accepted too)."""
    return cve5_feed(load_json(data, source, expected=_EXPECTED), source)


def cve5_feed(decoded: object, source: str) -> ParsedFeed:
    """Like ``parse_cve5`` for already decoded JSON."""
    if isinstance(decoded, list):
        items = [
            cve5_record(record, Where(source, f"index {index}"))
            for index, record in enumerate(decoded)
        ]
    else:
        items = [cve5_record(decoded, Where(source))]
    seen: set[str] = set()
    for item in items:
        if item.cve_id in seen:
            raise Where(source, item.cve_id).error(
                "duplicate CVE record", field="cveMetadata.cveId"
            )
        seen.add(item.cve_id)
    return ParsedFeed(kind="cve5", source=source, cvss=items)


def is_cve5(decoded: object) -> bool:
    """Whether decoded JSON looks like a CVE JSON 5 record."""
    return isinstance(decoded, dict) and (
        "cveMetadata" in decoded or decoded.get("dataType") == "CVE_RECORD"
    )


def cve5_record(record: object, where: Where) -> CveCvss:
    """Scores, description and dates of one decoded CVE JSON 5 record."""
    obj = as_object(record, where, None, expected=_EXPECTED)
    if "cveMetadata" not in obj:
        raise where.error(f"missing 'cveMetadata'; expected {_EXPECTED}", field="cveMetadata")
    metadata = get_object(obj, "cveMetadata", where)
    cve_id = get_str(metadata, "cveId", where, path="cveMetadata.cveId", required=True)
    where = where.at(cve_id) if where.record is None else where.at(f"{cve_id} ({where.record})")
    containers = get_object(obj, "containers", where)
    cna = get_object(containers, "cna", where, path="containers.cna")

    scores = _scores(cna, "cna", where, "containers.cna")
    for index, raw in enumerate(get_list(containers, "adp", where, path="containers.adp")):
        path = f"containers.adp[{index}]"
        adp = as_object(raw, where, path, expected="an ADP container")
        provider = get_object(adp, "providerMetadata", where, path=f"{path}.providerMetadata")
        name = get_str(provider, "shortName", where, path=f"{path}.providerMetadata.shortName")
        name = name or get_str(provider, "orgId", where, path=f"{path}.providerMetadata.orgId")
        scores.extend(_scores(adp, f"adp:{name}", where, path))

    texts = get_list(cna, "descriptions", where, path="containers.cna.descriptions")
    if not texts:
        texts = get_list(cna, "rejectedReasons", where, path="containers.cna.rejectedReasons")
    return CveCvss(
        cve_id=cve_id,
        scores=tuple(scores),
        description=english_description(texts, where),
        published=_when(metadata, "datePublished", where),
        modified=_when(metadata, "dateUpdated", where),
    )


def _when(metadata: Mapping[str, object], key: str, where: Where) -> datetime | None:
    value = metadata.get(key)
    return iso_timestamp(value, where, f"cveMetadata.{key}") if value else None


def _scores(
    container: Mapping[str, object], source: str, where: Where, path: str
) -> list[CvssScore]:
    out: list[CvssScore] = []
    for index, raw in enumerate(get_list(container, "metrics", where, path=f"{path}.metrics")):
        here = f"{path}.metrics[{index}]"
        metric = as_object(raw, where, here, expected="a metric object")
        for key in _CVSS_KEYS:
            if key not in metric:
                continue
            data = get_object(metric, key, where, path=f"{here}.{key}")
            field = f"{here}.{key}.vectorString"
            vector = get_str(data, "vectorString", where, path=field, required=True)
            try:
                out.append(score_vector(vector, source))
            except ValidationFailed as exc:
                raise where.error(exc.message, field=field, hint=exc.hint) from exc
    return out
