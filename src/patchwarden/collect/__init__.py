"""Inventory collection: what is installed on a host, and in which OSV ecosystem.

* ``local.collect_local`` — this host (or an OS tree under a root directory);
* ``files.load_inventory_file`` — an inventory file in any supported format;
* one parser per format: ``dpkg``, ``rpm``, ``apk``, ``pip``, ``jsonfmt``
  (patchwarden-inventory/1, the format the agent uploads);
* ``osrelease`` — /etc/os-release to ``OsInfo`` and the exact OSV ecosystem.

Everything here uses only the standard library and ``patchwarden.core`` (model, errors,
ecosystems) and stays Python 3.9 compatible, because the host agent — a stdlib-only
zipapp — ships these modules; ``tests/collect/test_agent_compat.py`` enforces it.
"""

from __future__ import annotations

from patchwarden.collect.files import detect_inventory_format, load_inventory_file
from patchwarden.collect.jsonfmt import inventory_from_json, inventory_to_json
from patchwarden.collect.local import collect_local
from patchwarden.collect.osrelease import parse_os_release

__all__ = [
    "collect_local",
    "detect_inventory_format",
    "inventory_from_json",
    "inventory_to_json",
    "load_inventory_file",
    "parse_os_release",
]
