"""``patchwarden agent …``: the host agent's command line inside the patchwarden CLI.

The arguments go unchanged to the agent's own argparse CLI (``patchwarden.agent.cli``),
so commands, options, output and exit codes are those of
``python3 patchwarden-agent.pyz …`` and of the ``patchwarden-agent`` command.
"""

from __future__ import annotations

from typing import Any

import typer

from patchwarden.agent import cli as agent_cli

#: Click leaves every argument, ``--help`` included, to the agent's parser.
COMMAND: dict[str, Any] = {
    "context_settings": {"allow_extra_args": True, "ignore_unknown_options": True},
    "add_help_option": False,
}


def agent(ctx: typer.Context) -> int:
    """The host agent: run | enroll | status | inventory | build-pyz (see docs/agent.md)."""
    try:
        return agent_cli.main(list(ctx.args), prog="patchwarden agent")
    except SystemExit as exc:  # argparse ends --help, --version and bad usage this way
        code = exc.code
        if code is None:
            return 0
        return code if isinstance(code, int) else agent_cli.EXIT_USAGE
