"""Python inventories: ``pip freeze`` output, always in the ``PyPI`` ecosystem.

Only exact pins (``name==version`` or ``name===version``) are packages. Editable
installs (``-e ...``), direct references (``name @ url``) and pip options are skipped
with a reason: they have no released version an advisory could name. Names are
normalized as PEP 503 says, the form OSV uses for PyPI.

Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import re
from importlib import metadata

from patchwarden.collect.parsing import PackageCollector, ParsedPackages, numbered_lines
from patchwarden.core.ecosystems import normalize_name
from patchwarden.core.model import InstalledPackage

PYPI = "PyPI"

# PEP 508 distribution name, optional [extras], then the pin.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_PIN = re.compile(rf"^({_NAME})\s*(?:\[[^\]]*\])?\s*(===?)\s*([^\s;#]+)\s*(?:;.*)?$")
_DIRECT = re.compile(rf"^({_NAME})\s*(?:\[[^\]]*\])?\s*@\s*\S+")
_OTHER_SPEC = re.compile(rf"^({_NAME})\s*(?:\[[^\]]*\])?\s*(~=|!=|<=|>=|<|>)")


def parse_pip_freeze(text: str, *, source: str = "<pip freeze output>") -> ParsedPackages:
    """PyPI packages from ``pip freeze`` output (names PEP 503-normalized)."""
    collector = PackageCollector(source, "pip freeze output")
    for number, raw in numbered_lines(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if " #" in line:
            line = line.split(" #", 1)[0].rstrip()
        if line.startswith(("-e ", "--editable")):
            collector.report(number, f"editable install skipped (no released version): {line}")
            continue
        if line.startswith("-"):
            collector.report(number, f"pip option skipped: {line}")
            continue
        match = _PIN.match(line)
        if match is not None:
            name, version = match.group(1), match.group(3)
            collector.add(InstalledPackage(normalize_name(PYPI, name), version, PYPI), number)
            continue
        direct = _DIRECT.match(line)
        if direct is not None:
            collector.report(
                number, f"{direct.group(1)}: direct URL reference skipped (no released version)"
            )
            continue
        other = _OTHER_SPEC.match(line)
        if other is not None:
            collector.report(
                number, f"{other.group(1)}: not an exact pin ({other.group(2)}); skipped"
            )
            continue
        collector.bad(number, f"not a 'name==version' line: {line[:80]!r}")
    return collector.result()


def installed_python_packages(source: str = "python") -> ParsedPackages:
    """Distributions the running interpreter can import, as PyPI packages.

    When a name appears on ``sys.path`` more than once, the first one (the one Python
    imports) is kept and the shadowed copies are ignored.
    """
    collector = PackageCollector(source, "a Python environment")
    seen: set[str] = set()
    for distribution in metadata.distributions():
        try:
            raw_name = distribution.metadata["Name"]
        except KeyError:
            raw_name = None
        version = distribution.version
        if not raw_name or not version:
            collector.report(None, "a distribution without Name or Version metadata; skipped")
            continue
        name = normalize_name(PYPI, raw_name)
        if name in seen:
            continue
        seen.add(name)
        collector.add(InstalledPackage(name, version, PYPI), None)
    return collector.result()
