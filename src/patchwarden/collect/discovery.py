"""Network discovery: which addresses of a range answer on which TCP ports.

A probe is a plain TCP connect (no raw sockets, no privileges): the handshake completes
(``open``), the host answers with a reset (``closed``), nothing answers within the
timeout (``filtered``) or the network says it cannot get there (``unreachable``). An
address is a *host* when at least one port is open or closed — a reset proves a TCP
stack is there — and only hosts are returned.

Scans are bounded on purpose, because a scan is noise on other people's networks:

* the range is refused when it holds more than ``max_hosts`` addresses (default 4096,
  a /20) — split larger ranges, or raise the bound knowingly;
* connection attempts are paced at ``rate`` per second across the whole scan (evenly
  spaced, no bursts) and at most ``concurrency`` are in flight at once.

Reverse DNS (``resolve_names``) asks the system resolver for each host's PTR name
after the probes. Stdlib only, Python 3.9 compatible like the rest of ``collect``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from patchwarden.core.errors import ValidationFailed

DEFAULT_PORTS = (22, 80, 443, 3389, 5985, 8080, 8443)
DEFAULT_MAX_HOSTS = 4096
OPEN, CLOSED, FILTERED, UNREACHABLE = "open", "closed", "filtered", "unreachable"


@dataclass(frozen=True)
class DiscoveredHost:
    """An address that answered, its open and closed (reset) ports, and its PTR name."""

    address: str
    open_ports: tuple[int, ...]
    closed_ports: tuple[int, ...] = ()
    hostname: str = ""


@dataclass(frozen=True)
class ScanPlan:
    """A validated scan: the addresses and ports to probe."""

    network: str
    addresses: tuple[str, ...]
    ports: tuple[int, ...]

    @property
    def probes(self) -> int:
        """How many connection attempts the scan makes."""
        return len(self.addresses) * len(self.ports)


def plan_scan(
    cidr: str, ports: Sequence[int] = DEFAULT_PORTS, *, max_hosts: int = DEFAULT_MAX_HOSTS
) -> ScanPlan:
    """Validate a range and ports; raises ``ValidationFailed`` for a bad or too big range.

    A bare address is a one-host range; host bits are allowed (``10.0.0.7/24`` is
    ``10.0.0.0/24``). Network and broadcast addresses of IPv4 ranges wider than /31
    are not probed.
    """
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError as exc:
        raise ValidationFailed(f"not a network range: {cidr!r} ({exc})") from exc
    if network.num_addresses > max_hosts:
        raise ValidationFailed(
            f"{network} holds {network.num_addresses} addresses, more than the limit of "
            f"{max_hosts}",
            hint="scan smaller blocks, or raise the limit (--max-hosts) if you mean it",
        )
    wanted: list[int] = []
    for port in ports:
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ValidationFailed(f"not a TCP port: {port!r} (1-65535)")
        if port not in wanted:
            wanted.append(port)
    if not wanted:
        raise ValidationFailed("no ports to probe")
    addresses = tuple(str(address) for address in network.hosts())
    if not addresses:
        addresses = (str(network.network_address),)
    return ScanPlan(str(network), addresses, tuple(wanted))


async def discover(
    cidr: str,
    *,
    ports: Sequence[int] = DEFAULT_PORTS,
    rate: float,
    concurrency: int,
    timeout: float,
    max_hosts: int = DEFAULT_MAX_HOSTS,
    resolve_names: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> list[DiscoveredHost]:
    """Probe every address of ``cidr`` on ``ports``; the hosts that answered, by address.

    ``rate`` is connection attempts per second, ``concurrency`` the most attempts in
    flight, ``timeout`` the seconds one attempt may take. ``progress(done, total)`` is
    called after each probe. Raises ``ValidationFailed`` for bad arguments (see
    ``plan_scan``).
    """
    if rate <= 0:
        raise ValidationFailed(f"rate must be positive, got {rate:g}")
    if concurrency < 1:
        raise ValidationFailed(f"concurrency must be at least 1, got {concurrency}")
    if timeout <= 0:
        raise ValidationFailed(f"timeout must be positive, got {timeout:g}")
    plan = plan_scan(cidr, ports, max_hosts=max_hosts)
    pacer = _Pacer(rate)
    states: dict[str, dict[int, str]] = {}
    pending: Iterator[tuple[str, int]] = (
        (address, port) for address in plan.addresses for port in plan.ports
    )
    done = 0

    async def worker() -> None:
        nonlocal done
        # Workers share one iterator: next() never awaits, so no two take the same probe.
        for address, port in pending:
            await pacer.wait()
            state = await probe(address, port, timeout=timeout)
            states.setdefault(address, {})[port] = state
            done += 1
            if progress is not None:
                progress(done, plan.probes)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, plan.probes))))

    hosts: list[DiscoveredHost] = []
    for address in plan.addresses:
        found = states.get(address, {})
        open_ports = tuple(p for p in plan.ports if found.get(p) == OPEN)
        closed_ports = tuple(p for p in plan.ports if found.get(p) == CLOSED)
        if open_ports or closed_ports:
            hosts.append(DiscoveredHost(address, open_ports, closed_ports))
    if resolve_names and hosts:
        names = await asyncio.gather(*(reverse_name(h.address, timeout=timeout) for h in hosts))
        hosts = [
            DiscoveredHost(h.address, h.open_ports, h.closed_ports, name)
            for h, name in zip(hosts, names)
        ]
    return hosts


async def probe(address: str, port: int, *, timeout: float) -> str:
    """One TCP connect: ``open``, ``closed``, ``filtered`` or ``unreachable``."""
    try:
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout)
    except asyncio.TimeoutError:
        return FILTERED
    except ConnectionRefusedError:
        return CLOSED
    except OSError:
        return UNREACHABLE
    writer.close()
    # A peer that resets right after accepting was open all the same.
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return OPEN


async def reverse_name(address: str, *, timeout: float) -> str:
    """The PTR name of ``address`` from the system resolver, or ``""``."""
    loop = asyncio.get_running_loop()
    try:
        name, _service = await asyncio.wait_for(
            loop.getnameinfo((address, 0), socket.NI_NAMEREQD), timeout
        )
    except (asyncio.TimeoutError, OSError):
        return ""
    return name if name != address else ""


class _Pacer:
    """Evenly spaced start times, ``rate`` per second, for every worker together."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next_slot = 0.0

    async def wait(self) -> None:
        now = asyncio.get_running_loop().time()
        slot = max(now, self.next_slot)
        # Reserve the slot before sleeping so concurrent workers queue behind it.
        self.next_slot = slot + self.interval
        if slot > now:
            await asyncio.sleep(slot - now)
