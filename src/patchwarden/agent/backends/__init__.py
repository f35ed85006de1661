"""Package-manager backends: the only code that changes software on a host.

* ``base.PackageBackend`` — the interface a job drives, and the command runner;
* ``apt.AptBackend`` — Debian and Ubuntu (apt-get, dpkg);
* ``dnf.DnfBackend`` — the RHEL family and Fedora (dnf, rpm);
* ``script.ScriptBackend`` — admin-registered script packages (artifact + commands).

Each takes the root it acts on (``/``, or a sandbox tree in tests) and is stdlib-only,
like the rest of the agent.
"""

from __future__ import annotations

from patchwarden.agent.backends.apt import AptBackend
from patchwarden.agent.backends.base import CommandResult, PackageBackend, PackageTarget
from patchwarden.agent.backends.dnf import DnfBackend
from patchwarden.agent.backends.script import ScriptBackend, ScriptPackage

__all__ = [
    "AptBackend",
    "CommandResult",
    "DnfBackend",
    "PackageBackend",
    "PackageTarget",
    "ScriptBackend",
    "ScriptPackage",
]
