"""What every CLI command shares: consoles, the database, JSON output, the clock."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from patchwarden.core.errors import ValidationFailed
from patchwarden.settings import Settings, load_settings
from patchwarden.store.db import Database, open_database

#: Exit codes, documented in README ("Exit codes").
EXIT_OK = 0
EXIT_THRESHOLD = 1
EXIT_ERROR = 2


def stdout() -> Console:
    """A console on the current stdout (tests swap sys.stdout).

    Emoji codes are off: text from files and feeds (``root:x:0:0``) prints as written.
    Markup in such text is escaped where it is printed (``rich.markup.escape``).
    """
    return Console(file=sys.stdout, soft_wrap=False, emoji=False)


def stderr() -> Console:
    """A console on the current stderr, for progress, banners and errors.

    Lines are not wrapped at the terminal width: an error is one line, whole, however
    narrow the terminal (or 80 columns when stderr is not one).
    No emoji codes either, as on ``stdout()``.
    """
    return Console(file=sys.stderr, stderr=True, soft_wrap=True, emoji=False)


def now() -> datetime:
    """The current time in UTC (the one clock read of the CLI)."""
    return datetime.now(UTC)


def settings() -> Settings:
    """Settings from the environment, with the home directory created."""
    loaded = load_settings()
    loaded.ensure_home()
    return loaded


@contextmanager
def database() -> Iterator[Database]:
    """The configured database, migrated to the newest schema, writing the audit log with
    the configured audit key (created, like the schema, when there is none yet)."""
    cfg = settings()
    db = open_database(cfg.effective_database_url, audit_key=cfg.load_audit_key(create=True))
    try:
        yield db
    finally:
        db.dispose()


def read_secret(prompt: str, *, confirm: bool = False) -> str:
    """A password from the terminal (not echoed), or one line of stdin when piped."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != first:
        raise ValidationFailed("the two passwords differ")
    return first


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    sys.stdout.write(
        orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS).decode()
    )
    sys.stdout.write("\n")


@contextmanager
def download_progress(enabled: bool) -> Iterator[Callable[[str, int, int | None], None] | None]:
    """A Rich progress bar fed by (label, done, total) callbacks; None when disabled."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=stderr(),
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(label: str, done: int, total: int | None) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=total)
        bar.update(tasks[label], completed=done, total=total)

    with bar:
        yield update
