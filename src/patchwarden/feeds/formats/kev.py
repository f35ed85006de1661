"""CISA Known Exploited Vulnerabilities catalog JSON to ``KevEntry`` values.

``knownRansomwareCampaignUse`` is ``Known`` (True) or ``Unknown`` (False); any other
value is an error rather than a guess. The declared ``count`` is recorded in ``meta``
but not enforced: published slices of the catalog keep the full catalog's count.
"""

from __future__ import annotations

from patchwarden.core.model import KevEntry
from patchwarden.feeds.formats._common import (
    Where,
    as_object,
    get_list,
    get_str,
    iso_date,
    load_json,
)
from patchwarden.feeds.parsed import ParsedFeed

_EXPECTED = "the CISA KEV catalog ({catalogVersion, dateReleased, vulnerabilities[]})"
_RANSOMWARE = {"Known": True, "Unknown": False}
_CATALOG_META = ("catalogVersion", "dateReleased", "count", "title")


def parse_kev(data: bytes, source: str) -> ParsedFeed:
    """Parse the KEV catalog; ``meta`` keeps catalogVersion, dateReleased and count."""
    return kev_feed(load_json(data, source, expected=_EXPECTED), source)


def is_kev(decoded: object) -> bool:
    """Whether decoded JSON looks like the KEV catalog."""
    return (
        isinstance(decoded, dict)
        and "vulnerabilities" in decoded
        and ("catalogVersion" in decoded or "dateReleased" in decoded)
    )


def kev_feed(decoded: object, source: str) -> ParsedFeed:
    """Like ``parse_kev`` for already decoded JSON."""
    where = Where(source)
    catalog = as_object(decoded, where, None, expected=_EXPECTED)
    if not is_kev(catalog):
        raise where.error(
            f"expected {_EXPECTED}, found an object with keys {sorted(catalog)[:6]}",
            hint="is this really the KEV catalog JSON (not the CSV or a single entry)?",
        )
    entries: list[KevEntry] = []
    seen: set[str] = set()
    for index, raw in enumerate(get_list(catalog, "vulnerabilities", where)):
        here = Where(source, f"index {index}")
        item = as_object(raw, here, f"vulnerabilities[{index}]", expected="a KEV entry object")
        cve_id = get_str(item, "cveID", here, required=True).strip()
        here = here.at(cve_id)
        if cve_id in seen:
            raise here.error("duplicate cveID in the catalog", field="cveID")
        seen.add(cve_id)
        ransomware_text = get_str(item, "knownRansomwareCampaignUse", here) or "Unknown"
        ransomware = _RANSOMWARE.get(ransomware_text)
        if ransomware is None:
            raise here.error(
                f"unexpected value {ransomware_text!r}",
                field="knownRansomwareCampaignUse",
                hint="CISA uses 'Known' or 'Unknown'",
            )
        entries.append(
            KevEntry(
                cve_id=cve_id,
                date_added=iso_date(item.get("dateAdded"), here, "dateAdded"),
                due_date=iso_date(item.get("dueDate"), here, "dueDate"),
                ransomware=ransomware,
                vendor=get_str(item, "vendorProject", here),
                product=get_str(item, "product", here),
                name=get_str(item, "vulnerabilityName", here),
                required_action=get_str(item, "requiredAction", here),
            )
        )
    meta = {key: str(catalog[key]) for key in _CATALOG_META if catalog.get(key) is not None}
    return ParsedFeed(kind="kev", source=source, kev=entries, meta=meta)
