"""NVD CVE API 2.0 pages: every vector scored, primary vs secondary sources, page meta."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchwarden.core.cvss import best_score
from patchwarden.core.errors import FeedError
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.formats.nvd import parse_nvd
from patchwarden.feeds.parsed import CveCvss, ParsedFeed
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 5, 1, tzinfo=UTC)


def _by_id(feed: ParsedFeed) -> dict[str, CveCvss]:
    return {item.cve_id: item for item in feed.cvss}


def _summary(item: CveCvss) -> list[tuple[str, float, str]]:
    return [(s.version, s.base_score, s.source) for s in item.scores]


def test_full_page() -> None:
    path = data_file("vunnel-fixtures/tests/unit/providers/nvd/test-fixtures/full-page.json")
    feed = parse_path(path, now=NOW)
    assert feed.kind == "nvd"
    assert len(feed.cvss) == 38
    assert (feed.advisories, feed.kev, feed.epss) == ([], [], [])
    assert feed.meta == {
        "resultsPerPage": "38",
        "startIndex": "0",
        "totalResults": "38",
        "format": "NVD_CVE",
        "version": "2.0",
        "timestamp": "2023-10-18T18:04:18.493",
    }
    item = _by_id(feed)["CVE-2023-27314"]
    assert _summary(item) == [
        ("3.1", 7.5, "nvd"),
        ("3.1", 7.5, "nvd-secondary:security-alert@netapp.com"),
    ]
    assert item.scores[0].vector == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"
    assert item.scores[0].severity == "High"
    assert item.description.startswith("ONTAP 9 versions prior to 9.8P19")  # en, not es
    assert item.published == datetime(2023, 10, 12, 19, 15, 11, 747000, tzinfo=UTC)
    assert item.modified == datetime(2023, 10, 18, 18, 0, 24, 900000, tzinfo=UTC)
    # NVD's own rating wins over a higher secondary one.
    patchstack = _by_id(feed)["CVE-2023-45109"]
    assert _summary(patchstack) == [
        ("3.1", 8.8, "nvd"),
        ("3.1", 5.4, "nvd-secondary:audit@patchstack.com"),
    ]
    assert best_score(patchstack.scores) == patchstack.scores[0]


def test_single_record_pages_folder() -> None:
    feed = parse_path(
        data_file("osvdev-vulnfeeds-testdata/vulnfeeds/test_data/nvdcve-2.0"), now=NOW
    )
    records = _by_id(feed)
    assert len(records) == 23
    assert feed.meta["files"] == "23"
    assert feed.meta["totalResults"] == "1"  # the same in every page
    assert "timestamp" not in feed.meta  # differs between pages
    assert _summary(records["CVE-2016-1585"]) == [
        ("3.1", 9.8, "nvd"),
        ("3.0", 3.9, "nvd-secondary:security@ubuntu.com"),
        ("2.0", 7.5, "nvd"),
    ]
    assert _summary(records["CVE-2014-1424"]) == [("2.0", 6.4, "nvd")]
    assert records["CVE-2014-1424"].scores[0].severity == "Medium"
    assert _summary(records["CVE-2024-3094"]) == [
        ("3.1", 10.0, "nvd-secondary:secalert@redhat.com"),
        ("3.1", 10.0, "nvd"),
    ]
    # The SSVC metric next to the CVSS ones is ignored.
    assert len(records["CVE-2024-3094"].scores) == 2
    assert sum(len(r.scores) for r in records.values()) == 38


def test_multi_record_page() -> None:
    path = data_file("osvdev-vulnfeeds-testdata/vulnfeeds/conversion/nvd/testdata/test.json")
    feed = parse_nvd(path.read_bytes(), str(path))
    assert sorted(_by_id(feed)) == sorted(
        [
            "CVE-2026-20912",
            "CVE-2023-22466",
            "CVE-2026-23522",
            "CVE-2025-4565",
            "CVE-2018-14618",
            "CVE-2023-1055",
            "CVE-2024-7264",
            "CVE-2022-33068",
            "CVE-2016-1897",
            "CVE-2016-15012",
            "CVE-2024-2002",
            "CVE-2024-31497",
            "CVE-2023-45803",
        ]
    )
    v4 = [s for item in feed.cvss for s in item.scores if s.version == "4.0"]
    assert len(v4) == 1


def test_bad_vector_names_record_and_field() -> None:
    path = FIXTURES / "nvd-bad-vector.json"
    with pytest.raises(FeedError, match="Missing mandatory") as caught:
        parse_path(path, now=NOW)
    error = caught.value
    assert (error.source, error.record) == (str(path), "CVE-2024-0001")
    assert error.field == "metrics.cvssMetricV31[0].cvssData.vectorString"
    assert error.hint


def test_truncated_page(tmp_path: Path) -> None:
    data = data_file(
        "vunnel-fixtures/tests/unit/providers/nvd/test-fixtures/full-page.json"
    ).read_bytes()
    copy = tmp_path / "page.json"
    copy.write_bytes(data[: len(data) - 100])
    with pytest.raises(FeedError, match="not valid JSON"):
        parse_path(copy, kind="nvd", now=NOW)


def test_page_without_vulnerabilities() -> None:
    with pytest.raises(FeedError, match="missing 'vulnerabilities'"):
        parse_nvd(b'{"resultsPerPage": 0}', "page.json")
