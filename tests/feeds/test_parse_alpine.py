"""Alpine secdb (JSON and YAML) on the real 2020 database and a current excerpt."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchwarden.core.errors import FeedError
from patchwarden.core.model import Advisory, Affected, AffectedRange, Event
from patchwarden.feeds.formats.alpine import parse_alpine_secdb, parse_alpine_secdbs
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.parsed import ParsedFeed
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 5, 1, tzinfo=UTC)
VUNNEL = "vunnel-fixtures/tests/unit/providers/alpine/test-fixtures/input/secdb/v3.15"


def _by_id(feed: ParsedFeed) -> dict[str, Advisory]:
    return {advisory.id: advisory for advisory in feed.advisories}


def _fixed(*versions: str) -> tuple[AffectedRange, ...]:
    return tuple(
        AffectedRange("ECOSYSTEM", (Event("introduced", "0"), Event("fixed", version)))
        for version in versions
    )


def _secdb(suffix: str) -> ParsedFeed:
    root = data_file("alpine-secdb")
    files = sorted(root.glob(f"v3.*/*.{suffix}"))
    assert len(files) == 18  # v3.3 … v3.11, main and community
    return parse_alpine_secdbs(
        [(path.read_bytes(), str(path)) for path in files], source=str(root), now=NOW
    )


@pytest.fixture(scope="module")
def secdb_json() -> ParsedFeed:
    return _secdb("json")


def test_whole_database_counts(secdb_json: ParsedFeed) -> None:
    feed = secdb_json
    assert feed.kind == "alpine-secdb"
    # Distinct CVEs; (branch, package, CVE) entries; (…, fixed version) ranges. Entries
    # without any CVE id (XSA-207, ZBX-16986, wnpa-sec-…) are counted, not kept.
    assert len(feed.advisories) == 2439
    assert sum(len(a.affected) for a in feed.advisories) == 11775
    assert sum(len(x.ranges) for a in feed.advisories for x in a.affected) == 11899
    assert feed.meta == {"files": "18", "non_cve_entries": "101"}
    assert {a.source for a in feed.advisories} == {"alpine-secdb"}
    assert all(a.id == f"ALPINE-{a.aliases[0]}" and len(a.aliases) == 1 for a in feed.advisories)
    ecosystems = {x.ecosystem for a in feed.advisories for x in a.affected}
    assert ecosystems == {f"Alpine:v3.{minor}" for minor in range(3, 12)}


def test_yaml_and_json_agree(secdb_json: ParsedFeed) -> None:
    assert _by_id(_secdb("yaml")) == _by_id(secdb_json)
    # The shared folder holds every file in both formats: entries are not repeated.
    folder = parse_path(data_file("alpine-secdb"), now=NOW)
    assert folder.meta["files"] == "36"
    assert _by_id(folder) == _by_id(secdb_json)


def test_merged_advisory_matches_osv_dev_parts(secdb_json: ParsedFeed) -> None:
    advisory = _by_id(secdb_json)["ALPINE-CVE-2019-14811"]
    assert advisory.modified == NOW
    assert [(x.ecosystem, x.name, x.note) for x in advisory.affected] == [
        ("Alpine:v3.10", "ghostscript", "main"),
        ("Alpine:v3.11", "ghostscript", "main"),
        ("Alpine:v3.7", "ghostscript", "main"),
        ("Alpine:v3.8", "ghostscript", "main"),
        ("Alpine:v3.9", "ghostscript", "main"),
    ]
    # osv.dev's own conversion of the same CVE (parts/alpine), for the branches both have.
    parts = json.loads(
        data_file(
            "osvdev-vulnfeeds-testdata/vulnfeeds/test_data/parts/alpine/CVE-2019-14811.alpine.json"
        ).read_bytes()
    )
    expected = {
        part["ecosystem"]: part["fixed_version"]["AffectedVersions"][0]["Fixed"] for part in parts
    }
    for affected in advisory.affected:
        if affected.ecosystem in expected:
            assert affected.ranges == _fixed(expected[affected.ecosystem])
    assert {"Alpine:v3.10", "Alpine:v3.11"} <= expected.keys()


def test_one_cve_fixed_on_two_upstream_branches(secdb_json: ParsedFeed) -> None:
    affected = [
        x
        for x in _by_id(secdb_json)["ALPINE-CVE-2017-15191"].affected
        if x.ecosystem == "Alpine:v3.10"
    ]
    assert affected == [
        Affected("Alpine:v3.10", "wireshark", _fixed("2.4.2-r0", "2.2.10-r0"), note="community")
    ]


def test_never_affected_key_and_extra_text(secdb_json: ParsedFeed) -> None:
    records = _by_id(secdb_json)
    # db lists Oracle Berkeley DB CVEs under "0" in v3.8: never affected there.
    oracle = records.get("ALPINE-CVE-2016-0682")
    assert oracle is None or all(
        (x.ecosystem, x.name) != ("Alpine:v3.8", "db") for x in oracle.affected
    )
    # "CVE-2016-9932 XSA-200": the CVE id is taken, the Xen id ignored.
    xen = [x for x in records["ALPINE-CVE-2016-9932"].affected if x.name == "xen"]
    assert len(xen) == 9
    # "CVE_2017-…" typos are read as CVE ids.
    assert all(a.id.startswith("ALPINE-CVE-") for a in records.values())


def test_single_file_and_excerpt() -> None:
    main = parse_path(data_file(f"{VUNNEL}/main.yaml"), now=NOW)
    community = parse_path(data_file(f"{VUNNEL}/community.yaml"), now=NOW)
    assert (len(main.advisories), len(community.advisories)) == (13, 3)
    records = _by_id(main)
    assert records["ALPINE-CVE-2022-1271"].affected == (
        Affected("Alpine:v3.15", "xz", _fixed("5.2.5-r1"), note="main"),
    )
    assert records["ALPINE-CVE-2018-1071"].affected[0].name == "zsh"
    assert _by_id(community)["ALPINE-CVE-2021-38370"].affected == (
        Affected("Alpine:v3.15", "alpine", _fixed("2.25-r0"), note="community"),
    )
    folder = parse_path(data_file(VUNNEL), now=NOW)
    assert len(folder.advisories) == 16
    assert folder.meta["files"] == "2"


def test_empty_package_list_is_fine() -> None:
    path = data_file("alpine-secdb/v3.3/community.json")
    feed = parse_alpine_secdb(path.read_bytes(), str(path), now=NOW)
    assert feed.advisories == []


def test_float_version_key_is_refused() -> None:
    # An unquoted `1.1:` is a YAML number, not a version: YAML feeds are plain data with
    # text keys, so the file is refused at the line, before any record is read.
    path = FIXTURES / "secdb-float-key.yaml"
    with pytest.raises(FeedError, match=r"secdb-float-key\.yaml, line 8: keys must be text"):
        parse_path(path, now=NOW)


def test_truncated_secdb(tmp_path: Path) -> None:
    data = data_file("alpine-secdb/v3.11/main.json").read_bytes()
    copy = tmp_path / "main.json"
    copy.write_bytes(data[: len(data) // 3])
    with pytest.raises(FeedError, match="not valid JSON") as caught:
        parse_path(copy, kind="alpine-secdb", now=NOW)
    assert caught.value.source == str(copy)


def test_missing_distroversion() -> None:
    with pytest.raises(FeedError, match="missing required field 'distroversion'"):
        parse_alpine_secdb(b'{"packages": []}', "main.json", now=NOW)
