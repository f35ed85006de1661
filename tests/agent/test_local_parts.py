"""The agent's local parts on the real filesystem: configuration file, state directory,
spool, jitter and the command line without a server."""

from __future__ import annotations

import io
import json
import logging
import os
import random
import stat
from pathlib import Path

import pytest

from patchwarden.agent import cli, runner
from patchwarden.agent.config import AgentConfig, check_server_url
from patchwarden.agent.spool import MAX_REJECTED, Spool, SpoolCorrupt
from patchwarden.agent.state import AgentState, StateDir
from patchwarden.core.errors import ConfigError

EXAMPLE = Path(__file__).parents[2] / "packaging" / "agent.conf.example"


# ----------------------------------------------------------------------- configuration


def test_the_documented_example_configuration_loads_with_the_defaults() -> None:
    config = AgentConfig.load(EXAMPLE)
    defaults = AgentConfig()
    assert config.server_url == "https://patchwarden.example.org"
    assert config.replace(server_url="") == defaults
    # Every key the loader knows appears in the example, so none goes undocumented.
    text = EXAMPLE.read_text()
    for field in AgentConfig.__dataclass_fields__:
        assert f"\n{field} =" in text or f"\n# {field} =" in text, field


def test_configuration_values_paths_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "agent.conf"
    path.write_text(
        "[agent]\nserver_url = http://127.0.0.1:8080/\nstate_dir = state\ninterval = 60\n"
        "jitter = 0.2\ninclude_python = yes\nca_file =\nspool_max_bytes = 1_048_576\n"
    )
    config = AgentConfig.load(path, state_dir=None, interval=120)
    assert config.state_dir == tmp_path / "state"
    assert (config.interval, config.jitter, config.include_python) == (120, 0.2, True)
    assert (config.ca_file, config.spool_max_bytes) == (None, 1 << 20)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[agent]\nintervall = 60\n", "unknown key 'intervall'"),
        ("[agent]\ninterval = 5\n", "interval must be 10-86400"),
        ("[agent]\ninterval = often\n", "interval = 'often'"),
        ("[agent]\ninclude_python = maybe\n", "expected true or false"),
        ("[agent]\n[extra]\n", "unknown section"),
        ("[other]\n", "no [agent] section"),
        ("[agent]\nserver_url = http://patchwarden.example.org\n", "clear-text http"),
    ],
)
def test_configuration_mistakes_are_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "agent.conf"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(")):
        AgentConfig.load(path)


def test_a_missing_configuration_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist") as missing:
        AgentConfig.load(tmp_path / "nope.conf")
    assert "agent.conf.example" in str(missing.value)


@pytest.mark.parametrize(
    "url", ["https://pw.example.org", "http://127.0.0.1:8000", "http://localhost", "http://[::1]"]
)
def test_server_urls_that_are_accepted(url: str) -> None:
    assert check_server_url(url + "/", allow_insecure_http=False) == url


@pytest.mark.parametrize(
    "url", ["http://pw.example.org", "ftp://pw.example.org", "https://", "https://h/?a=1"]
)
def test_server_urls_that_are_refused(url: str) -> None:
    with pytest.raises(ConfigError):
        check_server_url(url, allow_insecure_http=False)


def test_clear_text_http_is_allowed_only_when_configured() -> None:
    url = "http://pw.internal:8000"
    assert check_server_url(url, allow_insecure_http=True) == url
    assert AgentConfig(server_url=url, allow_insecure_http=True).server_url == url


# ----------------------------------------------------------------------------- state


def test_state_directory_files_are_private_and_atomic(tmp_path: Path) -> None:
    folder = tmp_path / "state"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)  # noqa: S103 - a too open folder the agent must tighten
    state_dir = StateDir(folder)
    state_dir.write_credential("pwa_1_secret")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(state_dir.credential_path.stat().st_mode) == 0o600
    assert state_dir.read_credential() == "pwa_1_secret"

    state_dir.save(AgentState(server_url="https://pw", asset_id=7, failures=2))
    assert stat.S_IMODE(state_dir.state_path.stat().st_mode) == 0o600
    assert state_dir.load() == AgentState(server_url="https://pw", asset_id=7, failures=2)
    assert sorted(p.name for p in folder.iterdir()) == ["credential", "state.json"]


def test_state_from_another_version_or_damaged_is_read_safely(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dir = StateDir(tmp_path)
    state_dir.state_path.write_text(json.dumps({"asset_id": "7", "failures": 3, "future": 1}))
    assert state_dir.load() == AgentState(failures=3)
    state_dir.state_path.write_text("{torn")
    assert state_dir.load() == AgentState()
    assert "ignoring unreadable agent state" in caplog.text


# ----------------------------------------------------------------------------- spool


def test_spool_keeps_reports_in_order_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    first = spool.add("result", "POST", "/a", b"one", content_hash="h1")
    second = spool.add("inventory", "PUT", "/b", b"\x1f\x8b two", content_encoding="gzip")
    assert spool.pending() == [first.name, second.name]
    again = spool.read(second.name)
    assert (again.kind, again.method, again.path, again.body) == (
        "inventory",
        "PUT",
        "/b",
        b"\x1f\x8b two",
    )
    assert again.content_encoding == "gzip"
    assert spool.holds("result", "h1")
    assert not spool.holds("inventory", "h1")
    assert stat.S_IMODE((spool.path / first.name).stat().st_mode) == 0o600
    assert not [p for p in spool.path.iterdir() if p.name.startswith(".")]
    spool.remove(first.name)
    assert spool.pending() == [second.name]


def test_a_new_inventory_supersedes_undelivered_ones_but_not_other_reports(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    old = spool.add("inventory", "PUT", "/i", b"old", supersede=True)
    result = spool.add("result", "POST", "/r", b"result")
    new = spool.add("inventory", "PUT", "/i", b"new", supersede=True)
    assert spool.pending() == [result.name, new.name]
    assert old.name not in spool.pending()


def test_a_full_spool_drops_the_oldest_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path, max_reports=3, max_bytes=10_000)
    names = [spool.add("result", "POST", "/r", b"x" * 10).name for _ in range(5)]
    assert spool.pending() == names[2:]
    assert caplog.text.count("dropping the oldest report") == 2

    small = Spool(tmp_path / "small", max_reports=100, max_bytes=2_500)
    kept = [small.add("result", "POST", "/r", b"y" * 1000).name for _ in range(3)]
    assert small.pending() == kept[1:]
    assert small.size() <= 2_500


def test_rejected_reports_keep_the_reason_and_are_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    names = [spool.add("result", "POST", "/r", b"bad").name for _ in range(MAX_REJECTED + 2)]
    for name in names:
        spool.reject(name, {"status": 422, "error": "no"})
    assert spool.pending() == []
    assert spool.rejected() == names[2:]
    reason = json.loads((spool.rejected_path / names[-1]).with_suffix(".json").read_text())
    assert (reason["status"], reason["error"]) == (422, "no")
    assert "rejected_at" in reason
    assert len(list(spool.rejected_path.glob("*.json"))) == MAX_REJECTED


def test_a_damaged_spool_file_is_recognised(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    (tmp_path / "00000000000000000001-000000-inventory.report").write_bytes(b"garbage")
    (tmp_path / "00000000000000000002-000000-inventory.report").write_bytes(b"PWSPOOL1\n{\n")
    for name in spool.pending():
        with pytest.raises(SpoolCorrupt):
            spool.read(name)


# ----------------------------------------------------------------------- cycle timing


def test_jitter_spreads_within_the_fraction_and_never_below_the_floor() -> None:
    rng = random.Random(7)
    waits = [runner.jittered(300, 0.1, rng) for _ in range(1000)]
    assert 270 <= min(waits) < 280
    assert 320 < max(waits) <= 330
    assert runner.jittered(1, 0.1, rng) == runner.MIN_INTERVAL


# -------------------------------------------------------------------------- commands


def test_status_works_before_enrollment_and_never_shows_the_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp_path / "state"
    assert cli.main(["--state-dir", str(state), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert (status["enrolled"], status["protocol"], status["spool"]["reports"]) == (False, 1, 0)

    StateDir(state).write_credential("pwa_3_topsecretvalue")
    StateDir(state).save(AgentState(server_url="http://127.0.0.1:1", asset_id=3))
    assert cli.main(["--state-dir", str(state), "status"]) == 0
    out = capsys.readouterr().out
    assert "enrolled: True" in out
    assert "topsecretvalue" not in out


def test_shared_options_work_after_the_command_as_in_the_systemd_unit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "agent.conf"
    conf.write_text(f"[agent]\nstate_dir = {tmp_path / 'from-file'}\n")
    assert cli.main(["status", "--config", str(conf), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state_dir"] == str(tmp_path / "from-file")
    other = str(tmp_path / "override")
    assert cli.main(["--config", str(conf), "status", "--state-dir", other, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["state_dir"] == other


def test_commands_exit_with_codes_a_supervisor_can_act_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = str(tmp_path / "state")
    assert cli.main(["--state-dir", state, "run", "--once"]) == cli.EXIT_CONFIG
    assert "not enrolled" in capsys.readouterr().err
    assert cli.main(["--config", str(tmp_path / "missing.conf"), "status"]) == cli.EXIT_CONFIG
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert cli.main(["--state-dir", state, "enroll", "-", "--server", "http://127.0.0.1:1"]) == 78
    assert "no enrollment token" in capsys.readouterr().err


def test_an_unreachable_server_leaves_the_inventory_in_the_spool(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text("ID=alpine\nVERSION_ID=3.20.3\n")
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").write_text("P:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n\n")
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    config = AgentConfig(
        server_url="http://127.0.0.1:1", state_dir=tmp_path / "s", collect_root=root
    )
    StateDir(config.state_dir).write_credential("pwa_1_x")
    caplog.set_level(logging.INFO, logger="patchwarden.agent")
    result = runner.Agent(config).run_once()
    assert (result.checked_in, result.spooled) == (False, 1)
    assert "retry in" in caplog.text
    assert runner.Agent(config).status()["last_error"] == result.error
