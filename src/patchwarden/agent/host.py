"""Facts about this host beyond its package inventory, and the inventory as uploaded.

The package inventory itself comes from ``patchwarden.collect.local.collect_local``
(OS, packages, kernel, arch, reboot-required, and Python distributions when asked);
this module adds what the check-in reports (uptime) and what enrollment sends (machine
id, fully qualified name).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
import socket
from pathlib import Path

from patchwarden.agent.config import AgentConfig
from patchwarden.collect.jsonfmt import inventory_to_json
from patchwarden.collect.local import collect_local
from patchwarden.core.model import Inventory

UPTIME_PATH = Path("/proc/uptime")
MACHINE_ID_PATHS = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))
_MACHINE_ID = re.compile(r"^[0-9a-f]{32}$")


def uptime_seconds(path: Path = UPTIME_PATH) -> int | None:
    """Seconds since boot from ``/proc/uptime``; ``None`` where it cannot be read."""
    try:
        return int(float(path.read_text(encoding="ascii").split()[0]))
    except (OSError, ValueError, IndexError):
        return None


def machine_id(paths: tuple[Path, ...] = MACHINE_ID_PATHS) -> str:
    """The systemd/D-Bus machine id (32 hex digits), or ``""`` when none is readable.

    The server uses it to recognise a host that enrolls again under a new name.
    """
    for path in paths:
        try:
            text = path.read_text(encoding="ascii").strip().lower()
        except (OSError, UnicodeDecodeError):
            continue
        if _MACHINE_ID.match(text):
            return text
    return ""


def fully_qualified_name(hostname: str) -> str:
    """The host's FQDN when the resolver knows one (used at enrollment only, since it
    may wait on DNS); ``""`` when it is no better than ``hostname``."""
    try:
        name = socket.getfqdn(hostname)
    except OSError:
        return ""
    return name if "." in name and name != hostname else ""


def collect_inventory(config: AgentConfig) -> Inventory:
    """This host's inventory as the agent reports it (``source`` is ``agent``)."""
    inventory = collect_local(
        root=config.collect_root,
        include_python=config.include_python,
        timeout=config.collect_timeout,
    )
    return dataclasses.replace(inventory, source="agent")


def inventory_document(inventory: Inventory) -> bytes:
    """The ``patchwarden-inventory/1`` JSON document (validated while written)."""
    return json.dumps(
        inventory_to_json(inventory), separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def gzip_document(document: bytes) -> bytes:
    """gzip without a timestamp, so equal documents compress to equal bytes."""
    return gzip.compress(document, compresslevel=6, mtime=0)
