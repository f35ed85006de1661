"""patchwarden-agent.pyz: what it holds, that it runs on a bare interpreter (``-I -S``:
no site-packages, so any third-party import would fail) — on Python 3.9 too when one is
installed — and how much memory a real cycle against the real server takes."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from patchwarden.agent.build import ALLOWED_CORE, build_pyz, pyz_members
from patchwarden.collect.jsonfmt import inventory_from_json
from tests.agent.conftest import LiveServer, TokenFactory, sqlite_copy
from tests.support import MEMORY_PROBE

RSS_TARGET_KIB = 30 * 1024


def find_python39() -> str | None:
    """A real Python 3.9 interpreter, if this machine has one (pyenv or PATH)."""
    candidates = [os.environ.get("PATCHWARDEN_TEST_PYTHON39", "")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3.9")))
    candidates += [shutil.which("python3.9") or ""]
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-I", "-S", "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 9)":
            return candidate
    return None


def system_python() -> str:
    """The interpreter the systemd unit uses, else this one."""
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@pytest.fixture(scope="module")
def pyz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pyz(tmp_path_factory.mktemp("pyz") / "patchwarden-agent.pyz")


def run_pyz(
    python: str, pyz: Path, *args: str, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [python, "-I", "-S", str(pyz), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        **kwargs,
    )


def test_the_archive_holds_only_the_agent_and_what_it_imports(pyz: Path, tmp_path: Path) -> None:
    assert pyz.read_bytes().startswith(b"#!/usr/bin/env python3\n")
    assert os.access(pyz, os.X_OK)
    with zipfile.ZipFile(pyz) as archive:
        names = set(archive.namelist())
        assert archive.read("patchwarden/__init__.py").count(b"\n") == 1
    src = Path(__file__).parents[2] / "src"
    agent_sources = {
        path.relative_to(src).as_posix() for path in (src / "patchwarden/agent").rglob("*.py")
    }
    assert agent_sources <= names
    assert {"__main__.py", "patchwarden/__init__.py", "patchwarden/core/__init__.py"} <= names
    core = {name for name in names if name.startswith("patchwarden/core/")}
    assert core <= {"patchwarden/core/__init__.py"} | {
        f"patchwarden/core/{module}.py" for module in ALLOWED_CORE
    }
    assert "patchwarden/collect/local.py" in names
    others = names - agent_sources - core - {"__main__.py", "patchwarden/__init__.py"}
    assert all(name.startswith("patchwarden/collect/") for name in others), others
    assert set(pyz_members()) == names
    # Reproducible: the same sources give the same bytes.
    assert build_pyz(tmp_path / "again.pyz").read_bytes() == pyz.read_bytes()


def test_the_build_script_makes_the_same_archive(pyz: Path, tmp_path: Path) -> None:
    script = Path(__file__).parents[2] / "scripts" / "build-agent"
    output = tmp_path / "dist" / "patchwarden-agent.pyz"
    built = subprocess.run(
        [str(script), str(output)], capture_output=True, text=True, check=False, timeout=120
    )
    assert built.returncode == 0, built.stderr
    assert "sha256" in built.stdout
    assert output.read_bytes() == pyz.read_bytes()


@pytest.mark.parametrize("version", ["system", "3.9"])
def test_the_archive_runs_on_a_bare_interpreter(pyz: Path, tmp_path: Path, version: str) -> None:
    python = system_python() if version == "system" else find_python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter here (set PATCHWARDEN_TEST_PYTHON39)")
    isolated = subprocess.run([python, "-I", "-S", "-c", "import sqlalchemy"], check=False)
    assert isolated.returncode != 0, "the isolation must hide third-party packages"

    state = str(tmp_path / "state")
    status = run_pyz(python, pyz, "--state-dir", state, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["enrolled"] is False

    inventory = run_pyz(python, pyz, "--state-dir", state, "inventory", "--json")
    assert inventory.returncode == 0, inventory.stderr
    document = inventory_from_json(json.loads(inventory.stdout))
    assert document.source == "agent"
    assert document.packages, "this host's package database should not be empty"

    not_enrolled = run_pyz(python, pyz, "--state-dir", state, "run", "--once")
    assert not_enrolled.returncode == 78
    assert "not enrolled" in not_enrolled.stderr

    rebuilt = run_pyz(python, pyz, "build-pyz", str(tmp_path / "rebuilt.pyz"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (tmp_path / "rebuilt.pyz").read_bytes() == pyz.read_bytes()


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """Memory and process handling do not depend on the database: SQLite only."""
    return sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture
def enrolled_state(pyz: Path, server: LiveServer, make_token: TokenFactory, tmp_path: Path) -> str:
    state = str(tmp_path / "pyz-state")
    enrolled = run_pyz(
        system_python(),
        pyz,
        "--state-dir",
        state,
        "enroll",
        "-",
        "--server",
        server.url,
        input=make_token() + "\n",
    )
    assert enrolled.returncode == 0, enrolled.stderr
    return state


def test_one_real_cycle_stays_under_the_memory_target(
    pyz: Path, enrolled_state: str, capsys: pytest.CaptureFixture[str]
) -> None:
    command = [system_python(), "-I", "-S", "-c", MEMORY_PROBE, str(pyz)]
    command += ["--state-dir", enrolled_state, "run", "--once", "--json"]
    measured = subprocess.run(command, capture_output=True, text=True, check=False, timeout=120)
    assert measured.returncode == 0, measured.stderr
    result = json.loads(measured.stdout)
    assert (result["checked_in"], result["uploaded"]) == (True, True)
    [line] = [line for line in measured.stderr.splitlines() if line.startswith("MEMORY ")]
    rss_kib, peak_kib = (int(value) for value in line.split()[1:])
    with capsys.disabled():
        print(
            f"\nagent cycle (this host's real inventory): VmRSS {rss_kib} KiB, VmHWM {peak_kib} KiB"
        )
    assert peak_kib < RSS_TARGET_KIB


def test_the_service_loop_stops_cleanly_on_sigterm(pyz: Path, enrolled_state: str) -> None:
    state_file = Path(enrolled_state) / "state.json"
    process = subprocess.Popen(
        [system_python(), "-I", "-S", str(pyz), "--state-dir", enrolled_state, "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if json.loads(state_file.read_text()).get("last_checkin_at"):
                break
            time.sleep(0.2)
        else:
            pytest.fail("the agent never checked in")
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "checked in" in err


def test_enroll_and_a_full_cycle_on_python_39(
    pyz: Path, server: LiveServer, make_token: TokenFactory, tmp_path: Path
) -> None:
    python = find_python39()
    if python is None:
        pytest.skip("no Python 3.9 interpreter here (set PATCHWARDEN_TEST_PYTHON39)")
    state = str(tmp_path / "state39")
    enrolled = run_pyz(
        python, pyz, "--state-dir", state, "enroll", "-", "--server", server.url,
        input=make_token(),
    )  # fmt: skip
    assert enrolled.returncode == 0, enrolled.stderr
    cycle = run_pyz(python, pyz, "--state-dir", state, "run", "--once", "--json")
    assert cycle.returncode == 0, cycle.stderr
    result = json.loads(cycle.stdout)
    assert (result["checked_in"], result["uploaded"], result["spooled"]) == (True, True, 0)
    again = json.loads(run_pyz(python, pyz, "--state-dir", state, "run", "--once", "--json").stdout)
    assert (again["checked_in"], again["uploaded"]) == (True, False)
