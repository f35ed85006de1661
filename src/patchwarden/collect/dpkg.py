"""dpkg inventories: the ``/var/lib/dpkg/status`` database and ``dpkg-query -W`` output.

Debian and Ubuntu advisories name *source* packages, so every package carries its source
name and version: from ``Source: name`` / ``Source: name (version)`` in the status file
(absent means the package is its own source, at the binary version), or from the
``${source:Package}`` / ``${source:Version}`` columns of dpkg-query.

Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import re

from patchwarden.collect.parsing import PackageCollector, ParsedPackages, numbered_lines, stanzas
from patchwarden.core.model import InstalledPackage

# The dpkg-query format patchwarden runs and documents; 5- and 3-column variants
# (without status, without source) and plain `dpkg-query -W` output are read as well.
DPKG_QUERY_FORMAT = (
    "${Package}\\t${Version}\\t${Architecture}\\t${source:Package}\\t${source:Version}"
    "\\t${db:Status-Abbrev}\\n"
)
DPKG_QUERY_ARGV = ("dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT)

# deb822 field names: printable, no colon, not starting with '#' or '-'.
_FIELD = re.compile(r"^([^\s:#-][^\s:]*):(.*)$")
_SOURCE = re.compile(r"^(\S+)(?:\s+\((\S+)\))?$")
_UPSTREAM_CHARS = re.compile(r"^[A-Za-z0-9.+~:-]+$")
_REVISION_CHARS = re.compile(r"^[A-Za-z0-9.+~]+$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+._-]*$")

# `want` values under which an installed package counts as installed (see the docs).
_KEPT_WANTS = ("install", "hold")
# Package states that leave nothing (or only conffiles) on disk: skipped silently.
_GONE_STATES = ("not-installed", "config-files")
_ABBREV_WANT = {"u": "unknown", "i": "install", "h": "hold", "r": "deinstall", "p": "purge"}
_ABBREV_STATE = {
    "n": "not-installed",
    "c": "config-files",
    "H": "half-installed",
    "U": "unpacked",
    "F": "half-configured",
    "W": "triggers-awaited",
    "t": "triggers-pending",
    "i": "installed",
}


def dpkg_version_problem(version: str) -> str:
    """Why ``version`` is not a valid dpkg version, or ``""`` when it is.

    Applies the checks dpkg itself treats as errors (epoch, characters, empty parts);
    a missing leading digit is only a warning in dpkg and is accepted here.
    """
    if not version:
        return "empty version"
    rest = version
    if ":" in version:
        epoch, rest = version.split(":", 1)
        if not epoch.isdigit():
            return "epoch is not a number"
        if not rest:
            return "nothing after the epoch colon"
    upstream = rest
    if "-" in rest:
        upstream, revision = rest.rsplit("-", 1)
        if not revision:
            return "empty revision after '-'"
        if not _REVISION_CHARS.match(revision):
            return "invalid character in revision"
    if not upstream:
        return "empty upstream version"
    if not _UPSTREAM_CHARS.match(upstream):
        return "invalid character in version"
    return ""


def parse_dpkg_status(
    text: str,
    *,
    ecosystem: str = "",
    source: str = "<dpkg status>",
    require_status: bool | None = None,
) -> ParsedPackages:
    """Installed packages of a dpkg status database (``/var/lib/dpkg/status``).

    Only stanzas whose ``Status`` is ``install ok installed`` or ``hold ok installed``
    are packages; removed packages (``config-files``, ``not-installed``) are skipped
    silently, every other state is skipped with a problem. ``require_status=None``
    decides from the text: files without any ``Status`` field (distroless
    ``status.d/`` entries) list installed packages only, so there a stanza without
    ``Status`` is installed; in a file that has them, it is reported and skipped.
    """
    if require_status is None:
        require_status = re.search(r"(?mi)^status:", text) is not None
    collector = PackageCollector(source, "a dpkg status file")
    for stanza in stanzas(text):
        fields = _read_fields(stanza, collector)
        _stanza_package(fields, stanza[0][0], collector, ecosystem, require_status)
    return collector.result()


def _read_fields(
    stanza: list[tuple[int, str]], collector: PackageCollector
) -> dict[str, tuple[int, str]]:
    """Field name (lower-case: deb822 names are case-insensitive) -> (line, value)."""
    fields: dict[str, tuple[int, str]] = {}
    seen_field = False
    for number, line in stanza:
        if line[0] in " \t":
            # Continuation of a multi-line field (Description, Conffiles): not needed.
            if not seen_field:
                collector.bad(number, "continuation line before any field")
            continue
        if line.startswith("#"):
            continue
        match = _FIELD.match(line)
        if match is None:
            collector.bad(number, f"not a 'Field: value' line: {line[:60]!r}")
            continue
        seen_field = True
        key = match.group(1).lower()
        if key in fields:
            collector.bad(number, f"field {match.group(1)} repeated in one stanza; first kept")
            continue
        fields[key] = (number, match.group(2).strip())
    return fields


def _stanza_package(
    fields: dict[str, tuple[int, str]],
    first_line: int,
    collector: PackageCollector,
    ecosystem: str,
    require_status: bool,
) -> None:
    if not fields:
        return
    if "package" not in fields:
        collector.bad(first_line, "stanza without a Package field")
        return
    line, name = fields["package"]
    if not name:
        collector.bad(line, "empty Package field")
        return
    if not _NAME.match(name):
        collector.bad(line, f"invalid package name {name!r}")
        return
    if "status" in fields:
        status_line, status = fields["status"]
        words = status.split()
        if len(words) != 3:
            collector.bad(status_line, f"{name}: malformed Status {status!r}")
            return
        want, flag, state = words
        if state in _GONE_STATES:
            return
        if not (state == "installed" and flag == "ok" and want in _KEPT_WANTS):
            collector.report(
                status_line,
                f"{name}: Status {status!r} is not 'install ok installed' or "
                "'hold ok installed'; skipped",
            )
            return
    elif require_status:
        collector.bad(line, f"{name}: no Status field; skipped")
        return
    version_line, version = fields.get("version", (line, ""))
    if not version:
        collector.bad(line, f"{name}: no Version field; skipped")
        return
    _check_version(collector, version_line, name, version)
    source_name, source_version = name, version
    if "source" in fields:
        source_line, source_field = fields["source"]
        match = _SOURCE.match(source_field)
        if match is None:
            collector.bad(
                source_line, f"{name}: malformed Source {source_field!r}; using the package"
            )
        else:
            source_name = match.group(1)
            source_version = match.group(2) or version
            if match.group(2):
                _check_version(collector, source_line, name, source_version)
    arch = fields.get("architecture", (line, ""))[1]
    collector.add(
        InstalledPackage(name, version, ecosystem, arch, source_name, source_version), line
    )


def _check_version(collector: PackageCollector, line: int, name: str, version: str) -> None:
    problem = dpkg_version_problem(version)
    if problem:
        collector.report(line, f"{name}: {version!r} is not a valid dpkg version ({problem})")


def parse_dpkg_query(
    text: str, *, ecosystem: str = "", source: str = "<dpkg-query output>"
) -> ParsedPackages:
    """Packages from tab-separated ``dpkg-query -W`` output.

    Columns: package, version, architecture, source package, source version, status
    abbreviation (``ii``) — see ``DPKG_QUERY_FORMAT``. Five columns (no status) are taken
    as installed; three (no source) and two (plain ``dpkg-query -W``, whose
    ``${binary:Package}`` may carry ``:arch``) leave the source fields empty and add a
    problem, because Debian and Ubuntu advisories are matched through the source.
    """
    collector = PackageCollector(source, "dpkg-query output")
    without_source = False
    for number, line in numbered_lines(text):
        if not line.strip():
            continue
        columns = line.split("\t")
        if len(columns) not in (2, 3, 5, 6):
            collector.bad(
                number, f"expected 2, 3, 5 or 6 tab-separated columns, found {len(columns)}"
            )
            continue
        name, version = columns[0].strip(), columns[1].strip()
        arch = columns[2].strip() if len(columns) >= 3 else ""
        if len(columns) == 2 and ":" in name:
            name, arch = name.split(":", 1)
        if not _NAME.match(name):
            collector.bad(number, f"invalid package name {name!r}")
            continue
        if len(columns) == 6 and not _installed_abbrev(collector, number, name, columns[5]):
            continue
        if not version:
            collector.bad(number, f"{name}: empty version")
            continue
        _check_version(collector, number, name, version)
        if len(columns) >= 5:
            source_name = columns[3].strip() or name
            source_version = columns[4].strip() or version
        else:
            without_source = True
            source_name = source_version = ""
        collector.add(
            InstalledPackage(name, version, ecosystem, arch, source_name, source_version),
            number,
        )
    if without_source:
        collector.note(
            "no source package columns: Debian and Ubuntu advisories name source packages; "
            f"collect with dpkg-query -W -f '{DPKG_QUERY_FORMAT}'"
        )
    return collector.result()


def _installed_abbrev(collector: PackageCollector, line: int, name: str, abbrev: str) -> bool:
    """Whether a ``${db:Status-Abbrev}`` value (``ii ``, ``hi ``, ``rc ``...) is kept."""
    code = abbrev.rstrip()
    if len(code) < 2 or code[0] not in _ABBREV_WANT or code[1] not in _ABBREV_STATE:
        collector.bad(line, f"{name}: unknown status abbreviation {abbrev!r}")
        return False
    want, state = _ABBREV_WANT[code[0]], _ABBREV_STATE[code[1]]
    if state in _GONE_STATES:
        return False
    reinstall_required = code[2:3] == "R"
    if state == "installed" and want in _KEPT_WANTS and not reinstall_required:
        return True
    collector.report(
        line,
        f"{name}: status {code!r} ({want}/{state}"
        f"{', reinstall required' if reinstall_required else ''}) is not an installed "
        "package; skipped",
    )
    return False
