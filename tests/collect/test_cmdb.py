"""CMDB exports: CSV and ServiceNow-style JSON to records, with per-cell problems.

Fixtures in fixtures/cmdb/ are small hand-written exports in the shapes the tools
produce: a plain CSV, an Excel "CSV (semicolon)" export with a byte-order mark and
column labels, a ServiceNow Table API response for cmdb_ci_server (reference fields,
zero-padded addresses, a reference exported without display value), and a CSV with
site-specific column names plus its --mapping file.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
import typer
from sqlalchemy import func, select

from patchwarden.cli import fleet_sources
from patchwarden.collect import cmdb
from patchwarden.collect.cmdb import (
    CmdbRecord,
    is_timezone,
    load_cmdb_file,
    load_mapping,
    mapping_from_json,
    normalize_column,
    parse_cmdb,
    parse_criticality,
)
from patchwarden.core.errors import InventoryError, PatchwardenError, ValidationFailed
from patchwarden.store.db import open_database
from patchwarden.store.models import AssetRow

FIXTURES = Path(__file__).parent / "fixtures" / "cmdb"


def problems_of(result: cmdb.CmdbImport) -> list[tuple[int, str]]:
    return [(p.row, p.column) for p in result.problems]


def test_plain_csv_maps_every_field() -> None:
    result = load_cmdb_file(FIXTURES / "servers.csv")

    assert result.format == "csv"
    assert result.rows == 5
    web, db, build, lab = result.records
    assert web == CmdbRecord(
        row=2,
        hostname="web-1",
        fqdn="web-1.prod.example.com",
        ips=("10.20.0.11",),
        serial="CZ2101ABCD",
        owner="Web Team",
        environment="production",
        criticality=4,
        exposure="internet",
        location="Frankfurt DC1",
        timezone="Europe/Berlin",
        tags=("pci", "web"),
    )
    # A dotted host name is the fqdn; its first label the host name.
    assert (db.hostname, db.fqdn) == ("db-1", "db-1.prod.example.com")
    assert db.ips == ("10.20.0.21", "10.21.0.21")
    assert (build.criticality, build.exposure, build.tags) == (2, "", ())
    # Bad cells are dropped one by one; the rest of the row is kept.
    assert (lab.hostname, lab.owner, lab.tags) == ("lab-3", "Lab", ("lab",))
    assert (lab.ips, lab.criticality, lab.exposure, lab.timezone) == ((), None, "", "")
    assert problems_of(result) == [
        (5, "ip"),
        (5, "criticality"),
        (5, "exposure"),
        (5, "timezone"),
        (6, ""),
    ]
    assert "'Mars/Olympus_Mons' is not an IANA time zone" in str(result.problems[3])
    assert str(result.problems[4]).startswith("row 6: no hostname, fqdn, ip or serial")


def test_excel_semicolon_export_with_bom_and_labels() -> None:
    result = load_cmdb_file(FIXTURES / "excel-semicolon.csv")

    mail, printer = result.records
    assert (mail.hostname, mail.fqdn) == ("mail-1", "mail-1.corp.example")
    assert mail.serial == "VMware-42 1a 2b"
    assert mail.owner == "Messaging"
    assert mail.criticality == 5  # "1 - most critical"
    assert mail.environment == "production"  # from "Used for"
    assert mail.timezone == "America/New_York"
    assert printer.criticality == 1  # "4 - not critical"
    assert result.problems == ()


def test_servicenow_table_api_export() -> None:
    result = load_cmdb_file(FIXTURES / "servicenow-cmdb_ci_server.json")

    assert result.format == "servicenow"
    assert result.rows == 3
    app, database = result.records
    assert app.hostname == "erp-app-01"
    assert app.fqdn == "erp-app-01.corp.example.com"
    assert app.ips == ("192.168.245.10",)  # zero-padded octet read as decimal
    assert app.owner == "Fred Luddy"  # display value of the reference
    assert app.location == "San Diego"
    assert app.criticality == 5
    assert app.environment == "production"
    assert app.tags == ("erp", "sox")
    assert app.external_id == "0c43b2f0c0a8016a00e7cc1c1f0c4a01"
    # No fqdn, but name + dns_domain make one.
    assert database.fqdn == "erp-db-01.corp.example.com"
    assert database.criticality == 4  # bare "2" in u_criticality is ServiceNow's scale
    assert database.owner == ""  # only a sys_id was exported
    assert problems_of(result) == [(2, "owned_by"), (3, "")]
    assert "sysparm_display_value=true" in result.problems[0].message


def test_other_servicenow_shapes_bare_list_jsonv2_and_display_value_all() -> None:
    record = {
        "name": {"display_value": "edge-1", "value": "edge-1"},
        "ip_address": ["10.1.1.1", "10.1.1.2"],
        "business_criticality": {"display_value": "2 - somewhat critical", "value": "2"},
        "sys_tags": ["dmz", "edge"],
        "internet_facing": True,
    }
    for document in ([record], {"records": [record]}, {"result": [record]}):
        (parsed,) = parse_cmdb(json.dumps(document)).records
        assert parsed.hostname == "edge-1"
        assert parsed.ips == ("10.1.1.1", "10.1.1.2")
        assert parsed.criticality == 4
        assert parsed.tags == ("dmz", "edge")
        assert parsed.exposure == "internet"


def test_a_mapping_renames_columns_and_sets_the_scale() -> None:
    mapping = load_mapping(FIXTURES / "custom-mapping.json")
    result = load_cmdb_file(FIXTURES / "custom.csv", mapping=mapping)

    first, second = result.records
    assert first.hostname == "app-9"
    assert first.ips == ("10.50.0.9", "10.99.0.9")  # every listed column is combined
    assert first.criticality == 5  # Tier 1 on ServiceNow's scale
    assert second.criticality == 2  # Tier 3
    assert (first.owner, first.location, first.environment) == ("Payments", "Zurich", "")
    # Fields the mapping does not name keep their default columns.
    assert mapping.columns["serial"] == cmdb.DEFAULT_COLUMNS["serial"]
    assert mapping.columns["environment"] == ()


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "must be a JSON object"),
        ({"hostnme": "Server"}, "unknown field 'hostnme'"),
        ({"hostname": 5}, "must name a column"),
        ({"hostname": ["ok", ""]}, "non-empty strings"),
        ({"criticality_scale": "itil"}, "criticality_scale must be one of"),
    ],
)
def test_bad_mappings_are_refused(document: object, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        mapping_from_json(document)


def test_a_mapping_file_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text("hostname = Server\n")
    with pytest.raises(ValidationFailed, match="not valid JSON"):
        load_mapping(path)


@pytest.mark.parametrize(
    ("text", "scale", "expected"),
    [
        ("5", "patchwarden", 5),
        ("1", "patchwarden", 1),
        ("0", "patchwarden", None),
        ("6", "patchwarden", None),
        ("1", "servicenow", 5),
        ("2", "servicenow", 4),
        ("3", "servicenow", 2),
        ("4", "servicenow", 1),
        ("5", "servicenow", None),
        ("1 - most critical", "patchwarden", 5),
        ("2 - somewhat critical", "patchwarden", 4),
        ("3 - less critical", "patchwarden", 2),
        ("4 - not critical", "patchwarden", 1),
        ("2 -  Somewhat   Critical", "patchwarden", 4),
        ("1 - Tier One", "patchwarden", 5),  # unknown words: ServiceNow numbering
        ("Critical", "patchwarden", 5),
        ("high", "servicenow", 4),
        ("Medium", "patchwarden", 3),
        ("low", "patchwarden", 2),
        ("very_low", "patchwarden", 1),
        ("urgent", "patchwarden", None),
        ("", "patchwarden", None),
    ],
)
def test_criticality_values(text: str, scale: str, expected: int | None) -> None:
    assert parse_criticality(text, scale) == expected


@pytest.mark.parametrize(
    ("name", "known"),
    [
        ("Europe/Berlin", True),
        ("America/Argentina/Buenos_Aires", True),
        ("UTC", True),
        ("Mars/Base", False),
        ("europe/berlin", False),
        ("../../etc/passwd", False),
        ("", False),
    ],
)
def test_time_zones_are_iana_names(name: str, known: bool) -> None:
    assert is_timezone(name) is known


def test_column_names_are_normalized() -> None:
    assert normalize_column("  IP Address ") == "ip_address"
    assert normalize_column("Time-Zone") == "time_zone"
    assert normalize_column("sys.tags") == "sys_tags"


def test_a_host_named_by_its_address_is_matched_by_address() -> None:
    (record,) = parse_cmdb("name,owner\n10.0.0.9,ops\n").records
    assert (record.hostname, record.ips) == ("", ("10.0.0.9",))


def test_short_and_long_rows_are_reported_and_read() -> None:
    result = parse_cmdb("hostname,owner,location\nweb-1,ops\nweb-2,ops,Berlin,extra\n")
    assert [r.owner for r in result.records] == ["ops", "ops"]
    assert [r.location for r in result.records] == ["", "Berlin"]
    assert problems_of(result) == [(2, ""), (3, "")]


def test_bad_names_and_addresses_are_problems() -> None:
    result = parse_cmdb('hostname,fqdn,ip\nweb_1!,"not a name",300.1.1.1\n')
    assert result.records == ()
    assert problems_of(result) == [(2, "ip"), (2, "hostname"), (2, "fqdn"), (2, "")]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gzip.compress(b"hostname\nweb-1\n"), "binary data"),
        ("hostname\nwéb".encode("latin-1"), "not UTF-8"),
        (b"", "empty file"),
        (b"   \n", "empty file"),
        (b'{"hosts": [{"name": "a"}]}', "not a CMDB export"),
        (b'{"error": {"message": "User Not Authenticated"}, "status": "failure"}', "User Not"),
        (b'{"result": [\n{"name": "a",}\n]}', "not valid JSON"),
        (b"Lorem ipsum dolor sit amet\nconsectetur adipiscing\n", "identifies a host"),
    ],
)
def test_input_that_is_no_cmdb_export_is_rejected(data: bytes, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        parse_cmdb(data, source="upload")


def test_json_errors_point_at_the_line() -> None:
    with pytest.raises(InventoryError) as caught:
        parse_cmdb(b'{"result": [\n{"name": "a",}\n]}', source="export.json")
    assert caught.value.line == 2
    assert str(caught.value).startswith("export.json:2: not valid JSON")


def test_the_format_can_be_forced() -> None:
    with pytest.raises(InventoryError, match="identifies a host"):
        parse_cmdb(b'[{"name": "a"}]', format="csv")
    with pytest.raises(ValidationFailed, match="unknown CMDB format"):
        parse_cmdb(b"hostname\na\n", format="xlsx")


def test_files_over_the_size_limit_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "big.csv"
    path.write_text("hostname\n" + "host\n" * 10)
    monkeypatch.setattr(cmdb, "MAX_CMDB_BYTES", 20)
    with pytest.raises(InventoryError, match="at most 20 are read"):
        load_cmdb_file(path)


# ------------------------------------------------------------------------------ CLI


def run_fleet_cli(*argv: str) -> int:
    """Run a fleet_sources command the way ``patchwarden.cli.main.run`` does."""
    command = typer.main.get_command(fleet_sources.app)
    try:
        result = command.main(args=list(argv), prog_name="patchwarden", standalone_mode=False)
    except PatchwardenError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except typer.exceptions.TyperException as exc:  # usage errors of Typer's own click
        sys.stderr.write(f"usage error: {exc}\n")
        return int(getattr(exc, "exit_code", 2))
    return result if isinstance(result, int) else 0


def test_cmdb_import_command(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    export = str(FIXTURES / "servicenow-cmdb_ci_server.json")
    assert run_fleet_cli("cmdb-import", export, "--dry-run", "--json") == 1
    dry = json.loads(capsys.readouterr().out)
    assert dry["dry_run"] is True
    assert (dry["rows"], dry["skipped_rows"], dry["created"]) == (3, 1, 2)
    assert [p["column"] for p in dry["problems"]] == ["owned_by", ""]

    database = open_database(cli_env)
    try:
        with database.session() as session:
            assert session.scalars(select(AssetRow)).first() is None
        # Exit 1: one row could not be used, the rest is applied.
        assert run_fleet_cli("cmdb-import", export) == 1
        out = capsys.readouterr().out
        assert "3 rows (servicenow): 2 assets were created" in out
        assert "sysparm_display_value=true" in out
        with database.session() as session:
            names = sorted(a.hostname for a in session.scalars(select(AssetRow)))
            assert names == ["erp-app-01", "erp-db-01"]
        mapping = str(FIXTURES / "custom-mapping.json")
        code = run_fleet_cli("cmdb-import", str(FIXTURES / "custom.csv"), "--mapping", mapping)
        assert code == 0
        with database.session() as session:
            assert session.scalar(select(func.count()).select_from(AssetRow)) == 4
    finally:
        database.dispose()


def test_cmdb_import_rejects_a_file_that_is_no_export(
    cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    junk = tmp_path / "notes.txt"
    junk.write_text("remember the milk\n")
    assert run_fleet_cli("cmdb-import", str(junk)) == 2
    assert "identifies a host" in capsys.readouterr().err
