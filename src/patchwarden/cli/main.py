"""The ``patchwarden`` command: Typer app wiring and the one place errors become exits.

Every ``PatchwardenError`` raised by any command ends here as a single line on stderr
(plus a hint when there is one) and exit code 2; no traceback is shown for user
mistakes. Set ``PATCHWARDEN_DEBUG=1`` to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.markup import escape

from patchwarden import __version__
from patchwarden.cli import account, admin, fleet_sources
from patchwarden.cli import agent as agent_cli
from patchwarden.cli import db as db_cli
from patchwarden.cli import deploy as deploy_cli
from patchwarden.cli import explain as explain_cli
from patchwarden.cli import feeds as feeds_cli
from patchwarden.cli import scan as scan_cli
from patchwarden.cli import server as server_cli
from patchwarden.cli.common import EXIT_ERROR, stderr
from patchwarden.core.errors import PatchwardenError

app = typer.Typer(
    name="patchwarden",
    help="Patch management: exact vulnerability matching, risk ranking, safe deployment.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("login")(account.login)
app.command("logout")(account.logout)
app.command("whoami")(account.whoami)
app.command("bootstrap")(account.bootstrap)
app.command("up")(server_cli.up)
app.command("server")(server_cli.server)
app.command("report-worker")(server_cli.report_worker)
app.command("scan")(scan_cli.scan)
app.command("explain")(explain_cli.explain)
app.command("ssh-collect")(fleet_sources.ssh_collect)
app.command("cmdb-import")(fleet_sources.cmdb_import)
app.command("discover")(fleet_sources.discover_command)
app.add_typer(feeds_cli.app, name="feeds")
app.add_typer(admin.assets_app, name="assets")
app.add_typer(admin.groups_app, name="groups")
app.add_typer(admin.users_app, name="users")
app.add_typer(admin.tokens_app, name="tokens")
app.add_typer(admin.enroll_app, name="enroll")
app.add_typer(admin.audit_app, name="audit")
app.add_typer(deploy_cli.windows_app, name="windows")
app.add_typer(deploy_cli.baselines_app, name="baselines")
app.add_typer(deploy_cli.exceptions_app, name="exceptions")
app.add_typer(deploy_cli.rollouts_app, name="rollouts")
app.add_typer(deploy_cli.scripts_app, name="scripts")
app.add_typer(db_cli.app, name="db")
app.command("agent", **agent_cli.COMMAND)(agent_cli.agent)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"patchwarden {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """patchwarden: know what is vulnerable, fix it safely."""


def run(argv: list[str]) -> int:
    """Run the CLI with ``argv`` and return the exit code (used by tests and ``main``)."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="patchwarden", standalone_mode=False)
    except PatchwardenError as exc:
        console = stderr()
        # soft_wrap: one line each, however long (scripts and tests read them whole).
        console.print(f"[bold red]error:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.hint:
            console.print(f"[yellow]hint:[/] {escape(exc.hint)}", highlight=False, soft_wrap=True)
        return EXIT_ERROR
    except KeyboardInterrupt:
        stderr().print("interrupted")
        return 130
    except Exception as exc:
        # Usage errors come from the click copy Typer bundles: recognised by shape.
        if type(exc).__name__ == "Abort":
            stderr().print("aborted")
            return 130
        exit_code = getattr(exc, "exit_code", None)
        show = getattr(exc, "show", None)
        if callable(show) and isinstance(exit_code, int):
            show()
            return exit_code
        if os.environ.get("PATCHWARDEN_DEBUG"):
            raise
        stderr().print(
            f"[bold red]internal error:[/] {escape(type(exc).__name__)}: {escape(str(exc))}\n"
            "This is a bug in patchwarden; rerun with PATCHWARDEN_DEBUG=1 for a traceback "
            "and report it.",
            highlight=False,
        )
        return 70

    if isinstance(result, int):
        return result
    return 0


def main() -> None:
    """Console-script entry point."""
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
