"""CVE JSON 5 records: CNA and ADP vectors, rejected records, folders of records."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchwarden.core.errors import FeedError
from patchwarden.feeds.formats.cve5 import parse_cve5
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.parsed import CveCvss, ParsedFeed
from tests.support import data_file

NOW = datetime(2025, 5, 1, tzinfo=UTC)
CVELIST = "osvdev-vulnfeeds-testdata/vulnfeeds/test_data/cvelistV5/cves"


def _by_id(feed: ParsedFeed) -> dict[str, CveCvss]:
    return {item.cve_id: item for item in feed.cvss}


@pytest.fixture(scope="module")
def vulnrichment() -> ParsedFeed:
    return parse_path(data_file("cve5-vulnrichment"), now=NOW)


def test_vulnrichment_counts(vulnrichment: ParsedFeed) -> None:
    assert vulnrichment.kind == "cve5"
    assert len(vulnrichment.cvss) == 1849
    assert vulnrichment.meta == {"files": "1849"}
    # SOURCE.txt: cna cvssV3_1 678, cvssV3_0 93, cvssV4_0 19, cvssV2_0 7, adp cvssV3_1 324.
    found = Counter((s.source, s.version) for item in vulnrichment.cvss for s in item.scores)
    assert found == {
        ("cna", "3.1"): 678,
        ("cna", "3.0"): 93,
        ("cna", "4.0"): 19,
        ("cna", "2.0"): 7,
        ("adp:CISA-ADP", "3.1"): 324,
    }
    # Reserved-then-published records where the CNA never filled datePublished.
    assert sorted(item.cve_id for item in vulnrichment.cvss if item.published is None) == [
        "CVE-2024-25742",
        "CVE-2024-25743",
        "CVE-2024-27280",
        "CVE-2024-27281",
        "CVE-2024-27282",
        "CVE-2024-36472",
    ]
    assert all(item.modified is not None for item in vulnrichment.cvss)


def test_rejected_record_kept_without_scores(vulnrichment: ParsedFeed) -> None:
    rejected = _by_id(vulnrichment)["CVE-2023-52605"]
    assert rejected.scores == ()
    assert rejected.description == (
        "This CVE ID has been rejected or withdrawn by its CVE Numbering Authority."
    )
    assert rejected.modified == datetime(2024, 3, 18, 15, 10, 19, 18000, tzinfo=UTC)


def test_log4shell_score_comes_from_cisa_adp() -> None:
    path = data_file(f"{CVELIST}/2021/44xxx/CVE-2021-44228.json")
    (item,) = parse_cve5(path.read_bytes(), str(path)).cvss
    assert item.cve_id == "CVE-2021-44228"
    assert [(s.version, s.base_score, s.severity, s.source) for s in item.scores] == [
        ("3.1", 10.0, "Critical", "adp:CISA-ADP")
    ]
    assert item.description.startswith("Apache Log4j2 2.0-beta9 through 2.15.0")
    assert item.published == datetime(2021, 12, 10, tzinfo=UTC)
    assert item.modified == datetime(2025, 2, 4, 14, 25, 37, 215000, tzinfo=UTC)


def test_osv_dev_cve5_records() -> None:
    feed = parse_path(data_file("osvdev-vulnfeeds-testdata/vulnfeeds/test_data/cve5"), now=NOW)
    records = _by_id(feed)
    assert len(records) == 13
    summary = {
        cve: [(s.version, s.base_score, s.source) for s in item.scores]
        for cve, item in records.items()
    }
    assert summary["CVE-2016-15012"] == [
        ("3.1", 5.5, "cna"),
        ("3.0", 5.5, "cna"),
        ("2.0", 5.2, "cna"),
    ]
    assert summary["CVE-2025-4565"] == [("4.0", 8.2, "cna")]
    assert summary["CVE-2024-7264"] == [("3.1", 6.3, "adp:CISA-ADP")]
    assert summary["CVE-2016-1897"] == []
    folder = parse_path(data_file(CVELIST), now=NOW)
    assert len(folder.cvss) == 11


def test_record_without_metadata_is_refused() -> None:
    # osv.dev's combine-to-osv inputs are OSV-shaped, not CVE records.
    path = data_file(
        "osvdev-vulnfeeds-testdata/vulnfeeds/test_data/combine-to-osv/cve5/CVE-2023-0001.json"
    )
    with pytest.raises(FeedError, match="missing 'cveMetadata'"):
        parse_cve5(path.read_bytes(), str(path))
    with pytest.raises(FeedError, match="'cve5' content, but it looks like 'osv'"):
        parse_path(path, kind="cve5", now=NOW)


def test_bad_vector_in_adp_names_the_container() -> None:
    path = data_file(f"{CVELIST}/2021/44xxx/CVE-2021-44228.json")
    data = path.read_bytes().replace(
        b"CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H", b"CVSS:3.1/AV:N"
    )
    with pytest.raises(FeedError) as caught:
        parse_cve5(data, "CVE-2021-44228.json")
    assert caught.value.record == "CVE-2021-44228"
    assert caught.value.field is not None
    assert caught.value.field.startswith("containers.adp[")
    assert caught.value.field.endswith(".cvssV3_1.vectorString")


def test_truncated_record(tmp_path: Path) -> None:
    data = data_file(f"{CVELIST}/2024/3xxx/CVE-2024-3094.json").read_bytes()
    copy = tmp_path / "CVE-2024-3094.json"
    copy.write_bytes(data[:500])
    with pytest.raises(FeedError, match="not valid JSON"):
        parse_path(copy, kind="cve5", now=NOW)
