"""``patchwarden feeds``: stored counts, imports that find nothing, text printed as written."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest

from patchwarden.cli.main import run
from tests.support import data_file

ALMA9 = "osv-almalinux/advisories/almalinux9"


@pytest.fixture
def work(cli_env: str, tmp_path: Path) -> Path:
    """A folder for the test's files, beside the signed-in CLI on the test database."""
    return tmp_path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def status(capsys: pytest.CaptureFixture[str]) -> dict[str, dict[str, object]]:
    code, out, _ = cli(capsys, "feeds", "status", "--json")
    assert code == 0
    return {f["feed"]: f for f in json.loads(out)["feeds"]}


def test_status_counts_what_is_stored_not_the_last_import(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = data_file(ALMA9)
    stored = len(list(folder.glob("*.json")))
    assert cli(capsys, "feeds", "import", str(folder))[0] == 0
    few = work / "three"
    few.mkdir()
    for record in sorted(folder.glob("*.json"))[:3]:
        shutil.copy(record, few / record.name)
    kev = data_file("cisa-kev/known_exploited_vulnerabilities.json")
    assert cli(capsys, "feeds", "import", str(few), str(kev))[0] == 0

    feeds = status(capsys)
    assert feeds["osv:AlmaLinux"]["records"] == stored
    assert feeds["osv:AlmaLinux"]["last_import_records"] == 3
    assert feeds["osv:AlmaLinux"]["meta"]["last_import"]["unchanged"] == 3  # type: ignore[index]
    assert feeds["kev"]["records"] == 1404
    monkeypatch.setenv("COLUMNS", "200")  # one table row per feed
    code, out, _ = cli(capsys, "feeds", "status")
    assert code == 0
    row = next(line for line in out.splitlines() if "osv:AlmaLinux" in line)
    assert f"│ {stored:,} " in row
    assert ": 3 records (0 added, 0 updated, 3 unchanged)" in row


def test_records_count_for_the_feed_that_imported_them_last(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = data_file(ALMA9)
    records = sorted(folder.glob("*.json"))[:5]
    mixed = work / "mixed.json"
    pypi = {
        "id": "PYSEC-TEST-1",
        "modified": "2026-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "demo"}, "versions": ["1.0"]}],
    }
    mixed.write_text(json.dumps([json.loads(r.read_text()) for r in records] + [pypi]))
    assert cli(capsys, "feeds", "import", str(mixed))[0] == 0
    assert status(capsys)["osv:AlmaLinux,PyPI"]["records"] == 6
    alma = work / "alma"
    alma.mkdir()
    for record in records[:2]:
        shutil.copy(record, alma / record.name)
    assert cli(capsys, "feeds", "import", str(alma))[0] == 0
    feeds = status(capsys)
    assert feeds["osv:AlmaLinux"]["records"] == 2
    assert feeds["osv:AlmaLinux,PyPI"]["records"] == 4


def test_a_zip_without_records_is_an_error_and_writes_nothing(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = work / "all.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("README.txt", "no records here")
        zipped.writestr("LICENSE", "MIT")
    code, out, err = cli(capsys, "feeds", "import", str(archive))
    assert code == 2
    assert out == ""
    assert f"error: {archive}: the zip archive holds no .json member (2 other files)" in err
    assert "<ID>.json" in err
    assert status(capsys) == {}


def test_a_file_with_no_records_is_an_error_naming_the_formats(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = work / "records.json"
    empty.write_text("[]")
    code, _, err = cli(capsys, "feeds", "import", str(empty))
    assert code == 2
    error, hint = err.splitlines()
    assert error == (
        f"error: {empty}: found no records to import in this osv content; nothing was imported"
    )
    assert hint.startswith("hint: expected OSV records")
    assert "EPSS" in hint
    epss = work / "epss.csv"
    epss.write_text(
        "#model_version:v2023.03.01,score_date:2025-02-20T00:00:00+0000\ncve,epss,percentile\n"
    )
    code, _, err = cli(capsys, "feeds", "import", "--format", "epss", str(epss))
    assert code == 2
    assert "found no records to import" in err
    assert "hint: expected records of the 'epss' format" in err
    assert status(capsys) == {}


HOSTILE = "root:x:0:0:root:/root:/bin/bash [bold]x[/] :thumbs_up:"


def test_file_content_in_errors_is_printed_as_written(
    work: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(capsys, "feeds", "import", "/etc/passwd")
    assert code == 2
    assert "unrecognised feed format (starts with 'root:x:0:0:" in err
    assert "❌" not in err
    odd = work / "notes.txt"
    odd.write_text("x [bold]x[/] :thumbs_up: root:x:0:0\n")
    code, _, err = cli(capsys, "feeds", "import", str(odd))
    assert code == 2
    assert "(starts with 'x [bold]x[/] :thumbs_up: root:x:0:0\\n')" in err
    assert "👍" not in err


def test_feed_text_on_stdout_is_printed_as_written(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = work / "root:x:0:0 [bold]x :thumbs_up:"
    folder.mkdir()
    record = {
        "id": "TEST-MARKUP-1",
        "modified": "2026-01-01T00:00:00Z",
        "summary": HOSTILE,
        "affected": [{"package": {"ecosystem": "PyPI", "name": "demo"}, "versions": ["1.0"]}],
    }
    (folder / "TEST-MARKUP-1.json").write_text(json.dumps(record))
    code, out, _ = cli(capsys, "feeds", "import", str(folder))
    assert code == 0
    assert f"from {folder}:" in out
    code, out, _ = cli(capsys, "explain", "TEST-MARKUP-1")
    assert code == 0
    assert HOSTILE in out
    monkeypatch.setenv("COLUMNS", "300")  # the table row unfolded
    code, out, _ = cli(capsys, "feeds", "status")
    assert f"│ {folder} " in out
    assert "👍" not in out
