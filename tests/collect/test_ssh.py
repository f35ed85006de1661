"""Agentless collection against a real OpenSSH server started by the tests.

Each sshd listens on 127.0.0.1 on a free port with its own host key, a user key in a
temporary authorized_keys file and a known_hosts file written by the test; the client
logs in as the current user (root on the test machine) to this very host, so what SSH
collects must equal what ``dpkg-query`` shows locally. Some tests start an sshd whose
sessions get a PATH with stand-in tools first (``SetEnv``): to provoke a slow command or
a sudo that wants a password, which the real tools here cannot be made to do, and to
present an rpm or Alpine host (os-release and package output recorded from real
systems) to the same SSH code path on this Debian machine.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from sqlalchemy import select

from patchwarden.collect.apk import parse_apk_installed
from patchwarden.collect.local import KERNEL_QF, collect_local
from patchwarden.collect.osrelease import parse_os_release
from patchwarden.collect.rpm import RPM_QF_FORMAT, parse_rpm_qf
from patchwarden.collect.ssh import SshResult, SshTarget, collect_many, collect_ssh
from patchwarden.core.errors import InventoryError
from patchwarden.store.db import open_database
from patchwarden.store.inventory import asset_packages
from patchwarden.store.models import AssetRow
from tests.collect.test_cmdb import run_fleet_cli
from tests.support import data_file

SSHD = Path("/usr/sbin/sshd")

pytestmark = [
    pytest.mark.skipif(not SSHD.exists(), reason="OpenSSH server (/usr/sbin/sshd) not installed"),
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed"),
    pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a dpkg system"),
    pytest.mark.timeout(120),
]


@dataclass(frozen=True)
class Sshd:
    """A running test sshd and what a client needs to reach it."""

    port: int
    user_key: Path
    known_hosts: Path
    host_pub: str
    workdir: Path

    def target(self, **changes: object) -> SshTarget:
        base = SshTarget(
            host="127.0.0.1",
            known_hosts=self.known_hosts,
            port=self.port,
            username=getpass.getuser(),
            key_files=(self.user_key,),
            connect_timeout=10,
        )
        return replace(base, **changes)  # type: ignore[arg-type]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", str(path)], check=True
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def ensure_privsep_dir() -> None:
    privsep = Path("/run/sshd")
    if privsep.is_dir():
        return
    if os.geteuid() != 0:
        pytest.skip("sshd needs /run/sshd, which only root can create")
    privsep.mkdir(mode=0o755)


@contextmanager
def running_sshd(workdir: Path, *, path_dir: Path | None = None) -> Iterator[Sshd]:
    """Start sshd on a free 127.0.0.1 port; ``path_dir`` goes first on the session PATH."""
    ensure_privsep_dir()
    workdir.mkdir(parents=True, exist_ok=True)
    host_pub = keygen(workdir / "host_key")
    user_pub = keygen(workdir / "user_key")
    (workdir / "authorized_keys").write_text(user_pub + "\n")
    port = free_port()
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    lines = [
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {workdir / 'host_key'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        f"PidFile {workdir / 'sshd.pid'}",
        "StrictModes no",
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
    ]
    if path_dir is not None:
        lines.append(f"SetEnv PATH={path_dir}:/usr/bin:/bin:/usr/sbin:/sbin")
    config = workdir / "sshd_config"
    config.write_text("\n".join(lines) + "\n")
    log = (workdir / "sshd.log").open("wb")
    process = subprocess.Popen(
        [str(SSHD), "-D", "-e", "-f", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            if process.poll() is not None:
                pytest.fail(f"sshd exited: {(workdir / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("sshd did not start listening within 15 seconds")
                time.sleep(0.05)
        yield Sshd(port, workdir / "user_key", known_hosts, host_pub, workdir)
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """One plain sshd for the module."""
    with running_sshd(tmp_path_factory.mktemp("sshd")) as server:
        yield server


def tool_dir(tmp_path: Path, **scripts: str) -> Path:
    """A directory of executable stand-in tools (name -> shell script body)."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name, body in scripts.items():
        path = directory / name.replace("_", "-")
        path.write_text("#!/bin/sh\n" + body)
        path.chmod(0o755)
    return directory


def installed_by_dpkg_query() -> set[tuple[str, str, str]]:
    """(name, version, arch) of every installed package, straight from dpkg-query."""
    output = subprocess.run(
        [
            "dpkg-query",
            "-W",
            "-f",
            "${Package}\\t${Version}\\t${Architecture}\\t${db:Status-Abbrev}\\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = set()
    for line in output.splitlines():
        name, version, arch, status = line.split("\t")
        if status[:2] in ("ii", "hi") and status[2:3] != "R":
            installed.add((name, version, arch))
    return installed


# ----------------------------------------------------------------------- collection


def test_collects_the_same_inventory_as_dpkg_query(sshd: Sshd) -> None:
    inventory = asyncio.run(collect_ssh(sshd.target(), timeout=60))

    assert inventory.source == "ssh"
    assert {(p.name, p.version, p.arch) for p in inventory.packages} == installed_by_dpkg_query()
    assert set(inventory.packages) == set(collect_local().packages)
    assert all(p.source_name and p.source_version for p in inventory.packages)
    local_os = parse_os_release(Path("/etc/os-release").read_text())
    assert inventory.os == local_os
    assert inventory.os is not None
    assert inventory.os.family == "debian"
    assert all(p.ecosystem == local_os.ecosystem for p in inventory.packages)
    assert inventory.hostname == socket.gethostname()
    assert inventory.kernel == os.uname().release
    assert inventory.arch == os.uname().machine
    assert inventory.reboot_required == Path("/run/reboot-required").exists()
    assert inventory.collected_at is not None


def test_this_machine_is_debian_12(sshd: Sshd) -> None:
    """The reference machine of the suite: its ecosystem is exactly Debian:12."""
    if parse_os_release(Path("/etc/os-release").read_text()).ecosystem != "Debian:12":
        pytest.skip("not running on Debian 12")
    inventory = asyncio.run(collect_ssh(sshd.target(), timeout=60))
    assert inventory.os is not None
    assert inventory.os.ecosystem == "Debian:12"
    assert {p.ecosystem for p in inventory.packages} == {"Debian:12"}


def test_an_rpm_host_over_ssh(tmp_path: Path) -> None:
    """The rpm branch: package query, kernel query and the newest-kernel reboot rule.

    The machine is Debian, so stand-ins serve an AlmaLinux os-release and replay rpm
    output recorded from real systems; the queries they receive are checked.
    """
    fixtures = Path(__file__).parent / "fixtures"
    os_release = fixtures / "os-release" / "almalinux-9.4"
    packages = fixtures / "rpm" / "qf-edge-cases.tsv"
    log = tmp_path / "rpm.log"
    kernels = "1700000000\\tkernel-core\\t5.14.0\\t427.13.1.el9_4\\tx86_64\\n"
    tools = tool_dir(
        tmp_path,
        cat=f'[ "$1" = /etc/os-release ] && exec /bin/cat {os_release}\nexec /bin/cat "$@"\n',
        rpm=(
            f'printf "%s\\n" "$*" >> {log}\n'
            f'case "$*" in *INSTALLTIME*) printf "{kernels}" ;;\n'
            f"  *) exec /bin/cat {packages} ;;\nesac\n"
        ),
    )
    with running_sshd(tmp_path / "sshd", path_dir=tools) as server:
        inventory = asyncio.run(collect_ssh(server.target(), timeout=60))

    expected = parse_rpm_qf(packages.read_text(), ecosystem="AlmaLinux:9")
    assert inventory.os is not None
    assert (inventory.os.ecosystem, inventory.os.family) == ("AlmaLinux:9", "rpm")
    assert inventory.packages == expected.packages
    # The running kernel (this machine's) is not the newest installed kernel package.
    assert inventory.reboot_required is True
    calls = log.read_text().splitlines()
    assert calls[0] == f"-qa --qf {RPM_QF_FORMAT}"
    assert calls[1].startswith(f"-qa --qf {KERNEL_QF} kernel kernel-core")


def test_an_alpine_host_over_ssh(tmp_path: Path) -> None:
    installed = data_file(
        "syft-fixtures/syft/pkg/cataloger/alpine/testdata/multiple-1/lib/apk/db/installed"
    )
    os_release = Path(__file__).parent / "fixtures" / "os-release" / "alpine-3.20.3"
    tools = tool_dir(
        tmp_path,
        cat=(
            f'[ "$1" = /etc/os-release ] && exec /bin/cat {os_release}\n'
            f'[ "$1" = /lib/apk/db/installed ] && exec /bin/cat {installed}\n'
            'exec /bin/cat "$@"\n'
        ),
    )
    with running_sshd(tmp_path / "sshd", path_dir=tools) as server:
        inventory = asyncio.run(collect_ssh(server.target(), timeout=60))

    expected = parse_apk_installed(installed.read_text(), ecosystem="Alpine:v3.20")
    assert inventory.os is not None
    assert inventory.os.ecosystem == "Alpine:v3.20"
    assert inventory.packages == expected.packages
    assert inventory.packages
    assert inventory.reboot_required is False


# ----------------------------------------------------------------------- host keys


def test_a_changed_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = keygen(tmp_path / "impostor")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")

    with pytest.raises(InventoryError) as caught:
        asyncio.run(collect_ssh(sshd.target(known_hosts=known_hosts), timeout=30))

    message = str(caught.value)
    assert f"127.0.0.1:{sshd.port}" in message
    assert "does NOT match" in message
    assert str(known_hosts) in message


def test_an_unknown_host_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(
        f"[127.0.0.1]:{sshd.port + 1} {sshd.host_pub}\nother.example {sshd.host_pub}\n"
    )

    with pytest.raises(InventoryError) as caught:
        asyncio.run(collect_ssh(sshd.target(known_hosts=known_hosts), timeout=30))

    assert f"127.0.0.1:{sshd.port}: unknown host" in caught.value.message
    assert str(known_hosts) in caught.value.message
    assert caught.value.hint is not None
    assert "ssh-keyscan" in caught.value.hint


def test_an_empty_known_hosts_file_trusts_nothing(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    with pytest.raises(InventoryError, match="unknown host"):
        asyncio.run(collect_ssh(sshd.target(known_hosts=known_hosts), timeout=30))


def test_a_missing_known_hosts_file_is_an_error(sshd: Sshd, tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(InventoryError, match="cannot read known_hosts") as caught:
        asyncio.run(collect_ssh(sshd.target(known_hosts=missing), timeout=30))
    assert str(missing) in str(caught.value)


def test_a_key_not_authorized_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "stranger")
    with pytest.raises(InventoryError, match="authentication refused"):
        asyncio.run(collect_ssh(sshd.target(key_files=(tmp_path / "stranger",)), timeout=30))


def test_an_unreadable_key_file_names_the_file(sshd: Sshd, tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-key"
    bogus.write_text("hello\n")
    with pytest.raises(InventoryError, match="not a usable private key") as caught:
        asyncio.run(collect_ssh(sshd.target(key_files=(bogus,)), timeout=30))
    assert str(bogus) in str(caught.value)


# ----------------------------------------------------------------------------- sudo


@pytest.mark.skipif(shutil.which("sudo") is None, reason="sudo is not installed here")
def test_sudo_collects_the_same_packages(sshd: Sshd) -> None:
    plain = asyncio.run(collect_ssh(sshd.target(), timeout=60))
    elevated = asyncio.run(collect_ssh(sshd.target(sudo=True), timeout=60))
    assert set(elevated.packages) == set(plain.packages)


@pytest.mark.skipif(shutil.which("sudo") is not None, reason="sudo is installed here")
def test_sudo_missing_on_the_host_is_a_clear_error(sshd: Sshd) -> None:
    with pytest.raises(InventoryError, match="sudo is not installed on the host"):
        asyncio.run(collect_ssh(sshd.target(sudo=True), timeout=60))


def test_sudo_runs_non_interactively_with_the_fixed_command(tmp_path: Path) -> None:
    # A stand-in sudo that logs its arguments and runs the command after "-n --".
    log = tmp_path / "sudo.log"
    tools = tool_dir(
        tmp_path,
        sudo=(
            f'printf "%s\\n" "$*" >> {log}\n'
            '[ "$1" = -n ] && [ "$2" = -- ] || exit 99\nshift 2\nexec "$@"\n'
        ),
    )
    with running_sshd(tmp_path / "sshd", path_dir=tools) as server:
        inventory = asyncio.run(collect_ssh(server.target(sudo=True), timeout=60))

    calls = log.read_text().splitlines()
    assert calls, "sudo was never called"
    assert all(call.startswith("-n -- env LC_ALL=C ") for call in calls)
    assert any(" dpkg-query -W -f " in call for call in calls)
    assert {(p.name, p.version, p.arch) for p in inventory.packages} == installed_by_dpkg_query()


def test_sudo_asking_for_a_password_is_an_error_not_a_prompt(tmp_path: Path) -> None:
    tools = tool_dir(tmp_path, sudo='echo "sudo: a password is required" >&2\nexit 1\n')
    with running_sshd(tmp_path / "sshd", path_dir=tools) as server:
        started = time.monotonic()
        with pytest.raises(InventoryError, match="sudo asks for a password") as caught:
            asyncio.run(collect_ssh(server.target(sudo=True), timeout=60))
    assert time.monotonic() - started < 30
    assert caught.value.hint is not None
    assert "NOPASSWD" in caught.value.hint


# ------------------------------------------------------------------------- timeouts


def test_a_hanging_command_hits_the_command_timeout(tmp_path: Path) -> None:
    tools = tool_dir(tmp_path, dpkg_query="exec sleep 60\n")
    with running_sshd(tmp_path / "sshd", path_dir=tools) as server:
        started = time.monotonic()
        with pytest.raises(InventoryError, match="dpkg-query did not finish within 1 seconds"):
            asyncio.run(collect_ssh(server.target(command_timeout=1.0), timeout=30))
    assert time.monotonic() - started < 20


def test_a_failing_tool_reports_its_error(tmp_path: Path) -> None:
    tools = tool_dir(tmp_path, dpkg_query='echo "dpkg-query: database locked" >&2\nexit 2\n')
    with (
        running_sshd(tmp_path / "sshd", path_dir=tools) as server,
        pytest.raises(
            InventoryError, match="dpkg-query exited with status 2: dpkg-query: database locked"
        ),
    ):
        asyncio.run(collect_ssh(server.target(), timeout=30))


async def _silent_server() -> tuple[asyncio.Server, list[int]]:
    """A TCP server that accepts and never speaks SSH; [active, peak] connections."""
    counts = [0, 0]

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        counts[0] += 1
        counts[1] = max(counts[1], counts[0])
        try:
            await reader.read()
        finally:
            counts[0] -= 1
            writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    return server, counts


def test_a_server_that_never_answers_hits_the_connect_timeout(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")

    async def scenario() -> str:
        server, _counts = await _silent_server()
        port = server.sockets[0].getsockname()[1]
        target = SshTarget("127.0.0.1", known_hosts, port=port, connect_timeout=0.5)
        try:
            await collect_ssh(target, timeout=20)
        except InventoryError as exc:
            return exc.message
        finally:
            server.close()
            await server.wait_closed()
        return "no error"

    started = time.monotonic()
    message = asyncio.run(scenario())
    assert "no SSH session within the connect timeout of 0.5 seconds" in message
    assert time.monotonic() - started < 10


def test_the_overall_timeout_bounds_a_host(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")

    async def scenario() -> str:
        server, _counts = await _silent_server()
        port = server.sockets[0].getsockname()[1]
        target = SshTarget("127.0.0.1", known_hosts, port=port, connect_timeout=60)
        try:
            await collect_ssh(target, timeout=0.5)
        except InventoryError as exc:
            return exc.message
        finally:
            server.close()
            await server.wait_closed()
        return "no error"

    assert asyncio.run(scenario()).endswith("collection did not finish within 0.5 seconds")


# ------------------------------------------------------------------------- batches


def test_collect_many_keeps_order_and_isolates_failures(sshd: Sshd) -> None:
    closed_port = free_port()
    targets = [
        sshd.target(),
        sshd.target(port=closed_port),
        sshd.target(),
        sshd.target(),
    ]
    active = [0, 0]

    def started(_target: SshTarget) -> None:
        active[0] += 1
        active[1] = max(active[1], active[0])

    finished: list[SshResult] = []

    def done(result: SshResult) -> None:
        active[0] -= 1
        finished.append(result)

    results = asyncio.run(
        collect_many(targets, parallelism=2, timeout=60, on_start=started, on_done=done)
    )

    assert [r.target for r in results] == targets
    assert [r.ok for r in results] == [True, False, True, True]
    assert active[1] == 2
    assert len(finished) == 4
    failed = results[1]
    assert failed.error.startswith(f"127.0.0.1:{closed_port}: cannot connect")
    assert "Connection refused" in failed.error
    assert failed.inventory is None
    assert failed.address == ""
    packages = {frozenset(r.inventory.packages) for r in results if r.inventory is not None}
    assert len(packages) == 1
    assert all(r.address == "127.0.0.1" for r in results if r.ok)


def test_collect_many_never_exceeds_its_parallelism(tmp_path: Path) -> None:
    """Measured on the server side: at most 2 connections are ever open at once."""
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")

    async def scenario() -> tuple[list[SshResult], int, float]:
        server, counts = await _silent_server()
        port = server.sockets[0].getsockname()[1]
        targets = [
            SshTarget("127.0.0.1", known_hosts, port=port, connect_timeout=0.5) for _ in range(5)
        ]
        started = time.monotonic()
        try:
            results = await collect_many(targets, parallelism=2, timeout=20)
        finally:
            server.close()
            await server.wait_closed()
        return results, counts[1], time.monotonic() - started

    results, peak, elapsed = asyncio.run(scenario())
    assert peak == 2
    assert all("connect timeout" in r.error for r in results)
    # Five hosts two at a time take three rounds of the 0.5 s connect timeout.
    assert elapsed >= 1.4


def test_collect_many_rejects_a_parallelism_below_one(sshd: Sshd) -> None:
    with pytest.raises(InventoryError, match="parallelism"):
        asyncio.run(collect_many([sshd.target()], parallelism=0, timeout=10))


# ------------------------------------------------------------------------------ CLI


def test_ssh_collect_command_records_assets(
    sshd: Sshd, cli_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    closed_port = free_port()
    common = (
        "--user",
        getpass.getuser(),
        "--key",
        str(sshd.user_key),
        "--known-hosts",
        str(sshd.known_hosts),
        "--parallel",
        "2",
        "--json",
    )
    code = run_fleet_cli(
        "ssh-collect", f"127.0.0.1:{sshd.port}", f"127.0.0.1:{closed_port}", *common
    )
    rows = json.loads(capsys.readouterr().out)["hosts"]
    assert code == 1  # one host failed, the other was recorded
    collected, failed = rows
    assert collected["ok"] is True
    assert collected["created"] is True
    assert collected["packages"] == len(installed_by_dpkg_query())
    assert collected["hostname"] == socket.gethostname()
    assert failed["ok"] is False
    assert "Connection refused" in failed["error"]

    assert run_fleet_cli("ssh-collect", f"127.0.0.1:{sshd.port}", *common) == 0
    (again,) = json.loads(capsys.readouterr().out)["hosts"]
    assert (again["asset_id"], again["created"], again["changed"]) == (
        collected["asset_id"],
        False,
        False,
    )
    database = open_database(cli_env)
    try:
        with database.session() as session:
            (asset,) = session.scalars(select(AssetRow)).all()
            assert (asset.source, asset.status) == ("ssh", "unmanaged")
            assert asset.ip_addresses == ["127.0.0.1"]
            assert len(asset_packages(session, asset.id)) == collected["packages"]
    finally:
        database.dispose()


def test_ssh_collect_command_needs_a_known_hosts_file(
    sshd: Sshd, cli_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ("ssh-collect", f"127.0.0.1:{sshd.port}", "--key", str(sshd.user_key))
    assert run_fleet_cli(*argv) == 2
    assert "known_hosts" in capsys.readouterr().err
    missing = tmp_path / "missing"
    assert run_fleet_cli(*argv, "--known-hosts", str(missing), "--json") == 1
    (row,) = json.loads(capsys.readouterr().out)["hosts"]
    assert "cannot read known_hosts file" in row["error"]
