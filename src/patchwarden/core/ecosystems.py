"""The one table of ecosystem behaviour, looked up by exact OSV ecosystem name.

An OSV ecosystem may carry a release suffix after the first colon (``Debian:12``,
``Ubuntu:22.04:LTS``, ``Alpine:v3.20``, ``Rocky Linux:9``). Behaviour is decided by the
base name before the colon; the suffix only scopes which hosts an advisory applies to.
Unknown ecosystems raise ``UnsupportedEcosystem`` — they are never silently skipped.
"""

from __future__ import annotations

import re

from patchwarden.core.errors import UnsupportedEcosystem
from patchwarden.core.values import value


@value
class EcosystemInfo:
    """How one OSV base ecosystem behaves.

    ``scheme`` names the version ordering (see ``patchwarden.core.versions``);
    ``by_source`` is true where advisories name *source* packages, so binaries must be
    matched through their source name and version only. ``also_source`` is true where
    feeds disagree (AlmaLinux names binary RPMs, Rocky Linux source RPMs), so both the
    binary and the source name are matched.
    """

    name: str
    scheme: str
    by_source: bool = False
    family: str = ""
    also_source: bool = False


_ECOSYSTEMS: dict[str, EcosystemInfo] = {
    info.name: info
    for info in (
        EcosystemInfo("Debian", "dpkg", by_source=True, family="debian"),
        EcosystemInfo("Ubuntu", "dpkg", by_source=True, family="debian"),
        EcosystemInfo("Red Hat", "rpm", family="rpm", also_source=True),
        EcosystemInfo("AlmaLinux", "rpm", family="rpm", also_source=True),
        EcosystemInfo("Rocky Linux", "rpm", family="rpm", also_source=True),
        EcosystemInfo("openSUSE", "rpm", family="rpm", also_source=True),
        EcosystemInfo("SUSE", "rpm", family="rpm", also_source=True),
        EcosystemInfo("Fedora", "rpm", family="rpm", also_source=True),
        EcosystemInfo("Oracle", "rpm", family="rpm", also_source=True),
        EcosystemInfo("CentOS", "rpm", family="rpm", also_source=True),
        EcosystemInfo("Alpine", "apk", by_source=True, family="alpine"),
        EcosystemInfo("PyPI", "pep440"),
        EcosystemInfo("npm", "semver"),
        EcosystemInfo("Go", "semver"),
    )
}


def split(ecosystem: str) -> tuple[str, str]:
    """Split ``"Ubuntu:22.04:LTS"`` into ``("Ubuntu", "22.04:LTS")``."""
    base, _, release = ecosystem.partition(":")
    return base, release


def info(ecosystem: str) -> EcosystemInfo:
    """Behaviour of an ecosystem, with or without its release suffix."""
    base = split(ecosystem)[0]
    try:
        return _ECOSYSTEMS[base]
    except KeyError:
        raise UnsupportedEcosystem(ecosystem, known=known()) from None


def is_supported(ecosystem: str) -> bool:
    """True when ``info(ecosystem)`` would succeed."""
    return split(ecosystem)[0] in _ECOSYSTEMS


def known() -> tuple[str, ...]:
    """Every supported base ecosystem name."""
    return tuple(_ECOSYSTEMS)


_PYPI_SEPARATORS = re.compile(r"[-_.]+")


def normalize_name(ecosystem: str, name: str) -> str:
    """The name under which a package is indexed and compared.

    PyPI names are normalized as PEP 503 says (case-folded, runs of ``-_.`` become
    ``-``); every other ecosystem compares names exactly.
    """
    if split(ecosystem)[0] == "PyPI":
        return _PYPI_SEPARATORS.sub("-", name).lower()
    return name


def applies_to(advisory_ecosystem: str, host_ecosystem: str) -> bool:
    """Whether an advisory's ecosystem covers a host package's ecosystem.

    An advisory for ``Debian:12`` covers ``Debian:12`` only; an advisory for plain
    ``Debian`` (no release) covers every Debian release.
    """
    if advisory_ecosystem == host_ecosystem:
        return True
    adv_base, adv_release = split(advisory_ecosystem)
    return not adv_release and adv_base == split(host_ecosystem)[0]
