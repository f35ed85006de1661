"""Network discovery with real TCP probes — on 127.0.0.0/8 only.

Listening sockets bound to 127.0.0.1 on free ports are the open services; a port that
was free a moment ago is a closed one; a listener whose accept queue is full (Linux
drops further SYNs) stands in for a filtering firewall. Other 127.0.0.0/8 addresses
reach the same loopback stack, which resets connections to ports nobody listens on.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import time
from collections.abc import Iterator

import pytest

from patchwarden.collect.discovery import (
    CLOSED,
    FILTERED,
    OPEN,
    DiscoveredHost,
    discover,
    plan_scan,
    probe,
)
from patchwarden.core.errors import ValidationFailed
from tests.collect.test_cmdb import run_fleet_cli

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def services() -> Iterator[tuple[int, ...]]:
    """Two listening ports on 127.0.0.1 and one closed port."""
    listeners = []
    for _ in range(2):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        listeners.append(sock)
    with socket.socket() as spare:
        spare.bind(("127.0.0.1", 0))
        closed = spare.getsockname()[1]
    try:
        yield (*(s.getsockname()[1] for s in listeners), closed)
    finally:
        for sock in listeners:
            sock.close()


def scan(cidr: str, ports: tuple[int, ...], **options: float) -> list[DiscoveredHost]:
    settings = {"rate": 1000.0, "concurrency": 8, "timeout": 2.0, **options}
    return asyncio.run(
        discover(
            cidr,
            ports=ports,
            rate=settings["rate"],
            concurrency=int(settings["concurrency"]),
            timeout=settings["timeout"],
        )
    )


def test_one_host_open_and_closed_ports(services: tuple[int, ...]) -> None:
    first, second, closed = services
    (host,) = scan("127.0.0.1/32", (closed, first, second))
    assert host == DiscoveredHost("127.0.0.1", (first, second), (closed,))


def test_a_small_range_finds_every_answering_address(services: tuple[int, ...]) -> None:
    first, second, closed = services
    hosts = scan("127.0.0.0/30", services)

    # Network (.0) and broadcast (.3) addresses are not probed.
    assert [h.address for h in hosts] == ["127.0.0.1", "127.0.0.2"]
    assert hosts[0].open_ports == (first, second)
    # 127.0.0.2 is the same loopback stack, but nothing listens on it: every port resets.
    assert hosts[1].open_ports == ()
    assert hosts[1].closed_ports == (first, second, closed)


def test_probe_states(services: tuple[int, ...]) -> None:
    first, _second, closed = services
    assert asyncio.run(probe("127.0.0.1", first, timeout=2)) == OPEN
    assert asyncio.run(probe("127.0.0.1", closed, timeout=2)) == CLOSED


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs")
def test_a_port_that_never_answers_is_filtered_and_no_host() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        # Fill the accept queue; Linux then drops new SYNs, as a firewall would.
        holder = socket.create_connection(("127.0.0.1", port), timeout=2)
        try:
            assert asyncio.run(probe("127.0.0.1", port, timeout=0.3)) == FILTERED
            started = time.monotonic()
            assert scan("127.0.0.1/32", (port,), timeout=0.3) == []
            assert time.monotonic() - started < 5
        finally:
            holder.close()


def test_the_rate_spaces_connection_attempts(services: tuple[int, ...]) -> None:
    # 2 addresses x 3 ports = 6 probes at 10 per second: at least 5 intervals of 0.1 s,
    # whatever the concurrency.
    started = time.monotonic()
    hosts = scan("127.0.0.0/30", services, rate=10, concurrency=6)
    elapsed = time.monotonic() - started
    assert len(hosts) == 2
    assert elapsed >= 0.45
    assert elapsed < 10


def test_progress_counts_every_probe(services: tuple[int, ...]) -> None:
    seen: list[tuple[int, int]] = []
    asyncio.run(
        discover(
            "127.0.0.0/30",
            ports=services,
            rate=1000,
            concurrency=4,
            timeout=2,
            progress=lambda done, total: seen.append((done, total)),
        )
    )
    assert seen == [(n, 6) for n in range(1, 7)]


def test_reverse_dns_names_hosts(services: tuple[int, ...]) -> None:
    try:
        expected = socket.getnameinfo(("127.0.0.1", 0), socket.NI_NAMEREQD)[0]
    except OSError:
        pytest.skip("this resolver has no name for 127.0.0.1")
    (host,) = asyncio.run(
        discover(
            "127.0.0.1",
            ports=services[:1],
            rate=100,
            concurrency=1,
            timeout=2,
            resolve_names=True,
        )
    )
    assert host.hostname == expected


def test_networks_larger_than_max_hosts_are_refused() -> None:
    started = time.monotonic()
    with pytest.raises(ValidationFailed) as caught:
        scan("127.0.0.0/8", (22,))
    assert caught.value.message.startswith("127.0.0.0/8 holds 16777216 addresses")
    assert "4096" in caught.value.message
    assert time.monotonic() - started < 1  # refused before any probe
    with pytest.raises(ValidationFailed, match="more than the limit of 2"):
        asyncio.run(
            discover("127.0.0.0/30", ports=(22,), rate=1, concurrency=1, timeout=1, max_hosts=2)
        )
    assert len(plan_scan("127.0.0.0/20").addresses) == 4094


def test_scan_plans() -> None:
    plan = plan_scan("127.0.0.5/30", (22, 80, 22))
    assert plan.network == "127.0.0.4/30"
    assert plan.addresses == ("127.0.0.5", "127.0.0.6")
    assert plan.ports == (22, 80)
    assert plan.probes == 4
    assert plan_scan("127.0.0.9").addresses == ("127.0.0.9",)
    assert plan_scan("127.0.0.8/31").addresses == ("127.0.0.8", "127.0.0.9")


@pytest.mark.parametrize(
    ("cidr", "ports", "message"),
    [
        ("127.0.0.0/33", (22,), "not a network range"),
        ("localhost", (22,), "not a network range"),
        ("127.0.0.1", (0,), "not a TCP port"),
        ("127.0.0.1", (65536,), "not a TCP port"),
        ("127.0.0.1", (True,), "not a TCP port"),
        ("127.0.0.1", (), "no ports"),
    ],
)
def test_bad_ranges_and_ports(cidr: str, ports: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        plan_scan(cidr, ports)


@pytest.mark.parametrize(
    ("rate", "concurrency", "timeout", "message"),
    [(0, 1, 1, "rate"), (1, 0, 1, "concurrency"), (1, 1, 0, "timeout")],
)
def test_bad_scan_settings(rate: float, concurrency: int, timeout: float, message: str) -> None:
    with pytest.raises(ValidationFailed, match=message):
        asyncio.run(
            discover("127.0.0.1", ports=(22,), rate=rate, concurrency=concurrency, timeout=timeout)
        )


def test_discover_command_registers_hosts_once(
    cli_env: str, services: tuple[int, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    first, second, closed = services
    ports = f"{first},{second},{closed}"
    argv = ("discover", "127.0.0.1/32", "--ports", ports, "--rate", "200", "--json")
    assert run_fleet_cli(*argv) == 0
    found = json.loads(capsys.readouterr().out)
    (host,) = found["hosts"]
    assert (host["address"], host["open_ports"], host["outcome"]) == (
        "127.0.0.1",
        [first, second],
        "created",
    )
    assert run_fleet_cli(*argv) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["hosts"][0]["outcome"] == "unchanged"
    assert again["hosts"][0]["asset_id"] == host["asset_id"]

    assert run_fleet_cli("discover", "127.0.0.0/16", "--ports", "22", "--no-register") == 2
    assert "65536 addresses" in capsys.readouterr().err
    assert run_fleet_cli("discover", "127.0.0.1", "--ports", "22,x") == 2
    assert "bad port list" in capsys.readouterr().err
