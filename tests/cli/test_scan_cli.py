"""The CLI as a user runs it: scan, explain, feeds, errors and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from patchwarden.cli.main import run
from tests.support import data_file

ALMA_INVENTORY = "rpm-inventories/go-rpmdb_Rockylinux9WithSQLite3.rpm-qa.txt"


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_scan_inventory_file_json_shape(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    alma = data_file("osv-almalinux/advisories/almalinux9")
    kev = data_file("cisa-kev/known_exploited_vulnerabilities.json")
    code, out, _ = cli(capsys, "feeds", "import", str(alma), str(kev), "--json")
    assert code == 0
    imported = json.loads(out)
    assert {f["kind"] for f in imported["files"]} == {"osv", "kev"}

    inventory = data_file(ALMA_INVENTORY)
    code, out, _ = cli(
        capsys,
        "scan",
        "--inventory",
        str(inventory),
        "--ecosystem",
        "AlmaLinux:9",
        "--hostname",
        "rocky9",
        "--criticality",
        "5",
        "--exposure",
        "internet",
        "--format",
        "json",
    )
    assert code == 0
    report = json.loads(out)
    assert set(report) >= {"findings", "remediation", "unfixed", "host", "summary"}
    assert report["host"]["hostname"] == "rocky9"
    assert report["host"]["criticality"] == 5
    assert report["findings"], "the real Rocky 9 inventory has known-vulnerable packages"
    required = {
        "package",
        "installed_version",
        "advisory_id",
        "aliases",
        "fixed_version",
        "risk_score",
        "priority",
        "due_date",
        "why",
    }
    for finding in report["findings"]:
        assert required <= set(finding)
        assert finding["priority"] in {"P1", "P2", "P3", "P4"}
        assert finding["why"]
    glibc = [f for f in report["findings"] if f["package"] == "glibc"]
    assert glibc, "glibc 2.34-83.el9.7 predates several ALSA fixes"
    assert all(f["installed_version"] == "2.34-83.el9.7" for f in glibc)
    scores = [f["risk_score"] for f in report["findings"]]
    assert scores == sorted(scores, reverse=True)
    upgrade_targets = {u["package"]: u["target_version"] for u in report["remediation"]}
    assert "glibc" in upgrade_targets


def test_scan_fail_on_sets_the_exit_code(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    cli(capsys, "feeds", "import", str(data_file("osv-almalinux/advisories/almalinux9")))
    inventory = str(data_file(ALMA_INVENTORY))
    args = ["scan", "-i", inventory, "-e", "AlmaLinux:9", "--hostname", "h", "-f", "csv"]
    code, out, _ = cli(capsys, *args, "--fail-on", "P4")
    assert code == 1
    assert out.startswith("priority,risk_score,due_date,package")
    code, _, _ = cli(capsys, *args, "--fail-on", "P1", "--criticality", "1")
    assert code == 0  # no P1 on a low-criticality internal host without KEV/EPSS


def test_scan_on_an_empty_database_says_nothing_was_checked(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = str(data_file(ALMA_INVENTORY))
    code, out, err = cli(capsys, "scan", "-i", inventory, "-e", "AlmaLinux:9", "--hostname", "t")
    assert code == 0
    assert "Not checked: no loaded advisory covers AlmaLinux:9" in out
    assert "patchwarden feeds sync --ecosystem AlmaLinux:9" in out
    assert "No open findings" not in out
    assert err == ""


DEBIAN_STATUS = "local-dpkg/var_lib_dpkg_status"  # a real Debian 12 host


def test_scan_says_when_no_loaded_advisory_covers_the_host(
    cli_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Only the 2023 DSA list (releases up to Debian 11) is loaded: a Debian 12 host
    is not clean, it was not checked; an advisory for plain Debian covers it."""
    assert (
        cli(capsys, "feeds", "import", str(data_file("debian-security-tracker/DSA_list.txt")))[0]
        == 0
    )
    scan = ["scan", "-i", str(data_file(DEBIAN_STATUS)), "-e", "Debian:12", "--hostname", "b"]
    code, out, _ = cli(capsys, *scan)
    assert code == 0
    notice = next(line for line in out.splitlines() if line.startswith("Not checked"))
    assert notice.startswith("Not checked: no loaded advisory covers Debian:12 (743 packages)")
    assert "patchwarden feeds sync --ecosystem Debian:12" in notice
    assert "No open findings" not in out
    code, out, err = cli(capsys, *scan, "--format", "json")
    report = json.loads(out)
    assert report["coverage"] == [
        {
            "ecosystem": "Debian:12",
            "packages": 743,
            "covered": False,
            "hint": "load one with: patchwarden feeds sync --ecosystem Debian:12 "
            "(or patchwarden feeds import an OSV file for it)",
        }
    ]
    assert "Not checked" in err  # also said to whoever reads the terminal

    every_release = tmp_path / "debian.json"
    every_release.write_text(
        json.dumps(
            {
                "id": "DEBIAN-TEST-1",
                "modified": "2026-01-01T00:00:00Z",
                "affected": [
                    {
                        "package": {"ecosystem": "Debian", "name": "no-such-package"},
                        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}]}],
                    }
                ],
            }
        )
    )
    assert cli(capsys, "feeds", "import", str(every_release))[0] == 0
    code, out, err = cli(capsys, *scan)
    assert "Not checked" not in out
    assert "No open findings." in out
    code, out, _ = cli(capsys, *scan, "--format", "json")
    assert json.loads(out)["coverage"][0]["covered"] is True


def test_explain_shows_intel_and_affected_hosts(
    cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli(
        capsys,
        "feeds",
        "import",
        str(data_file("osv-almalinux/advisories/almalinux9")),
        str(data_file("cisa-kev/known_exploited_vulnerabilities.json")),
    )
    inventory = str(data_file(ALMA_INVENTORY))
    code, out, _ = cli(
        capsys, "scan", "-i", inventory, "-e", "AlmaLinux:9", "--hostname", "r9", "-f", "json"
    )
    finding = json.loads(out)["findings"][0]
    code, out, _ = cli(capsys, "explain", finding["advisory_id"], "--json")
    assert code == 0
    explained = json.loads(out)
    assert explained["advisories"][0]["id"] == finding["advisory_id"]
    assert any(h["hostname"] == "r9" for h in explained["hosts"])
    assert explained["hosts"][0]["risk_factors"]
    # A KEV CVE with no advisory still explains from intel alone.
    code, out, _ = cli(capsys, "explain", "CVE-2021-44228")
    assert code == 0
    assert "CISA KEV" in out


def test_user_errors_print_one_line_and_exit_2(
    cli_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = cli(capsys, "explain", "CVE-0000-0000")
    assert code == 2
    assert "nothing known about" in err
    assert "Traceback" not in err
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    code, _, err = cli(capsys, "scan", "-i", str(empty))
    assert code == 2
    assert "Traceback" not in err
    code, _, err = cli(capsys, "scan", "-i", str(data_file(ALMA_INVENTORY)), "-e", "Plan9")
    assert code == 2
    assert "unsupported ecosystem" in err
    broken = tmp_path / "broken.json"
    broken.write_text('{"id": "X-1", "modified": "yesterday"}')
    code, _, err = cli(capsys, "feeds", "import", str(broken))
    assert code == 2
    assert "broken.json" in err


def test_feeds_status_json(cli_env: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "feeds", "status", "--json")
    assert code == 0
    assert json.loads(out)["feeds"] == []
    epss = data_file("vunnel-fixtures/tests/unit/providers/epss/test-fixtures/example-1.csv")
    cli(capsys, "feeds", "import", str(epss))
    code, out, _ = cli(capsys, "feeds", "status", "--json")
    status = json.loads(out)
    (feed,) = status["feeds"]
    assert feed["feed"] == "epss"
    assert feed["records"] == status["totals"]["cves_with_epss"] > 0
    assert feed["age_seconds"] is not None
    code, out, _ = cli(capsys, "feeds", "status")
    assert "epss" in out


def test_scan_this_host_with_a_local_advisory_file(
    cli_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """No --inventory: the local collector reads this machine (a Debian host in CI)."""
    import shutil
    import subprocess

    if shutil.which("dpkg-query") is None:
        pytest.skip("this host has no dpkg: the local scan test needs a Debian/Ubuntu host")
    version = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", "bash"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    release = Path("/etc/os-release").read_text()
    if "ID=debian" not in release:
        pytest.skip("the advisory below is written for Debian hosts")
    version_id = next(
        line.split("=", 1)[1].strip('"')
        for line in release.splitlines()
        if line.startswith("VERSION_ID=")
    )
    advisory = tmp_path / "local.json"
    advisory.write_text(
        json.dumps(
            {
                "id": "TEST-LOCAL-1",
                "modified": "2026-01-01T00:00:00Z",
                "summary": "a test advisory for this host's bash",
                "affected": [
                    {
                        "package": {"ecosystem": f"Debian:{version_id}", "name": "bash"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "0"}, {"fixed": f"{version}+test1"}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    assert cli(capsys, "feeds", "import", str(advisory))[0] == 0
    code, out, _ = cli(capsys, "scan", "--format", "json", "--hostname", "this-host")
    assert code == 0
    report = json.loads(out)
    assert report["host"]["ecosystem"] == f"Debian:{version_id}"
    assert report["host"]["packages"] > 100
    (finding,) = [f for f in report["findings"] if f["advisory_id"] == "TEST-LOCAL-1"]
    assert finding["installed_version"] == version
    assert finding["fixed_version"] == f"{version}+test1"


def test_scan_orders_non_canonical_versions_and_reports_unorderable_ones(
    cli_env: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A version outside apk's grammar is matched by its range; one no rule can order is
    matched only by an explicit list, and the report says which and why."""
    advisory = tmp_path / "alpine.json"
    advisory.write_text(
        json.dumps(
            {
                "id": "TEST-APK-1",
                "modified": "2026-01-01T00:00:00Z",
                "affected": [
                    {
                        "package": {"ecosystem": "Alpine:v3.20", "name": name},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "0"}, {"fixed": fixed}],
                            }
                        ],
                        "versions": listed,
                    }
                    for name, fixed, listed in (
                        ("opensmtpd", "6.6.2p1-r0", []),  # as in the real secdb
                        ("musl", "1.2.4-r1", ["snapshot"]),
                        ("busybox", "1.36.1-r2", []),
                    )
                ],
            }
        )
    )
    assert cli(capsys, "feeds", "import", str(advisory))[0] == 0
    installed = tmp_path / "installed"
    installed.write_text(
        "P:opensmtpd\nV:6.6.1p1-r0\nA:x86_64\n\n"
        "P:musl\nV:snapshot\nA:x86_64\n\n"
        "P:busybox\nV:~dev\nA:x86_64\n\n"
    )
    code, out, _ = cli(
        capsys,
        "scan",
        "--inventory",
        str(installed),
        "--ecosystem",
        "Alpine:v3.20",
        "--hostname",
        "alpine1",
        "--format",
        "json",
    )
    assert code == 0
    report = json.loads(out)
    found = {f["package"]: f for f in report["findings"]}
    assert set(found) == {"opensmtpd", "musl"}
    assert (
        "opensmtpd 6.6.1p1-r0 is in [introduced 0, fixed 6.6.2p1-r0)" in found["opensmtpd"]["why"]
    )
    assert "listed as an affected version" in found["musl"]["why"]
    assert "cannot be ordered (does not start with a digit)" in found["musl"]["why"]
    unorderable = [p for p in report["problems"] if "cannot be ordered" in p]
    assert len(unorderable) == 2
    assert any("busybox '~dev' (Alpine:v3.20)" in p and "TEST-APK-1" in p for p in unorderable)
    assert any("musl 'snapshot' (Alpine:v3.20)" in p for p in unorderable)
