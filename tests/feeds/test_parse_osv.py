"""OSV parsing on real advisory databases, osv.dev's zip shape, and broken input."""

from __future__ import annotations

import time
import zipfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from patchwarden.core.errors import FeedError
from patchwarden.core.model import Advisory, AffectedRange, Event
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.formats.osv import (
    parse_osv,
    parse_osv_jsonl,
    parse_osv_yaml,
    parse_osv_zip,
)
from patchwarden.feeds.parsed import ParsedFeed
from tests.support import data_file

FIXTURES = Path(__file__).parent / "fixtures"
NOW = datetime(2025, 5, 1, tzinfo=UTC)
LINTER = "osv-schema/osv-linter-testdata"


def _by_id(feed: ParsedFeed) -> dict[str, Advisory]:
    return {advisory.id: advisory for advisory in feed.advisories}


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ------------------------------------------------------------------------- AlmaLinux


@pytest.fixture(scope="module")
def alma() -> ParsedFeed:
    return parse_path(data_file("osv-almalinux/advisories"), now=NOW)


def test_almalinux_counts(alma: ParsedFeed) -> None:
    # 1783 + 660 files; 9 multi-release advisories are stored identically in both folders.
    assert alma.kind == "osv"
    assert alma.meta == {"files": "2443", "duplicates": "9"}
    assert len(alma.advisories) == 2434
    assert Counter(a.id.split("-")[0] for a in alma.advisories) == {"ALSA": 2431, "ALBA": 3}
    ecosystems = Counter(x.ecosystem for a in alma.advisories for x in a.affected)
    assert ecosystems == {"AlmaLinux:9": 23051, "AlmaLinux:10": 6125, "AlmaLinux:8": 745}
    # AlmaLinux lists CVEs under related, never aliases (SOURCE.txt: 4372 distinct CVEs).
    assert all(a.aliases == () for a in alma.advisories)
    assert len({cve for a in alma.advisories for cve in a.cve_ids}) == 4372
    ratings = Counter(a.database_severity for a in alma.advisories)
    assert ratings == {"Important": 1363, "Moderate": 977, "Low": 74, "Critical": 19, "": 1}
    events = Counter(
        e.kind for a in alma.advisories for x in a.affected for r in x.ranges for e in r.events
    )
    assert events == {"introduced": 29921, "fixed": 29921}


def test_almalinux_multi_release_advisory(alma: ParsedFeed) -> None:
    advisory = _by_id(alma)["ALSA-2025:10873"]
    assert advisory.source == "osv"
    assert advisory.summary == "Important: java-21-openjdk security update"
    assert advisory.database_severity == "Important"
    assert advisory.related == (
        "CVE-2025-30749",
        "CVE-2025-30754",
        "CVE-2025-50059",
        "CVE-2025-50106",
    )
    assert advisory.cve_ids == advisory.related
    assert advisory.published == _ts("2025-07-16T00:00:00+00:00")
    assert advisory.modified == _ts("2025-07-30T13:16:04+00:00")
    assert advisory.withdrawn is None
    assert len(advisory.affected) == 69
    assert len(advisory.references) == 8
    assert {x.ecosystem for x in advisory.affected} == {
        "AlmaLinux:8",
        "AlmaLinux:9",
        "AlmaLinux:10",
    }
    first = advisory.affected[0]
    assert (first.ecosystem, first.name) == ("AlmaLinux:10", "java-21-openjdk")
    assert first.ranges == (
        AffectedRange(
            "ECOSYSTEM", (Event("introduced", "0"), Event("fixed", "1:21.0.8.0.9-1.el10.alma.1"))
        ),
    )


def test_almalinux_bugfix_advisory(alma: ParsedFeed) -> None:
    advisory = _by_id(alma)["ALBA-2022:8256"]
    assert advisory.summary == "Important: qatzip bug fix and enhancement update"
    assert advisory.related == ()
    assert [x.name for x in advisory.affected] == ["qatzip", "qatzip-devel", "qatzip-libs"]
    assert advisory.affected[0].ranges[0].events[-1] == Event("fixed", "1.0.9-1.el9")
    assert advisory.published == _ts("2022-11-15T00:00:00+00:00")
    assert advisory.modified == _ts("2023-06-19T09:29:32+00:00")
    assert advisory.references[0] == "https://access.redhat.com/errata/RHBA-2022:8256"


# ------------------------------------------------------------------- all.zip shape


def _zip_folder(folder: Path, target: Path) -> Path:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.glob("*.json")):
            archive.write(path, arcname=path.name)
    return target


def test_all_zip_equals_the_folder(tmp_path: Path) -> None:
    folder = data_file("osv-almalinux/advisories/almalinux9")
    archive = _zip_folder(folder, tmp_path / "all.zip")
    from_zip = parse_path(archive, now=NOW)
    from_folder = parse_path(folder, now=NOW)
    assert len(from_zip.advisories) == 1783
    assert sorted(from_zip.advisories, key=lambda a: a.id) == sorted(
        from_folder.advisories, key=lambda a: a.id
    )
    assert from_zip.source == str(archive)


def test_zip_skips_other_members(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.write(data_file(f"{LINTER}/GO-2020-0001.json"), arcname="GO-2020-0001.json")
        out.writestr("README.txt", "not a record")
    feed = parse_osv_zip(archive.read_bytes(), str(archive))
    assert [a.id for a in feed.advisories] == ["GO-2020-0001"]
    assert feed.meta == {"skipped_members": "1"}


def test_truncated_zip_raises(tmp_path: Path) -> None:
    data = _zip_folder(
        data_file("vunnel-fixtures/tests/unit/providers/rocky/test-fixtures/osv"),
        tmp_path / "a.zip",
    ).read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(FeedError, match="not a readable zip archive") as caught:
        parse_path(cut, now=NOW)
    assert caught.value.source == str(cut)
    assert caught.value.hint is not None


def test_zip_member_with_bad_crc_raises(tmp_path: Path) -> None:
    archive = tmp_path / "all.zip"
    record = data_file(f"{LINTER}/PYSEC-2023-74.json").read_bytes()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as out:
        out.writestr("PYSEC-2023-74.json", record)
    data = bytearray(archive.read_bytes())
    at = data.index(b'"PYSEC-2023-74"')
    data[at + 1] = ord("X")  # same length, different bytes: only the CRC notices
    with pytest.raises(FeedError, match="corrupt zip member") as caught:
        parse_osv_zip(bytes(data), "all.zip")
    assert caught.value.source == "all.zip!PYSEC-2023-74.json"


def test_zip_member_with_truncated_json_raises(tmp_path: Path) -> None:
    record = data_file(f"{LINTER}/GO-2024-2963.json").read_bytes()
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("GO-2020-0001.json", data_file(f"{LINTER}/GO-2020-0001.json").read_bytes())
        out.writestr("GO-2024-2963.json", record[:200])
    with pytest.raises(FeedError, match="not valid JSON") as caught:
        parse_path(archive, now=NOW)
    assert caught.value.source == f"{archive}!GO-2024-2963.json"


def test_truncated_real_record_raises(tmp_path: Path) -> None:
    original = data_file("osv-almalinux/advisories/almalinux9/ALSA-2025:10873.json").read_bytes()
    copy = tmp_path / "ALSA-2025:10873.json"
    copy.write_bytes(original[: len(original) // 2])
    with pytest.raises(FeedError, match="not valid JSON") as caught:
        parse_path(copy, kind="osv", now=NOW)
    assert str(copy) in str(caught.value)
    assert caught.value.hint == "the file may be truncated or corrupt; download it again"


def test_one_bad_file_fails_the_whole_folder(tmp_path: Path) -> None:
    folder = data_file("vunnel-fixtures/tests/unit/providers/rocky/test-fixtures/osv")
    for path in folder.glob("*.json"):
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "zz-bad.json").write_bytes((FIXTURES / "osv-missing-modified.json").read_bytes())
    with pytest.raises(FeedError, match="missing required field 'modified'"):
        parse_path(tmp_path, now=NOW)


def test_differing_duplicate_in_folder_raises(tmp_path: Path) -> None:
    record = data_file(f"{LINTER}/GO-2020-0001.json").read_bytes()
    (tmp_path / "a.json").write_bytes(record)
    (tmp_path / "b.json").write_bytes(
        record.replace(b"2024-05-20T16:03:47Z", b"2024-05-21T16:03:47Z")
    )
    with pytest.raises(FeedError, match=r"differs from its copy in .*a\.json") as caught:
        parse_path(tmp_path, now=NOW)
    assert caught.value.record == "GO-2020-0001"


# ----------------------------------------------------------------------------- PyPA


@pytest.fixture(scope="module")
def pypa_yaml() -> ParsedFeed:
    return parse_path(data_file("pypa-advisory-database/vulns"), now=NOW)


def test_pypa_yaml_counts(pypa_yaml: ParsedFeed) -> None:
    advisories = pypa_yaml.advisories
    assert len(advisories) == 2661
    assert pypa_yaml.meta["files"] == "2661"
    assert len({x.name for a in advisories for x in a.affected}) == 664
    assert {x.ecosystem for a in advisories for x in a.affected} == {"PyPI"}
    assert sum(1 for a in advisories if a.withdrawn is not None) == 10
    ranges = Counter(r.type for a in advisories for x in a.affected for r in x.ranges)
    assert ranges == {"ECOSYSTEM": 2659, "GIT": 1391}
    assert sum(len(x.versions) for a in advisories for x in a.affected) == 140847
    assert Counter(s.type for a in advisories for s in a.severity) == {"CVSS_V3": 202}


def test_pypa_record_fields(pypa_yaml: ParsedFeed) -> None:
    advisory = _by_id(pypa_yaml)["PYSEC-2021-335"]
    assert advisory.aliases == ("CVE-2021-32807", "GHSA-qcx9-j53g-ccgf")
    assert advisory.modified == _ts("2021-09-26T23:32:08.989778+00:00")
    assert advisory.published == _ts("2021-07-30T22:15:00+00:00")
    assert advisory.details.startswith("The module `AccessControl` defines security policies")
    (affected,) = advisory.affected
    assert (affected.ecosystem, affected.name) == ("PyPI", "accesscontrol")
    assert affected.ranges == (
        AffectedRange(
            "GIT",
            (Event("introduced", "0"), Event("fixed", "b42dd4badf803bb9fb71ac34cd9cb0c249262f2c")),
        ),
        AffectedRange(
            "ECOSYSTEM",
            (
                Event("introduced", "4.0"),
                Event("fixed", "4.3"),
                Event("introduced", "5.0"),
                Event("fixed", "5.2"),
            ),
        ),
    )
    assert affected.versions == ("4.0", "4.1", "4.2", "5.0", "5.1")
    assert len(advisory.references) == 3


def test_yaml_record_without_yaml_name() -> None:
    path = data_file("pypa-advisory-database/vulns/accesscontrol/PYSEC-2021-335.yaml")
    feed = parse_osv(path.read_bytes(), "https://example.test/PYSEC-2021-335")
    assert [a.id for a in feed.advisories] == ["PYSEC-2021-335"]


def test_pypa_jsonl_equals_yaml(pypa_yaml: ParsedFeed) -> None:
    jsonl = parse_path(data_file("pypa-advisory-database/pypi_osv_all.jsonl"), now=NOW)
    assert jsonl.kind == "osv"
    # The conversion kept YAML timestamps as strings; both must decode to the same values.
    assert _by_id(jsonl) == _by_id(pypa_yaml)


# --------------------------------------------------------------- OSV linter records


@pytest.mark.parametrize(
    "name",
    [
        "CVE-2018-5407.json",
        "CVE-2023-41045.json",
        "GHSA-9v2f-6vcg-3hgv.json",
        "GO-2020-0001.json",
        "GO-2024-2963.json",
        "MAL-2024-10238.json",
        "PYSEC-2023-74.json",
        "RHSA-2022_0216.json",
        "SUSE-FU-2022_0444-1.json",
        # Linter-only problems the schema allows: an introduced and fixed event on the
        # same commit, and a package name PyPI does not know. Both parse.
        "nondistinct-CVE-2018-5407.json",
        "nopackage-GHSA-9v2f-6vcg-3hgv.json",
    ],
)
def test_linter_records_that_parse(name: str) -> None:
    feed = parse_path(data_file(f"{LINTER}/{name}"), now=NOW)
    assert len(feed.advisories) == 1
    assert name.removesuffix(".json").endswith(feed.advisories[0].id.replace(":", "_"))


def test_linter_record_without_introduced_raises() -> None:
    path = data_file(f"{LINTER}/nointroduced-CVE-2023-41045.json")
    with pytest.raises(FeedError, match="no 'introduced' event") as caught:
        parse_path(path, now=NOW)
    assert caught.value.source == str(path)
    assert caught.value.record == "CVE-2023-41045"
    assert caught.value.field == "affected[0].ranges[0].events"


def test_linter_record_details() -> None:
    records = {
        name: parse_path(data_file(f"{LINTER}/{name}.json"), now=NOW).advisories[0]
        for name in ("CVE-2023-41045", "GHSA-9v2f-6vcg-3hgv", "RHSA-2022_0216", "CVE-2018-5407")
    }
    # GIT-only affected entries (no package) cannot match a package: not kept.
    assert records["CVE-2023-41045"].affected == ()
    assert records["CVE-2023-41045"].aliases == ("GHSA-g96c-x7rh-99r3",)
    assert records["GHSA-9v2f-6vcg-3hgv"].database_severity == "CRITICAL"
    assert records["GHSA-9v2f-6vcg-3hgv"].affected[0].versions == ("4.36.1", "4.36.-1")
    assert records["RHSA-2022_0216"].affected == ()
    alpine = records["CVE-2018-5407"]
    assert alpine.severity[0].score == "CVSS:3.1/AV:L/AC:H/PR:L/UI:N/S:U/C:H/I:N/A:N"
    assert {x.ecosystem for x in alpine.affected} >= {"Alpine:v3.3", "Alpine:v3.8"}


def test_linter_folder_fails_on_its_malformed_record() -> None:
    with pytest.raises(FeedError, match=r"nointroduced-CVE-2023-41045\.json"):
        parse_path(data_file(LINTER), now=NOW)


# ------------------------------------------------------------ Ubuntu, Rocky, Red Hat


def test_ubuntu_records() -> None:
    feed = parse_path(
        data_file("vunnel-fixtures/tests/unit/providers/ubuntu/test-fixtures/osv"), now=NOW
    )
    records = _by_id(feed)
    assert sorted(records) == [
        "UBUNTU-CVE-2013-2208",
        "UBUNTU-CVE-2016-20013",
        "UBUNTU-CVE-2020-36325",
        "UBUNTU-CVE-2021-3782",
        "UBUNTU-CVE-2026-1403",
        "USN-5614-1",
    ]
    cve = records["UBUNTU-CVE-2021-3782"]
    # upstream ids are folded into related, so the CVE is found.
    assert cve.related == ("USN-5614-1", "USN-5614-2", "CVE-2021-3782")
    assert cve.cve_ids == ("CVE-2021-3782",)
    assert cve.database_severity == "medium"
    assert [x.ecosystem for x in cve.affected] == [
        "Ubuntu:Pro:16.04:LTS",
        "Ubuntu:18.04:LTS",
        "Ubuntu:20.04:LTS",
        "Ubuntu:22.04:LTS",
    ]
    assert cve.affected[1].ranges[0].events[-1] == Event("fixed", "1.16.0-1ubuntu1.1~18.04.4")
    assert cve.affected[1].versions[0] == "1.14.0-1"
    assert records["UBUNTU-CVE-2016-20013"].database_severity == "negligible"
    assert len(records["UBUNTU-CVE-2016-20013"].affected) == 30
    assert records["USN-5614-1"].related == ("UBUNTU-CVE-2021-3782",)
    esm = parse_path(
        data_file("vunnel-fixtures/tests/unit/providers/ubuntu/test-fixtures/osv-esm-cases"),
        now=NOW,
    )
    assert len(esm.advisories) == 3


def test_rocky_records() -> None:
    feed = parse_path(
        data_file("vunnel-fixtures/tests/unit/providers/rocky/test-fixtures/osv"), now=NOW
    )
    advisory = _by_id(feed)["RLSA-2023:3220"]
    assert advisory.modified == _ts("2023-05-18T19:53:57.454316+00:00")
    assert advisory.database_severity == "Important"
    assert len(advisory.related) == 7
    (affected,) = advisory.affected
    assert (affected.ecosystem, affected.name) == ("Rocky Linux:8", "firefox")
    assert affected.ranges[0].events[-1] == Event("fixed", "0:102.11.0-2.el8_7")
    assert _by_id(feed)["RLSA-2024:3671"].database_severity == "Moderate"


def test_red_hat_and_ghsa_conversions() -> None:
    redhat = parse_path(data_file("osv-schema/tools/redhat/testdata/OSV"), now=NOW)
    rhsa = _by_id(redhat)["RHSA-2024:6220"]
    assert rhsa.cve_ids == ("CVE-2024-6345",)
    assert rhsa.affected[0].ecosystem == "Red Hat:rhel_aus:8.6::appstream"
    ghsa = parse_path(data_file("osv-schema/tools/ghsa/testdata/withdrawn.osv.json"), now=NOW)
    assert ghsa.advisories[0].withdrawn == _ts("2018-10-11T17:29:49+00:00")


# ----------------------------------------------------------- small broken fixtures


@pytest.mark.parametrize(
    ("name", "record", "field", "message"),
    [
        ("osv-missing-id.json", None, "id", "missing required field 'id'"),
        ("osv-missing-modified.json", "PW-TEST-0001", "modified", "missing required field"),
        (
            "osv-two-key-event.json",
            "PW-TEST-0002",
            "affected[0].ranges[0].events[1]",
            "exactly one key, found keys ['fixed', 'limit']",
        ),
        ("osv-bad-date.json", "PW-TEST-0003", "published", "not an RFC 3339 timestamp"),
        ("osv-no-zone.yaml", "PW-TEST-0004", "modified", "not an RFC 3339 timestamp"),
        (
            "osv-float-version.yaml",
            "PW-TEST-0005",
            "affected[0].ranges[0].events[1].fixed",
            "must be a non-empty string, found a number",
        ),
        (
            "osv-list-second-bad.json",
            "PW-TEST-0007 (index 1)",
            "affected[0].ranges[0].events",
            "mixes 'fixed' and 'last_affected'",
        ),
        ("osv-bad-line.jsonl", "line 3", None, "not valid JSON"),
    ],
)
def test_malformed_records_name_file_record_and_field(
    name: str, record: str | None, field: str | None, message: str
) -> None:
    path = FIXTURES / name
    with pytest.raises(FeedError) as caught:
        parse_path(path, kind="osv", now=NOW)
    error = caught.value
    assert message in error.message
    assert error.source == str(path)
    assert error.record == record
    assert error.field == field
    assert str(path) in str(error)
    if field in {"id", "modified"} or (field or "").endswith(("events", "events[1]", "fixed")):
        assert error.hint


def test_json_lines_with_upstream_and_offsets() -> None:
    path = FIXTURES / "osv-records.jsonl"
    feed = parse_osv_jsonl(path.read_bytes(), str(path))
    records = _by_id(feed)
    assert list(records) == ["PW-TEST-0010", "PW-TEST-0011", "PW-TEST-0012"]
    assert records["PW-TEST-0010"].cve_ids == ("CVE-2024-0001",)
    assert records["PW-TEST-0011"].related == ("CVE-2024-0002",)
    assert records["PW-TEST-0011"].modified == _ts("2024-05-02T10:00:00+00:00")
    assert records["PW-TEST-0012"].withdrawn == _ts("2024-06-01T00:00:00+00:00")
    # Recognised as JSON Lines from the content, whatever the name.
    assert _by_id(parse_osv(path.read_bytes(), "records.json")) == records


def test_duplicate_id_in_one_list_raises() -> None:
    record = data_file(f"{LINTER}/GO-2020-0001.json").read_bytes()
    with pytest.raises(FeedError, match="duplicate id") as caught:
        parse_osv(b"[" + record + b"," + record + b"]", "dup.json")
    assert caught.value.record == "GO-2020-0001"


def test_hostile_yaml_records_are_refused_before_they_expand(tmp_path: Path) -> None:
    """A YAML feed record is plain data: the "billion laughs" (aliases of aliases), tags
    and deep nesting are refused by the parser's events, before any value is built."""
    laughs = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    laughs += [f"a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * 9)}]" for n in range(1, 10)]
    cases = {
        "laughs.yaml": "\n".join(["id: PW-LAUGH", *laughs]) + "\n",
        "tagged.yaml": "id: !!python/object/apply:os.system ['true']\n",
        "deep.yaml": "id: PW-DEEP\nsummary: " + "[" * 5000 + "]" * 5000 + "\n",
    }
    started = time.monotonic()
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(FeedError) as caught:
            parse_osv_yaml(path.read_bytes(), str(path))
        assert "not a plain YAML document" in caught.value.message, name
    assert time.monotonic() - started < 10
