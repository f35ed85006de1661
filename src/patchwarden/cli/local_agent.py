"""The local agent `patchwarden up` runs for this host, in a background thread."""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass

from patchwarden.agent.config import AgentConfig
from patchwarden.agent.runner import Agent
from patchwarden.cli.common import now
from patchwarden.server.services import agents
from patchwarden.settings import Settings
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database


@dataclass
class LocalAgent:
    """A running local agent; ``stop`` ends its loop."""

    agent: Agent
    thread: threading.Thread
    stop_event: threading.Event
    description: str

    def stop(self) -> None:
        """Stop the loop and wait for it (bounded)."""
        self.stop_event.set()
        self.thread.join(timeout=10)


def start_local_agent(db: Database, cfg: Settings, *, server_url: str) -> LocalAgent:
    """Enroll this host (once; the credential lives in <home>/agent) and run the agent."""
    config = AgentConfig(
        server_url=server_url, state_dir=cfg.home / "agent", interval=cfg.checkin_interval
    )
    agent = Agent(config)
    if not agent.enrolled:
        with db.session() as session:
            _row, token = agents.create_enrollment_token(
                session,
                Actor("patchwarden up", "system"),
                now=now(),
                hours=1,
                max_uses=1,
                note="local agent of patchwarden up",
            )
        agent.enroll(token, hostname=socket.gethostname())
    agent.run_once()
    stop = threading.Event()
    thread = threading.Thread(
        target=agent.run_forever, args=(stop,), name="local-agent", daemon=True
    )
    thread.start()
    return LocalAgent(agent, thread, stop, f"{socket.gethostname()} → {server_url}")
