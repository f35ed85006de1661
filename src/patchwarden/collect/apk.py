"""Alpine inventories: the apk installed database (``/lib/apk/db/installed``).

Each blank-line separated record has one-letter fields: ``P:`` name, ``V:`` version,
``A:`` arch, ``o:`` origin (the source package, which Alpine advisories name). A
subpackage is built from its origin in the same build, so the source version is the
package version.

Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import re

from patchwarden.collect.parsing import PackageCollector, ParsedPackages, stanzas
from patchwarden.core.model import InstalledPackage

APK_INSTALLED_PATH = "lib/apk/db/installed"

_FIELD = re.compile(r"^([A-Za-z]):(.*)$")


def parse_apk_installed(
    text: str, *, ecosystem: str = "", source: str = "<apk installed db>"
) -> ParsedPackages:
    """Installed packages of an apk database; records without ``P:`` or ``V:`` are problems."""
    collector = PackageCollector(source, "an apk installed database")
    for stanza in stanzas(text):
        fields: dict[str, tuple[int, str]] = {}
        for number, line in stanza:
            match = _FIELD.match(line)
            if match is None:
                collector.bad(number, f"not an 'X:value' line: {line[:60]!r}")
                continue
            # Only the first occurrence matters: file records repeat R:/a:/Z: letters.
            fields.setdefault(match.group(1), (number, match.group(2).strip()))
        if not fields:
            continue
        first = stanza[0][0]
        name_line, name = fields.get("P", (first, ""))
        if not name:
            collector.bad(first, "record without a P: (package name) field")
            continue
        version = fields.get("V", (name_line, ""))[1]
        if not version:
            collector.bad(name_line, f"{name}: no V: (version) field; skipped")
            continue
        arch = fields.get("A", (name_line, ""))[1]
        origin = fields.get("o", (name_line, ""))[1] or name
        collector.add(InstalledPackage(name, version, ecosystem, arch, origin, version), name_line)
    return collector.result()
