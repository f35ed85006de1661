"""The host agent: enrollment, check-in, inventory upload, offline spool.

Standard library only and Python 3.9 compatible: it ships to hosts as one file,
``patchwarden-agent.pyz`` (see ``build``), together with ``patchwarden.collect`` and the
stdlib-only core modules (model, errors, ecosystems, values). ``docs/agent.md`` is the
operator's guide, ``docs/agent-protocol.md`` the wire protocol.

* ``config.AgentConfig`` — settings, read from an INI file;
* ``runner.Agent`` — enroll, ``run_once``, ``run_forever``, ``status``;
* ``client.ServerClient`` — the HTTP side of protocol v1;
* ``spool.Spool`` — reports waiting for the server, on disk;
* ``state.StateDir`` — the credential and what the agent remembers between runs;
* ``cli.main`` — ``patchwarden-agent run | enroll | status | inventory | build-pyz``.
"""

from __future__ import annotations

#: The agent's own version, sent at enrollment and check-in (kept equal to the
#: package version; the agent cannot import ``patchwarden`` itself, see build.py).
AGENT_VERSION = "0.1.0"

#: The agent protocol this agent speaks (``PROTOCOL_VERSION`` on the server).
PROTOCOL_VERSION = 1
