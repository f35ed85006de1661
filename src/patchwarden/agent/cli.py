"""``patchwarden-agent``: the host agent's command line (argparse, stdlib only).

    patchwarden-agent [--config FILE] [--state-dir DIR] [-v] COMMAND
      run [--once] [--json]          check in and run released jobs, every interval
                                     (or once) until stopped
      enroll TOKEN [--server URL] [--hostname NAME] [--replace]
                                     exchange an enrollment token ('-' reads stdin)
      status [--json]                what the agent knows; no network
      inventory [--json]             what the agent would upload; no network
      build-pyz OUTPUT               write patchwarden-agent.pyz

Exit codes: 0 done; 1 failed; 2 bad usage; 75 ``run --once`` could not check in (what
it could not send is spooled); 77 the server refused the enrollment token or the
credential (re-enroll); 78 not enrolled or unusable configuration. The systemd unit
does not restart the agent after 77 or 78: only an administrator can fix those.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from patchwarden.agent import AGENT_VERSION, PROTOCOL_VERSION
from patchwarden.agent.config import DEFAULT_CONFIG_PATH, AgentConfig
from patchwarden.agent.host import inventory_document
from patchwarden.agent.runner import Agent
from patchwarden.collect.jsonfmt import inventory_to_json
from patchwarden.core.errors import AuthenticationRequired, ConfigError, PatchwardenError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOT_CHECKED_IN = 75
EXIT_REFUSED = 77
EXIT_CONFIG = 78
PROG = "patchwarden-agent"
STDIN_ARGUMENT = "-"

log = logging.getLogger("patchwarden.agent")


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    # The shared options work before or after the command (`run --config FILE`, as in
    # the systemd unit); SUPPRESS keeps a later, absent copy from erasing an earlier one.
    shared = argparse.ArgumentParser(add_help=False)
    shared.add_argument(
        "--config",
        type=Path,
        default=argparse.SUPPRESS,
        help=f"agent configuration file (default {DEFAULT_CONFIG_PATH}, when it exists)",
    )
    shared.add_argument(
        "--state-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="override state_dir of the configuration",
    )
    shared.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log debug messages"
    )
    parser = argparse.ArgumentParser(
        prog=prog,
        description="patchwarden host agent: enrollment, check-in, inventory upload, "
        "deployment jobs.",
        parents=[shared],
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {AGENT_VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", parents=[shared], help="check in, upload, run jobs; every interval until stopped"
    )
    run.add_argument("--once", action="store_true", help="run one cycle and exit")
    run.add_argument("--json", action="store_true", help="with --once: print the result as JSON")

    enroll = commands.add_parser(
        "enroll", parents=[shared], help="enroll this host with an enrollment token"
    )
    enroll.add_argument("token", metavar="TOKEN", help="the enrollment token, or '-' for stdin")
    enroll.add_argument(
        "--server", metavar="URL", help="server URL (else server_url of the config)"
    )
    enroll.add_argument("--hostname", help="name to enroll under (default: this host's name)")
    enroll.add_argument(
        "--replace",
        action="store_true",
        help="enroll even though the state directory holds a live credential (it is "
        "discarded; with a re-enroll token the server revokes it too)",
    )

    status = commands.add_parser(
        "status", parents=[shared], help="show enrollment, last contact and spool"
    )
    status.add_argument("--json", action="store_true", help="print JSON")

    inventory = commands.add_parser(
        "inventory", parents=[shared], help="show the inventory that would be sent"
    )
    inventory.add_argument("--json", action="store_true", help="print the full JSON document")

    build = commands.add_parser("build-pyz", help="write the one-file agent (zipapp)")
    build.add_argument("output", type=Path, metavar="OUTPUT", help="e.g. patchwarden-agent.pyz")
    return parser


def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    """Run the command line; returns the exit code.

    ``prog`` is the name usage and error lines give the command (``patchwarden agent``
    when the patchwarden CLI runs it). Bad usage, ``--help`` and ``--version`` end in
    argparse's ``SystemExit`` (2, 0, 0).
    """
    args = build_parser(prog).parse_args(argv)
    try:
        if args.command == "build-pyz":
            return _build(args)
        config = _load_config(args)
        _setup_logging(config.log_level, getattr(args, "verbose", False))
        agent = Agent(config)
        if args.command == "enroll":
            return _enroll(agent, args)
        if args.command == "status":
            return _status(agent, args)
        if args.command == "inventory":
            return _inventory(agent, args)
        return _run(agent, args)
    except PatchwardenError as exc:
        print(f"{prog}: error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return exit_code_for(exc)
    except OSError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def exit_code_for(exc: PatchwardenError) -> int:
    """The exit code that tells a supervisor whether retrying can help."""
    if isinstance(exc, AuthenticationRequired):
        return EXIT_REFUSED
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    return EXIT_FAILED


def _load_config(args: argparse.Namespace) -> AgentConfig:
    overrides: dict[str, Any] = {"state_dir": getattr(args, "state_dir", None)}
    if args.command == "enroll":
        overrides["server_url"] = args.server
    path: Path | None = getattr(args, "config", None)
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        return AgentConfig.load(path, **overrides)
    return AgentConfig(**{key: value for key, value in overrides.items() if value is not None})


def _setup_logging(level: str, verbose: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    # Under systemd the journal stamps every line itself.
    stamp = "" if os.environ.get("JOURNAL_STREAM") else "%(asctime)s "
    handler.setFormatter(logging.Formatter(stamp + "%(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if verbose else getattr(logging, level.upper()))
    log.propagate = False


def _enroll(agent: Agent, args: argparse.Namespace) -> int:
    token = sys.stdin.readline() if args.token == STDIN_ARGUMENT else args.token
    if not token.strip():
        raise ConfigError("no enrollment token given")
    agent.enroll(token.strip(), hostname=args.hostname, replace=args.replace)
    status = agent.status()
    print(f"enrolled with {status['server_url']} as asset {status['asset_id']}")
    return 0


def _status(agent: Agent, args: argparse.Namespace) -> int:
    status = agent.status()
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
        return 0
    spool = status.pop("spool")
    for key, value in status.items():
        print(f"{key.replace('_', ' ')}: {'-' if value is None else value}")
    print(
        f"spool: {spool['reports']} report(s), {spool['bytes']} bytes; {spool['rejected']} rejected"
    )
    return 0


def _inventory(agent: Agent, args: argparse.Namespace) -> int:
    inventory = agent.inventory()
    if args.json:
        document = json.loads(inventory_document(inventory))
        print(json.dumps(document, indent=2, ensure_ascii=False))
        return 0
    data = inventory_to_json(inventory)
    os_info = inventory.os
    print(f"hostname: {inventory.hostname}")
    print(f"os: {os_info.pretty_name or os_info.id if os_info else 'unknown'}")
    print(f"ecosystem: {os_info.ecosystem if os_info and os_info.ecosystem else 'unknown'}")
    print(f"kernel: {inventory.kernel or '-'}  arch: {inventory.arch or '-'}")
    print(f"reboot required: {'yes' if inventory.reboot_required else 'no'}")
    print(f"packages: {len(data['packages'])}  problems: {len(inventory.problems)}")
    print(f"content hash: {inventory.content_hash()}")
    for problem in inventory.problems[:20]:
        print(f"  problem: {problem}")
    return 0


def _run(agent: Agent, args: argparse.Namespace) -> int:
    if args.once:
        result = agent.run_once()
        if args.json:
            print(json.dumps({"protocol": PROTOCOL_VERSION, **dataclasses.asdict(result)}))
        return 0 if result.checked_in else EXIT_NOT_CHECKED_IN
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping after the current step", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("patchwarden-agent %s starting (state in %s)", AGENT_VERSION, agent.state_dir.path)
    agent.run_forever(stop)
    if agent.halted is not None:
        print(f"{PROG}: stopped: {agent.halted}", file=sys.stderr)
        return exit_code_for(agent.halted)
    return 0


def _build(args: argparse.Namespace) -> int:
    # Imported here: zipfile and ast would add ~1 MB to every agent cycle otherwise.
    from patchwarden.agent.build import build_pyz, sha256_of  # noqa: PLC0415

    path = build_pyz(args.output)
    print(f"{path}  {path.stat().st_size} bytes  sha256 {sha256_of(path)}")
    return 0
