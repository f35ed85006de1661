"""Debian Security Tracker JSON and DSA/DLA lists, checked against real data and a
third party's independent parse of the same lists."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchwarden.core.errors import FeedError, ValidationFailed
from patchwarden.core.model import Advisory, Affected, AffectedRange, Event
from patchwarden.feeds.formats.debian import (
    DEBIAN_RELEASES,
    parse_debian_list,
    parse_debian_tracker,
)
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.parsed import ParsedFeed
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 5, 1, tzinfo=UTC)
VUNNEL = "vunnel-fixtures/tests/unit/providers/debian/test-fixtures/input"


def _by_id(feed: ParsedFeed) -> dict[str, Advisory]:
    return {advisory.id: advisory for advisory in feed.advisories}


def _fixed(affected: Affected) -> str | None:
    return next((e.version for r in affected.ranges for e in r.events if e.kind == "fixed"), None)


def _open(ecosystem: str, name: str, note: str) -> Affected:
    return Affected(
        ecosystem, name, (AffectedRange("ECOSYSTEM", (Event("introduced", "0"),)),), note=note
    )


def _fix(ecosystem: str, name: str, version: str, note: str = "") -> Affected:
    events = (Event("introduced", "0"), Event("fixed", version))
    return Affected(ecosystem, name, (AffectedRange("ECOSYSTEM", events),), note=note)


# ---------------------------------------------------------------------- DSA / DLA


@pytest.fixture(scope="module")
def dsa() -> ParsedFeed:
    return parse_path(data_file("debian-security-tracker/DSA_list.txt"), now=NOW)


@pytest.mark.parametrize(
    ("name", "count", "affected", "cves"),
    [
        # SOURCE.txt: 5406 DSAs and 3534 DLAs; the parsed.json has 6988 and 3535 release
        # lines, of which 55 and 0 say <not-affected> (no entry).
        ("DSA_list", 5406, 6933, 18128),
        ("DLA_list", 3534, 3535, 11002),
    ],
)
def test_lists_match_the_independent_parse(name: str, count: int, affected: int, cves: int) -> None:
    feed = parse_path(data_file(f"debian-security-tracker/{name}.txt"), now=NOW)
    assert feed.kind == f"debian-{name[:3].lower()}"
    assert len(feed.advisories) == count
    assert sum(len(a.affected) for a in feed.advisories) == affected
    assert sum(len(a.aliases) for a in feed.advisories) == cves
    assert feed.meta == {}  # every codename in the lists is known

    reference = json.loads(data_file(f"debian-security-tracker/{name}.parsed.json").read_bytes())
    records = _by_id(feed)
    assert [entry["id"] for entry in reference] == [a.id for a in feed.advisories]
    for entry in reference:
        advisory = records[entry["id"]]
        assert advisory.published is not None
        assert advisory.published.strftime("%d %b %Y") == entry["date"], entry["id"]
        assert list(advisory.aliases) == [c for c in entry["cves"] if c.startswith("CVE-")]
        expected = [
            (DEBIAN_RELEASES[f["release"]], f["package"], f.get("fixed_version"))
            for f in entry["fixed"]
            if f.get("status") != "<not-affected>"
        ]
        found = [
            (x.ecosystem.removeprefix("Debian:"), x.name, _fixed(x)) for x in advisory.affected
        ]
        assert found == expected, entry["id"]
        assert advisory.details.split("\n") == (entry["notes"] or [""])


def test_dsa_record_fields(dsa: ParsedFeed) -> None:
    records = _by_id(dsa)
    newest = records["DSA-5380-1"]
    assert newest == Advisory(
        id="DSA-5380-1",
        modified=NOW,
        source="debian-dsa",
        aliases=("CVE-2023-1393",),
        summary="xorg-server - security update",
        published=datetime(2023, 3, 29, tzinfo=UTC),
        affected=(_fix("Debian:11", "xorg-server", "2:1.20.11-1+deb11u6", "bullseye"),),
    )
    # <not-affected> releases give no entry; comments stay in the note.
    assert records["DSA-2275-1"].affected == (
        _fix("Debian:6", "openoffice.org", "1:3.2.1-11+squeeze3", "squeeze"),
    )
    assert records["DSA-1075-1"].affected[0].note == "sarge (bug #365910)"
    assert records["DSA-3699-1"].affected == (
        _open("Debian:8", "virtualbox", "jessie end-of-life"),
    )
    # The list ends with old revision-less ids and a "--" separator in the title.
    last = dsa.advisories[-1]
    assert (last.id, last.summary) == ("DSA-135", "libapache-mod-ssl -- buffer overflow / DoS")
    assert last.published == datetime(2002, 7, 2, tzinfo=UTC)
    assert last.affected == (_fix("Debian:3.0", "libapache-mod-ssl", "2.8.9-2", "woody"),)


def test_dla_notice_keeps_its_note() -> None:
    dla = parse_path(data_file("debian-security-tracker/DLA_list.txt"), now=NOW)
    assert dla.advisories[0].id == "DLA-3380-1"
    notice = _by_id(dla)["DLA-3067-1"]
    assert notice.summary == "stretch-lts - end-of-life"
    assert notice.details == "end of security support for stretch-lts"
    assert notice.affected == ()
    assert notice.aliases == ()


def test_space_indented_excerpt() -> None:
    path = data_file(f"{VUNNEL}/DSA")
    feed = parse_path(path, now=NOW)
    assert feed.kind == "debian-dsa"
    records = _by_id(feed)
    assert list(records) == [
        "DSA-141",
        "DSA-140",
        "DSA-139",
        "DSA-138",
        "DSA-2819-1",
        "DSA-2808-2",
        "DSA-3281-1",
        "DSA-4205-1",
        "DSA-4323-1",
        "DSA-5970-1",
    ]
    assert records["DSA-140"].aliases == ("CVE-2002-0660", "CVE-2002-0728")
    assert records["DSA-140"].affected == (
        _fix("Debian:3.0", "libpng", "1.0.12-3.woody.2", "woody"),
        _fix("Debian:3.0", "libpng3", "1.2.1-1.1.woody.2", "woody"),
    )
    assert records["DSA-5970-1"].affected == (
        _fix("Debian:12", "sope", "5.8.0-1+deb12u1", "bookworm"),
    )
    assert records["DSA-3281-1"].summary == "Debian Security Team PGP/GPG key change notice"


def test_list_of_the_other_kind_is_refused() -> None:
    path = data_file("debian-security-tracker/DSA_list.txt")
    with pytest.raises(FeedError, match="expected a DLA list, found DSA-5380-1"):
        parse_debian_list(path.read_bytes(), str(path), kind="debian-dla", now=NOW)
    with pytest.raises(FeedError, match="'debian-dla' content, but it looks like 'debian-dsa'"):
        parse_path(path, kind="debian-dla", now=NOW)


@pytest.mark.parametrize(
    ("name", "record", "field", "message"),
    [
        ("dsa-bad-date.txt", "DSA-142 (line 4)", "date", "invalid date '31 Feb 2003'"),
        ("dsa-bad-line.txt", "DSA-141 (line 3)", None, "unrecognised line"),
    ],
)
def test_malformed_list(name: str, record: str, field: str | None, message: str) -> None:
    path = FIXTURES / name
    with pytest.raises(FeedError) as caught:
        parse_path(path, kind="debian-dsa", now=NOW)
    assert message in caught.value.message
    assert (caught.value.source, caught.value.record, caught.value.field) == (
        str(path),
        record,
        field,
    )
    assert caught.value.hint


def test_text_before_the_first_header_is_refused() -> None:
    with pytest.raises(FeedError, match="before the first advisory header") as caught:
        parse_debian_list(b"\t{CVE-2024-0001}\n", "list", kind="debian-dsa", now=NOW)
    assert caught.value.record == "line 1"


def test_now_must_be_aware() -> None:
    with pytest.raises(ValidationFailed, match="timezone-aware"):
        parse_debian_list(b"", "list", kind="debian-dsa", now=datetime(2025, 5, 1))


# --------------------------------------------------------------------- tracker JSON


def test_tracker_excerpt() -> None:
    path = data_file(f"{VUNNEL}/debian.json")
    feed = parse_path(path, now=NOW)
    assert feed.kind == "debian-tracker"
    # 7 CVE records: CVE-2007-2383 (fixed_version 0 everywhere) and CVE-2022-0358 (no
    # releases) affect nothing; sid has no OSV ecosystem.
    assert feed.meta == {"not_affected": "2", "skipped_releases": "sid"}
    records = _by_id(feed)
    assert list(records) == [
        "DEBIAN-CVE-2008-7220",
        "DEBIAN-CVE-2013-1444",
        "DEBIAN-CVE-2005-3111",
        "DEBIAN-CVE-2022-0456",
        "DEBIAN-CVE-2025-53603",
    ]
    prototype = records["DEBIAN-CVE-2008-7220"]
    assert prototype.source == "debian-tracker"
    assert prototype.aliases == ("CVE-2008-7220",)
    assert prototype.modified == NOW
    assert prototype.published is None
    assert prototype.database_severity == "high"  # "high**": the ** mark is dropped
    assert prototype.details.startswith("Unspecified vulnerability in Prototype JavaScript")
    assert prototype.affected == (
        _fix("Debian:9", "prototypejs", "1.6.0.2-1"),
        _fix("Debian:8", "prototypejs", "1.6.0.2-1"),
        _fix("Debian:10", "prototypejs", "1.6.0.2-1"),
    )
    chromium = records["DEBIAN-CVE-2022-0456"]
    assert chromium.database_severity == ""  # only "not yet assigned" / "end-of-life"
    assert chromium.affected[2:] == (
        _open("Debian:10", "chromium", "open, end-of-life"),
        _open("Debian:9", "chromium", "open, end-of-life"),
    )


def test_tracker_matches_osv_dev_conversion() -> None:
    path = data_file(
        "osvdev-vulnfeeds-testdata/vulnfeeds/test_data/debian/debian_security_tracker_mock.json"
    )
    feed = parse_debian_tracker(path.read_bytes(), str(path), now=NOW)
    records = _by_id(feed)
    assert sorted(records) == ["DEBIAN-CVE-2016-1585", "DEBIAN-CVE-2017-6507"]
    assert feed.meta == {"not_affected": "1", "skipped_releases": "sid"}
    assert records["DEBIAN-CVE-2016-1585"].database_severity == "unimportant"
    for cve in ("CVE-2016-1585", "CVE-2017-6507"):
        parts = json.loads(
            data_file(
                f"osvdev-vulnfeeds-testdata/vulnfeeds/test_data/parts/debian/{cve}.debian.json"
            ).read_bytes()
        )
        expected = {
            (
                part["ecosystem"],
                part["pkg_name"],
                tuple(
                    Event(kind, version)
                    for event in part["fixed_version"]["affected_versions"]
                    for kind, version in event.items()
                ),
            )
            for part in parts
        }
        found = {
            (x.ecosystem, x.name, x.ranges[0].events) for x in records[f"DEBIAN-{cve}"].affected
        }
        assert found == expected


def test_tracker_release_table_can_be_extended() -> None:
    path = data_file(
        "osvdev-vulnfeeds-testdata/vulnfeeds/test_data/debian/debian_security_tracker_mock.json"
    )
    releases = {**DEBIAN_RELEASES, "sid": "unstable"}
    feed = parse_debian_tracker(path.read_bytes(), str(path), now=NOW, releases=releases)
    assert "skipped_releases" not in feed.meta
    assert "Debian:unstable" in {x.ecosystem for a in feed.advisories for x in a.affected}


def test_tracker_bad_status() -> None:
    path = FIXTURES / "tracker-bad-status.json"
    with pytest.raises(FeedError, match="unknown status 'pending'") as caught:
        parse_path(path, kind="debian-tracker", now=NOW)
    assert caught.value.record == "openssl/CVE-2024-0001"
    assert caught.value.field == "releases.bullseye.status"
    assert caught.value.hint


def test_truncated_tracker_json(tmp_path: Path) -> None:
    data = data_file(f"{VUNNEL}/debian.json").read_bytes()
    copy = tmp_path / "json"
    copy.write_bytes(data[:-40])
    with pytest.raises(FeedError, match="not valid JSON"):
        parse_path(copy, kind="debian-tracker", now=NOW)
