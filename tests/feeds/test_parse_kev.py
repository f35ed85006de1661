"""CISA KEV catalog parsing."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from patchwarden.core.errors import FeedError
from patchwarden.core.model import KevEntry
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.formats.kev import parse_kev
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 5, 1, tzinfo=UTC)
ACTION = (
    "Apply mitigations per vendor instructions, follow applicable BOD 22-01 guidance for "
    "cloud services, or discontinue use of the product if mitigations are unavailable."
)


def test_full_catalog() -> None:
    feed = parse_path(data_file("cisa-kev/known_exploited_vulnerabilities.json"), now=NOW)
    assert feed.kind == "kev"
    assert len(feed.kev) == 1404
    assert feed.meta == {
        "catalogVersion": "2025.08.25",
        "dateReleased": "2025-08-25T17:04:19.9796Z",
        "count": "1404",
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
    }
    assert sum(entry.ransomware for entry in feed.kev) == 293
    assert feed.kev[0] == KevEntry(
        cve_id="CVE-2025-48384",
        date_added=date(2025, 8, 25),
        due_date=date(2025, 9, 15),
        ransomware=False,
        vendor="Git",
        product="Git",
        name="Git Link Following Vulnerability",
        required_action=ACTION,
    )
    assert min(entry.date_added for entry in feed.kev) == date(2021, 11, 3)
    # The catalog's first entries kept the earlier emergency directives' due dates, which
    # precede their date of addition: kept as published, not "corrected".
    early = [entry for entry in feed.kev if entry.due_date < entry.date_added]
    assert len(early) == 15
    assert {entry.date_added for entry in early} == {date(2021, 11, 3)}


def test_catalog_slice() -> None:
    path = data_file("vunnel-fixtures/tests/unit/providers/kev/test-fixtures/valid-catalog-1.json")
    feed = parse_kev(path.read_bytes(), str(path))
    # A slice keeps the full catalog's declared count; it is recorded, not enforced.
    assert feed.meta["count"] == "1273"
    assert [entry.cve_id for entry in feed.kev] == [
        "CVE-2025-0108",
        "CVE-2024-53704",
        "CVE-2024-57727",
    ]
    assert feed.kev[0].vendor == "Palo Alto Networks"


def test_single_entry_is_not_a_catalog() -> None:
    path = data_file(
        "vunnel-fixtures/tests/unit/providers/kev/test-fixtures/single-entry/example1.json"
    )
    with pytest.raises(FeedError, match="expected the CISA KEV catalog"):
        parse_kev(path.read_bytes(), str(path))


@pytest.mark.parametrize(
    ("name", "record", "field", "message"),
    [
        ("kev-bad-ransomware.json", "CVE-2024-0002", "knownRansomwareCampaignUse", "'Maybe'"),
        ("kev-bad-date.json", "CVE-2024-0001", "dueDate", "invalid date '22.05.2025'"),
    ],
)
def test_malformed_entries(name: str, record: str, field: str, message: str) -> None:
    path = FIXTURES / name
    with pytest.raises(FeedError) as caught:
        parse_path(path, now=NOW)
    assert message in caught.value.message
    assert (caught.value.source, caught.value.record, caught.value.field) == (
        str(path),
        record,
        field,
    )
    assert caught.value.hint


def test_duplicate_cve() -> None:
    entry = b'{"cveID": "CVE-2024-0001", "dateAdded": "2025-01-01", "dueDate": "2025-01-22"}'
    data = b'{"catalogVersion": "x", "vulnerabilities": [' + entry + b"," + entry + b"]}"
    with pytest.raises(FeedError, match="duplicate cveID"):
        parse_kev(data, "kev.json")


def test_truncated_catalog(tmp_path: Path) -> None:
    data = data_file("cisa-kev/known_exploited_vulnerabilities.json").read_bytes()
    copy = tmp_path / "kev.json"
    copy.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeedError, match="not valid JSON") as caught:
        parse_path(copy, kind="kev", now=NOW)
    assert caught.value.source == str(copy)
