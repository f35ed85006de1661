"""``patchwarden agent …`` and the ``patchwarden-agent`` console script, run as the
installed commands of the virtual environment: the same agent CLI as the .pyz, with its
options, output and exit codes."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
COMMANDS = {
    "patchwarden-agent": [str(BIN / "patchwarden-agent")],
    "patchwarden agent": [str(BIN / "patchwarden"), "agent"],
}
AGENT_COMMANDS = ("run", "enroll", "status", "inventory", "build-pyz")


def run(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("name", COMMANDS)
def test_help_lists_every_agent_command(name: str) -> None:
    shown = run(COMMANDS[name], "--help")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"usage: {name} ")
    for command in AGENT_COMMANDS:
        assert command in shown.stdout


def test_patchwarden_lists_the_agent_command() -> None:
    shown = run([str(BIN / "patchwarden")], "--help")
    assert shown.returncode == 0
    assert "agent" in shown.stdout


def test_both_commands_report_the_same_status_and_exit_codes(tmp_path: Path) -> None:
    state = str(tmp_path / "state")
    statuses = []
    for command in COMMANDS.values():
        status = run(command, "--state-dir", state, "status", "--json")
        assert status.returncode == 0, status.stderr
        statuses.append(json.loads(status.stdout))
    assert statuses[0] == statuses[1]
    assert (statuses[0]["enrolled"], statuses[0]["state_dir"]) == (False, state)

    for name, command in COMMANDS.items():
        not_enrolled = run(command, "--state-dir", state, "run", "--once")
        assert not_enrolled.returncode == 78  # the agent's own code, passed through
        assert not_enrolled.stderr.startswith(f"{name}: error: this agent is not enrolled")
        bad = run(command, "no-such-command")
        assert bad.returncode == 2
        assert "invalid choice: 'no-such-command'" in bad.stderr


def test_both_commands_build_the_same_working_pyz(tmp_path: Path) -> None:
    built = {}
    for name, command in COMMANDS.items():
        output = tmp_path / name.replace(" ", "-") / "patchwarden-agent.pyz"
        result = run(command, "build-pyz", str(output))
        assert result.returncode == 0, result.stderr
        digest = hashlib.sha256(output.read_bytes()).hexdigest()
        assert result.stdout.split()[-1] == digest
        built[name] = output
    pyz = built["patchwarden agent"]
    assert pyz.read_bytes() == built["patchwarden-agent"].read_bytes()  # reproducible

    # The archive runs on a bare interpreter: no site-packages, no patchwarden installed.
    status = run(
        [sys.executable, "-I", "-S", str(pyz)], "--state-dir", str(tmp_path / "s"), "status"
    )
    assert status.returncode == 0, status.stderr
    assert "enrolled: False" in status.stdout
