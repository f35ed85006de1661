"""The project's own tooling: what a user sees on stderr, the lock file, the data notice."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.support import REPO_ROOT


def _run(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"PYTHONWARNINGS"}}
    clean.pop("PATCHWARDEN_DEBUG", None)
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**clean, **(env or {})},
        cwd=REPO_ROOT,
    )


def test_help_prints_nothing_on_stderr() -> None:
    # The installed console script and ``python -m patchwarden`` share one entry point.
    script = Path(sys.executable).parent / "patchwarden"
    for argv in ([str(script), "--help"], [sys.executable, "-m", "patchwarden", "--help"]):
        result = _run(*argv)
        assert result.returncode == 0, result.stderr
        assert "Usage" in result.stdout
        assert result.stderr == "", f"{argv[0]} printed on stderr: {result.stderr}"


def test_failing_command_prints_one_line_and_no_library_warning(tmp_path: Path) -> None:
    result = _run(
        sys.executable,
        "-m",
        "patchwarden",
        "explain",
        "CVE-0000-0000",
        env={"PATCHWARDEN_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"},
    )
    assert result.returncode == 2
    assert "Warning" not in result.stderr
    assert result.stderr.startswith("error:")


def test_every_module_imports_with_warnings_as_errors() -> None:
    # asyncssh warns at import time (cryptography's DSA deprecation); that one warning is
    # silenced where we import it, so importing everything under -W error works.
    result = _run(
        sys.executable,
        "-W",
        "error",
        "-c",
        "import patchwarden.collect.ssh, patchwarden.cli.main, patchwarden.server.main",
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def _names(requirements: list[str]) -> set[str]:
    return {
        re.split(r"[\s<>=!~;\[]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements
    }


def test_lock_file_pins_every_declared_dependency() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"]) | _names(project["optional-dependencies"]["dev"])
    lock = tomllib.loads((REPO_ROOT / "uv.lock").read_text())
    locked = {p["name"] for p in lock["package"]}
    assert declared - locked == set()


def test_missing_real_data_is_counted_in_one_line(tmp_path: Path) -> None:
    result = _run(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/feeds/test_parse_kev.py",
        env={"PATCHWARDEN_TEST_DATA": str(tmp_path / "absent")},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = [line for line in result.stdout.splitlines() if "tests skipped: the real" in line]
    assert len(lines) == 1, result.stdout
    assert re.match(r"\d+ tests skipped: the real test data was not found under ", lines[0])
    assert "PATCHWARDEN_TEST_DATA=" in lines[0]
