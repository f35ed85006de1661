"""NVD CVE API 2.0 response pages to per-CVE CVSS scores.

Every vector under ``cve.metrics.cvssMetricV40 / V31 / V30 / V2[].cvssData`` is scored
with ``core.cvss``. A score's ``source`` is ``nvd`` when NVD marks the metric
``Primary`` and ``nvd-secondary:<submitter>`` (e.g. ``nvd-secondary:psirt@us.ibm.com``)
otherwise, so ``core.cvss.best_score`` prefers NVD's primary assessment. Other metric
kinds (``ssvcV203`` …) are ignored. NVD writes timestamps without a zone; they are UTC.
"""

from __future__ import annotations

from collections.abc import Mapping

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

_EXPECTED = "an NVD CVE API 2.0 page ({resultsPerPage, startIndex, vulnerabilities[].cve})"
_METRIC_KEYS = ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30", "cvssMetricV2")
_PAGE_META = ("resultsPerPage", "startIndex", "totalResults", "format", "version", "timestamp")


def parse_nvd(data: bytes, source: str) -> ParsedFeed:
    """Parse one NVD CVE API 2.0 page; ``meta`` keeps the page counters."""
    return nvd_feed(load_json(data, source, expected=_EXPECTED), source)


def nvd_feed(decoded: object, source: str) -> ParsedFeed:
    """Like ``parse_nvd`` for already decoded JSON."""
    where = Where(source)
    page = as_object(decoded, where, None, expected=_EXPECTED)
    if "vulnerabilities" not in page:
        raise where.error(
            f"missing 'vulnerabilities'; expected {_EXPECTED}",
            field="vulnerabilities",
            hint="is this really an NVD API 2.0 response?",
        )
    items: list[CveCvss] = []
    seen: set[str] = set()
    for index, raw in enumerate(get_list(page, "vulnerabilities", where)):
        here = Where(source, f"index {index}")
        wrapper = as_object(raw, here, f"vulnerabilities[{index}]", expected="an object with 'cve'")
        cve = get_object(wrapper, "cve", here, path=f"vulnerabilities[{index}].cve")
        item = _cve(cve, here)
        if item.cve_id in seen:
            raise here.at(item.cve_id).error("duplicate CVE in the page", field="id")
        seen.add(item.cve_id)
        items.append(item)
    meta = {key: str(page[key]) for key in _PAGE_META if page.get(key) is not None}
    return ParsedFeed(kind="nvd", source=source, cvss=items, meta=meta)


def is_nvd_page(decoded: object) -> bool:
    """Whether decoded JSON looks like an NVD API 2.0 page."""
    return (
        isinstance(decoded, dict)
        and "vulnerabilities" in decoded
        and ("resultsPerPage" in decoded or decoded.get("format") == "NVD_CVE")
    )


def _cve(cve: Mapping[str, object], where: Where) -> CveCvss:
    cve_id = get_str(cve, "id", where, required=True)
    where = where.at(cve_id)
    scores: list[CvssScore] = []
    metrics = get_object(cve, "metrics", where)
    for key in _METRIC_KEYS:
        for index, raw in enumerate(get_list(metrics, key, where, path=f"metrics.{key}")):
            path = f"metrics.{key}[{index}]"
            metric = as_object(raw, where, path, expected="a metric object")
            data = get_object(metric, "cvssData", where, path=f"{path}.cvssData")
            vector = get_str(
                data, "vectorString", where, path=f"{path}.cvssData.vectorString", required=True
            )
            kind = get_str(metric, "type", where, path=f"{path}.type")
            submitter = get_str(metric, "source", where, path=f"{path}.source")
            label = "nvd" if kind == "Primary" else f"nvd-secondary:{submitter}"
            try:
                scores.append(score_vector(vector, label))
            except ValidationFailed as exc:
                raise where.error(
                    exc.message, field=f"{path}.cvssData.vectorString", hint=exc.hint
                ) from exc
    descriptions = get_list(cve, "descriptions", where)
    return CveCvss(
        cve_id=cve_id,
        scores=tuple(scores),
        description=english_description(descriptions, where),
        published=iso_timestamp(cve["published"], where, "published")
        if cve.get("published")
        else None,
        modified=iso_timestamp(cve["lastModified"], where, "lastModified")
        if cve.get("lastModified")
        else None,
    )
