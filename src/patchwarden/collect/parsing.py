"""Plumbing shared by the inventory text parsers: lines, stanzas, results and problems.

Every parser follows the same rule ("bad data is data"): a line or stanza it cannot use
becomes a *problem* with its location and the rest of the input is still read. Only
input in which nothing at all could be read, while something was malformed, is rejected
with an ``InventoryError``: that is a file of another format, not a damaged one.

This module is imported by the host agent, so it uses the standard library only and
stays Python 3.9 compatible.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timezone

from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage

# datetime.UTC only exists from Python 3.11; the agent reusing this package runs on 3.9.
UTC = timezone.utc

SUPPORTED_FORMATS_HINT = (
    "supported formats: dpkg-status (/var/lib/dpkg/status), dpkg-query (tab-separated "
    "dpkg-query -W output), rpm-qa (rpm -qa NEVRA lines), rpm-qf (tab-separated rpm -qa "
    "--qf output), apk-installed (/lib/apk/db/installed), pip-freeze, json "
    "(patchwarden-inventory/1); see docs/inventory-format.md"
)


@dataclass(frozen=True)
class ParsedPackages:
    """What a parser read: the packages, and the problems it skipped with their location."""

    packages: tuple[InstalledPackage, ...]
    problems: tuple[str, ...] = ()


def locate(source: str, line: int | None, message: str) -> str:
    """Format a problem the way ``InventoryError`` formats its location: ``file:line: msg``."""
    if line is None:
        return f"{source}: {message}"
    return f"{source}:{line}: {message}"


class PackageCollector:
    """Accumulates packages and problems for one parse and builds the result.

    ``what`` names the format in the error raised when nothing parses
    (e.g. ``"a dpkg status file"``).
    """

    def __init__(self, source: str, what: str) -> None:
        self.source = source
        self.what = what
        self._packages: list[InstalledPackage] = []
        self._seen: dict[InstalledPackage, int] = {}
        self._problems: list[str] = []
        self._first_bad: tuple[int | None, str] | None = None

    def add(self, package: InstalledPackage, line: int | None) -> None:
        """Keep a package; an exact repeat of an earlier one is reported and dropped.

        A package whose name, version, arch or source fields are not tokens (see
        ``is_token``) is malformed and skipped.
        """
        for label, value, required in (
            ("name", package.name, True),
            ("version", package.version, True),
            ("arch", package.arch, False),
            ("source name", package.source_name, False),
            ("source version", package.source_version, False),
        ):
            if (required or value) and not is_token(value):
                self.bad(
                    line,
                    f"{package.name!r}: {label} {value!r} is empty or contains whitespace "
                    "or control characters; skipped",
                )
                return
        earlier = self._seen.get(package)
        if earlier is not None:
            self.report(line, f"{package.name} {package.version} repeats line {earlier}; ignored")
            return
        self._seen[package] = line or 0
        self._packages.append(package)

    def report(self, line: int | None, message: str) -> None:
        """Report a well-formed entry that is skipped or kept with a caveat (say which)."""
        self._problems.append(locate(self.source, line, message))

    def bad(self, line: int | None, message: str) -> None:
        """Report a malformed line or entry."""
        if self._first_bad is None:
            self._first_bad = (line, message)
        self._problems.append(locate(self.source, line, message))

    def note(self, message: str) -> None:
        """Report something about the input as a whole (no line)."""
        self._problems.append(locate(self.source, None, message))

    def result(self) -> ParsedPackages:
        """The parse result; raises when nothing was read and something was malformed."""
        if not self._packages and self._first_bad is not None:
            line, message = self._first_bad
            raise InventoryError(
                f"not {self.what}: {message}",
                source=self.source,
                line=line,
                hint=SUPPORTED_FORMATS_HINT,
            )
        return ParsedPackages(tuple(self._packages), tuple(self._problems))


def numbered_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, line)`` from 1, without line ends (``\\n`` or ``\\r\\n``).

    ``str.splitlines`` is not used on purpose: it also splits on form feeds and other
    Unicode separators that may appear inside package descriptions.
    """
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    for number, line in enumerate(lines, start=1):
        yield number, line[:-1] if line.endswith("\r") else line


Stanza = list[tuple[int, str]]


def stanzas(text: str) -> Iterator[Stanza]:
    """Split blank-line separated records (dpkg status, apk installed) into numbered lines."""
    current: Stanza = []
    for number, line in numbered_lines(text):
        if line.strip():
            current.append((number, line))
        elif current:
            yield current
            current = []
    if current:
        yield current


def first_data_line(text: str, comment: str = "#") -> tuple[int, str] | None:
    """The first line that is neither blank nor a comment, with its number."""
    for number, line in numbered_lines(text):
        stripped = line.strip()
        if stripped and not stripped.startswith(comment):
            return number, line
    return None


def is_token(value: str) -> bool:
    """Whether ``value`` is non-empty and free of whitespace and control characters.

    Package names, versions, architectures and source fields must be tokens in every
    ecosystem; the JSON format enforces the same rule, so whatever a parser keeps
    also survives a round-trip through JSON.
    """
    return bool(value) and _NOT_TOKEN.search(value) is None and not _has_odd_space(value)


def has_control(value: str) -> bool:
    """Whether ``value`` contains a control character (``\\x00``-``\\x1f``, ``\\x7f``)."""
    return _CONTROL.search(value) is not None


# One regex scan instead of a Python loop per character (inventories hold thousands of
# these fields). ``\s`` covers ASCII and Unicode whitespace; ``str.isspace`` also counts
# a few separators ``\s`` leaves out, checked only for non-ASCII values.
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_NOT_TOKEN = re.compile("[\\s\x00-\x1f\x7f]")


def _has_odd_space(value: str) -> bool:
    return not value.isascii() and any(ch.isspace() for ch in value)
