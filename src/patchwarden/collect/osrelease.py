"""``/etc/os-release`` to ``OsInfo``, with the exact OSV ecosystem of the host's packages.

The mapping (documented in docs/inventory-format.md, "OS ecosystems"):

* Debian ``Debian:<VERSION_ID>``; testing/sid carry no VERSION_ID, so the codename
  (``VERSION_CODENAME`` or the ``trixie/sid`` in PRETTY_NAME) is mapped through the
  release numbers of Debian's distro-info-data.
* Ubuntu ``Ubuntu:<VERSION_ID>:LTS`` when VERSION says LTS, else ``Ubuntu:<VERSION_ID>``.
* AlmaLinux, Rocky Linux: major release only (``AlmaLinux:9``, ``Rocky Linux:9``).
* Alpine ``Alpine:v<major>.<minor>`` (release branch) from VERSION_ID ``3.20.3``.
* Red Hat: ``Red Hat:<CPE_NAME without cpe:/o:redhat:>`` (``Red Hat:enterprise_linux:9::baseos``).
* SUSE / openSUSE: ``SUSE:<product>`` / ``openSUSE:<product>`` where product is
  PRETTY_NAME without its vendor word (``SUSE:Linux Enterprise Server 15 SP5``,
  ``openSUSE:Leap 15.5``, ``openSUSE:Tumbleweed``), as the SUSE OSV feed names them.
* CentOS, Fedora, Oracle Linux have no OSV ecosystem; they get the name patchwarden's
  ecosystem table uses (``CentOS:7``, ``Fedora:40``, ``Oracle:9``) so a feed can be
  keyed to them later.

When no ecosystem can be derived, ``ecosystem`` is ``""`` and ``OsRelease.reason`` says
why. Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

from patchwarden.core import ecosystems
from patchwarden.core.errors import UnsupportedEcosystem
from patchwarden.core.model import OsInfo

# Debian release numbers by codename, from Debian's distro-info-data (debian.csv).
DEBIAN_CODENAMES: dict[str, str] = {
    "squeeze": "6",
    "wheezy": "7",
    "jessie": "8",
    "stretch": "9",
    "buster": "10",
    "bullseye": "11",
    "bookworm": "12",
    "trixie": "13",
    "forky": "14",
    "duke": "15",
}

_DEBIAN_LIKE = {"debian", "ubuntu"}
_RPM_LIKE = {
    "rhel",
    "fedora",
    "centos",
    "suse",
    "opensuse",
    "sles",
    "almalinux",
    "rocky",
    "ol",
    "amzn",
    "mariner",
    "azurelinux",
    "mageia",
    "openeuler",
    "photon",
}

# os-release IDs whose ecosystem is the base name and the major release only.
_MAJOR_ONLY: dict[str, str] = {
    "almalinux": "AlmaLinux",
    "rocky": "Rocky Linux",
    "centos": "CentOS",
    "ol": "Oracle",
}

# Ecosystem base -> os-release ID, for inventories whose OS is only given as an ecosystem.
_ID_BY_BASE: dict[str, str] = {
    "Debian": "debian",
    "Ubuntu": "ubuntu",
    "AlmaLinux": "almalinux",
    "Rocky Linux": "rocky",
    "Alpine": "alpine",
    "CentOS": "centos",
    "Fedora": "fedora",
    "Oracle": "ol",
    "Red Hat": "rhel",
    "SUSE": "sles",
    "openSUSE": "opensuse",
}

_KEY = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass(frozen=True)
class OsRelease:
    """A parsed os-release: the ``OsInfo``, why its ecosystem is empty (if it is) and
    every raw field."""

    info: OsInfo
    reason: str = ""
    fields: dict[str, str] = field(default_factory=dict)


def parse_os_release_fields(text: str) -> dict[str, str]:
    """The ``KEY=value`` assignments of an os-release file, unquoted as a shell would.

    Lines that are not assignments are ignored, as os-release(5) asks of readers.
    """
    fields: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _KEY.match(line)
        if match is None:
            continue
        key, value = match.group(1), match.group(2).strip()
        try:
            words = shlex.split(value, comments=False, posix=True)
        except ValueError:
            # An unbalanced quote: keep the raw text rather than lose the field.
            words = [value.strip("\"'")]
        fields[key] = " ".join(words)
    return fields


def read_os_release(text: str) -> OsRelease:
    """Parse os-release text into ``OsInfo`` plus the reason when no ecosystem is known."""
    fields = parse_os_release_fields(text)
    os_id = fields.get("ID", "linux").lower()
    like = fields.get("ID_LIKE", "").lower().split()
    family = _family(os_id, like)
    ecosystem, reason = _ecosystem(os_id, fields)
    if ecosystem and family == "":
        family = _family_of(ecosystem)
    info = OsInfo(
        id=os_id,
        version_id=fields.get("VERSION_ID", ""),
        name=fields.get("NAME", ""),
        pretty_name=fields.get("PRETTY_NAME", ""),
        codename=_codename(fields),
        ecosystem=ecosystem,
        family=family,
    )
    return OsRelease(info=info, reason=reason, fields=fields)


def parse_os_release(text: str) -> OsInfo:
    """Parse os-release text into ``OsInfo`` with the exact OSV ecosystem (or ``""``)."""
    return read_os_release(text).info


def os_info_for_ecosystem(ecosystem: str) -> OsInfo:
    """A best-effort ``OsInfo`` for an inventory whose OS is known only by its ecosystem.

    ``Debian:12`` gives id ``debian``, version_id ``12``; ``Ubuntu:22.04:LTS`` gives
    ``ubuntu`` / ``22.04``; ``Alpine:v3.20`` gives ``alpine`` / ``3.20``.
    Raises ``UnsupportedEcosystem`` for an ecosystem patchwarden does not know.
    """
    family = ecosystems.info(ecosystem).family
    base, release = ecosystems.split(ecosystem)
    os_id = _ID_BY_BASE.get(base, base.lower().replace(" ", ""))
    version_id = ""
    if base in ("Debian", "AlmaLinux", "Rocky Linux", "CentOS", "Fedora", "Oracle"):
        version_id = release
    elif base == "Ubuntu":
        version_id = release.split(":")[0]
    elif base == "Alpine":
        version_id = release[1:] if release.startswith("v") else release
    return OsInfo(id=os_id, version_id=version_id, ecosystem=ecosystem, family=family)


def _family(os_id: str, like: list[str]) -> str:
    for candidate in (os_id, *like):
        if candidate in _DEBIAN_LIKE:
            return "debian"
        if candidate == "alpine":
            return "alpine"
        if candidate in _RPM_LIKE or candidate.startswith(("opensuse", "sle")):
            return "rpm"
    return ""


def _family_of(ecosystem: str) -> str:
    try:
        return ecosystems.info(ecosystem).family
    except UnsupportedEcosystem:
        return ""


def _codename(fields: dict[str, str]) -> str:
    codename = fields.get("VERSION_CODENAME") or fields.get("UBUNTU_CODENAME", "")
    if codename:
        return codename.lower()
    # Debian testing/sid: PRETTY_NAME="Debian GNU/Linux trixie/sid", no VERSION_CODENAME
    # on some older base-files versions.
    match = re.search(r"\b([a-z]+)/sid\b", fields.get("PRETTY_NAME", ""))
    return match.group(1) if match else ""


def _major(version_id: str) -> str:
    major = version_id.split(".", maxsplit=1)[0]
    return major if major.isdigit() else ""


def _ecosystem(os_id: str, fields: dict[str, str]) -> tuple[str, str]:
    """``(ecosystem, reason)``: exactly one of the two is non-empty."""
    version_id = fields.get("VERSION_ID", "")
    pretty = fields.get("PRETTY_NAME", "")
    if os_id == "debian":
        if version_id.isdigit():
            return f"Debian:{version_id}", ""
        codename = _codename(fields)
        if codename in DEBIAN_CODENAMES:
            return f"Debian:{DEBIAN_CODENAMES[codename]}", ""
        return "", (
            f"Debian without VERSION_ID and with an unknown codename {codename!r}: "
            "cannot tell the release; pass --ecosystem (e.g. Debian:13)"
        )
    if os_id == "ubuntu":
        if not re.fullmatch(r"\d+\.\d+", version_id):
            return "", f"Ubuntu with VERSION_ID {version_id!r}: expected YY.MM"
        lts = "LTS" in fields.get("VERSION", pretty)
        return (f"Ubuntu:{version_id}:LTS" if lts else f"Ubuntu:{version_id}"), ""
    if os_id in _MAJOR_ONLY:
        major = _major(version_id)
        if not major:
            return "", f"{os_id} with VERSION_ID {version_id!r}: no major release number"
        return f"{_MAJOR_ONLY[os_id]}:{major}", ""
    if os_id == "fedora":
        if not version_id.isdigit():
            return "", f"Fedora with VERSION_ID {version_id!r}: no release number"
        return f"Fedora:{version_id}", ""
    if os_id == "alpine":
        match = re.match(r"^(\d+)\.(\d+)(?:\.\d+)?$", version_id)
        if match is None:
            return "", (
                f"Alpine with VERSION_ID {version_id!r} is not a release branch "
                "(edge or a pre-release); pass --ecosystem"
            )
        return f"Alpine:v{match.group(1)}.{match.group(2)}", ""
    if os_id == "rhel":
        cpe = fields.get("CPE_NAME", "")
        prefix = "cpe:/o:redhat:"
        if cpe.startswith(prefix) and len(cpe) > len(prefix):
            return f"Red Hat:{cpe[len(prefix) :]}", ""
        return "", (
            "Red Hat ecosystems name a product stream from CPE_NAME "
            f"(cpe:/o:redhat:...), found {cpe!r}; pass --ecosystem"
        )
    if os_id in ("sles", "sled", "sles_sap", "sle-micro") or os_id.startswith("sle"):
        if pretty.startswith("SUSE ") and len(pretty) > 5:
            return f"SUSE:{pretty[5:]}", ""
        return "", f"SUSE without a 'SUSE ...' PRETTY_NAME ({pretty!r}); pass --ecosystem"
    if os_id.startswith("opensuse"):
        if pretty.startswith("openSUSE ") and len(pretty) > 9:
            return f"openSUSE:{pretty[9:]}", ""
        return "", (
            f"openSUSE without an 'openSUSE ...' PRETTY_NAME ({pretty!r}); pass --ecosystem"
        )
    return "", f"no OSV ecosystem is known for os-release ID={os_id!r}; pass --ecosystem"
