"""Format detection by content and dispatch, including wrong-format input."""

from __future__ import annotations

import gzip
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchwarden.core.errors import FeedError, ValidationFailed
from patchwarden.feeds.formats.detect import detect_bytes, detect_format, parse_bytes, parse_path
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 5, 1, tzinfo=UTC)
VUNNEL = "vunnel-fixtures/tests/unit/providers"


@pytest.mark.parametrize(
    ("relative", "kind"),
    [
        ("osv-almalinux/advisories/almalinux9/ALBA-2022:8256.json", "osv"),
        ("osv-almalinux/advisories", "osv"),
        ("pypa-advisory-database/vulns/accesscontrol/PYSEC-2021-335.yaml", "osv"),
        ("pypa-advisory-database/pypi_osv_all.jsonl", "osv"),
        ("osv-schema/osv-linter-testdata/nointroduced-CVE-2023-41045.json", "osv"),
        (f"{VUNNEL}/debian/test-fixtures/input/debian.json", "debian-tracker"),
        ("debian-security-tracker/DSA_list.txt", "debian-dsa"),
        ("debian-security-tracker/DLA_list.txt", "debian-dla"),
        (f"{VUNNEL}/debian/test-fixtures/input/DSA", "debian-dsa"),
        ("alpine-secdb/v3.11/main.json", "alpine-secdb"),
        ("alpine-secdb/v3.11/community.yaml", "alpine-secdb"),
        (f"{VUNNEL}/alpine/test-fixtures/input/secdb/v3.15", "alpine-secdb"),
        (f"{VUNNEL}/nvd/test-fixtures/full-page.json", "nvd"),
        ("osvdev-vulnfeeds-testdata/vulnfeeds/test_data/nvdcve-2.0", "nvd"),
        ("cve5-vulnrichment/2021/1xxx/CVE-2021-1675.json", "cve5"),
        ("cve5-vulnrichment", "cve5"),
        ("cisa-kev/known_exploited_vulnerabilities.json", "kev"),
        (f"{VUNNEL}/epss/test-fixtures/example-1.csv", "epss"),
        (f"{VUNNEL}/epss/test-fixtures/invalid-header.csv", "epss"),
    ],
)
def test_detects_real_files(relative: str, kind: str) -> None:
    assert detect_format(data_file(relative)) == kind


def test_detects_through_gzip_and_zip(tmp_path: Path) -> None:
    page = data_file(f"{VUNNEL}/nvd/test-fixtures/full-page.json").read_bytes()
    packed = tmp_path / "page.json.gz"
    packed.write_bytes(gzip.compress(page))
    assert detect_format(packed) == "nvd"
    assert len(parse_path(packed, now=NOW).cvss) == 38
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("x.json", b"{}")
    assert detect_format(archive) == "osv"


@pytest.mark.parametrize(
    ("relative", "forced", "found"),
    [
        (f"{VUNNEL}/epss/test-fixtures/example-1.csv", "kev", "epss"),
        ("cisa-kev/known_exploited_vulnerabilities.json", "epss", "kev"),
        ("cisa-kev/known_exploited_vulnerabilities.json", "osv", "kev"),
        (f"{VUNNEL}/nvd/test-fixtures/full-page.json", "cve5", "nvd"),
        ("alpine-secdb/v3.11/main.yaml", "osv", "alpine-secdb"),
        ("debian-security-tracker/DLA_list.txt", "debian-tracker", "debian-dla"),
        (f"{VUNNEL}/debian/test-fixtures/input/debian.json", "alpine-secdb", "debian-tracker"),
        ("osv-almalinux/advisories/almalinux9/ALBA-2022:8256.json", "nvd", "osv"),
    ],
)
def test_forced_wrong_kind_says_expected_and_found(relative: str, forced: str, found: str) -> None:
    path = data_file(relative)
    with pytest.raises(FeedError) as caught:
        parse_path(path, kind=forced, now=NOW)
    assert f"expected {forced!r} content, but it looks like {found!r}" in caught.value.message
    assert caught.value.source == str(path)
    assert caught.value.hint == f"pass kind {found!r}, or no kind to detect it"
    assert isinstance(caught.value.__cause__, FeedError)


def test_forced_kind_keeps_the_parser_error_when_the_format_matches() -> None:
    path = FIXTURES / "osv-two-key-event.json"
    with pytest.raises(FeedError, match="exactly one key"):
        parse_path(path, kind="osv", now=NOW)


def test_detection_reports_broken_json(tmp_path: Path) -> None:
    data = data_file("cisa-kev/known_exploited_vulnerabilities.json").read_bytes()
    copy = tmp_path / "kev.json"
    copy.write_bytes(data[:1000])
    with pytest.raises(FeedError, match="not valid JSON") as caught:
        detect_format(copy)
    assert caught.value.source == str(copy)
    assert caught.value.hint


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("cisa-kev/known_exploited_vulnerabilities.csv", "unrecognised feed format"),
        (f"{VUNNEL}/kev/test-fixtures/single-entry/example1.json", "unrecognised JSON feed"),
    ],
)
def test_unrecognised_content(relative: str, message: str) -> None:
    with pytest.raises(FeedError, match=message) as caught:
        parse_path(data_file(relative), now=NOW)
    assert caught.value.hint is not None
    assert "pass the kind explicitly" in caught.value.hint


def test_unknown_kind_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FeedError, match="unknown feed kind 'rss'"):
        parse_path(tmp_path, kind="rss", now=NOW)
    (tmp_path / "notes.txt").write_text("nothing to parse")
    with pytest.raises(FeedError, match="no feed files"):
        parse_path(tmp_path, now=NOW)
    with pytest.raises(FeedError, match="cannot read the file"):
        parse_path(tmp_path / "missing.json", now=NOW)


def test_hidden_files_in_folders_are_ignored(tmp_path: Path) -> None:
    record = data_file("osv-schema/osv-linter-testdata/GO-2020-0001.json").read_bytes()
    (tmp_path / "GO-2020-0001.json").write_bytes(record)
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "junk.json").write_bytes(b"not json")
    feed = parse_path(tmp_path, now=NOW)
    assert [a.id for a in feed.advisories] == ["GO-2020-0001"]


def test_parse_bytes_for_downloads() -> None:
    data = data_file(f"{VUNNEL}/epss/test-fixtures/example-1.csv").read_bytes()
    assert detect_bytes(data, "https://example.test/epss.csv.gz") == "epss"
    feed = parse_bytes(gzip.compress(data), "https://example.test/epss.csv.gz", now=NOW)
    assert feed.source == "https://example.test/epss.csv.gz"
    assert len(feed.epss) == 5


def test_now_must_be_timezone_aware() -> None:
    with pytest.raises(ValidationFailed):
        parse_path(
            data_file("cisa-kev/known_exploited_vulnerabilities.json"), now=datetime(2025, 5, 1)
        )
