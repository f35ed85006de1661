"""FIRST EPSS CSV parsing, plain and gzip, with every row validated."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from patchwarden.core.errors import FeedError
from patchwarden.core.model import EpssScore
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.formats.epss import parse_epss
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 5, 1, tzinfo=UTC)
EPSS = "vunnel-fixtures/tests/unit/providers/epss/test-fixtures"


def test_real_head() -> None:
    feed = parse_path(data_file(f"{EPSS}/example-1.csv"), now=NOW)
    assert feed.kind == "epss"
    assert feed.meta == {"model_version": "v2023.03.01", "score_date": "2025-02-20T00:00:00+0000"}
    day = date(2025, 2, 20)
    assert feed.epss == [
        ("CVE-1999-0001", EpssScore(0.00383, 0.73075, day, "v2023.03.01")),
        ("CVE-1999-0002", EpssScore(0.01328, 0.85996, day, "v2023.03.01")),
        ("CVE-1999-0003", EpssScore(0.04409, 0.92440, day, "v2023.03.01")),
        ("CVE-1999-0004", EpssScore(0.00917, 0.82963, day, "v2023.03.01")),
        ("CVE-1999-0005", EpssScore(0.91963, 0.99214, day, "v2023.03.01")),
    ]


def test_gzip_equals_plain(tmp_path: Path) -> None:
    plain = data_file(f"{EPSS}/example-1.csv")
    packed = tmp_path / "epss_scores-2025-02-20.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert parse_path(packed, now=NOW).epss == parse_path(plain, now=NOW).epss


def test_corrupt_gzip(tmp_path: Path) -> None:
    packed = gzip.compress(data_file(f"{EPSS}/example-1.csv").read_bytes())
    broken = tmp_path / "epss.csv.gz"
    broken.write_bytes(packed[: len(packed) - 12])
    with pytest.raises(FeedError, match="corrupt gzip data") as caught:
        parse_path(broken, kind="epss", now=NOW)
    assert caught.value.source == str(broken)


def test_invalid_header_fixture() -> None:
    path = data_file(f"{EPSS}/invalid-header.csv")
    with pytest.raises(FeedError, match="expected the header 'cve,epss,percentile'") as caught:
        parse_path(path, kind="epss", now=NOW)
    assert (caught.value.record, caught.value.field) == ("line 2", "header")
    assert "invalid,header,format" in caught.value.message
    assert caught.value.hint


def test_missing_date_fixture() -> None:
    path = data_file(f"{EPSS}/missing-date.csv")
    with pytest.raises(FeedError, match="no score_date") as caught:
        parse_path(path, now=NOW)
    assert (caught.value.record, caught.value.field) == ("line 1", "score_date")


@pytest.mark.parametrize(
    ("name", "record", "field", "message"),
    [
        ("epss-bad-score.csv", "line 5", "epss", "found 'high'"),
        ("epss-out-of-range.csv", "line 3", "percentile", "between 0 and 1, found '1.5'"),
        ("epss-bad-cve.csv", "line 4", "cve", "not a CVE id"),
    ],
)
def test_bad_rows_name_their_line(name: str, record: str, field: str, message: str) -> None:
    path = FIXTURES / name
    with pytest.raises(FeedError) as caught:
        parse_path(path, now=NOW)
    assert message in caught.value.message
    assert (caught.value.source, caught.value.record, caught.value.field) == (
        str(path),
        record,
        field,
    )


def test_row_shape_and_duplicates() -> None:
    head = b"#model_version:v1,score_date:2025-05-01T00:00:00+0000\ncve,epss,percentile\n"
    with pytest.raises(FeedError, match="expected 3 comma-separated fields, found 2"):
        parse_epss(head + b"CVE-2024-0001,0.1\n", "epss.csv")
    with pytest.raises(FeedError, match="duplicate row for CVE-2024-0001"):
        parse_epss(head + b"CVE-2024-0001,0.1,0.2\nCVE-2024-0001,0.1,0.2\n", "epss.csv")
    with pytest.raises(FeedError, match="found 'nan'"):
        parse_epss(head + b"CVE-2024-0001,nan,0.2\n", "epss.csv")


def test_header_only_file_has_no_scores() -> None:
    head = b"#model_version:v1,score_date:2025-05-01\ncve,epss,percentile\n"
    feed = parse_epss(head, "epss.csv")
    assert feed.epss == []
    assert feed.meta == {"model_version": "v1", "score_date": "2025-05-01"}
