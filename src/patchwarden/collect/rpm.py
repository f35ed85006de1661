"""rpm inventories: ``rpm -qa`` NEVRA lines and tab-separated ``rpm -qa --qf`` output.

Versions are stored as the full EVR, ``epoch:version-release`` with the epoch only when
non-zero (``1:3.0.7-27.el9``), so they compare directly with advisory fixed versions.
The source package comes from the SOURCERPM file name (``openssl-3.0.7-27.el9.src.rpm``);
it shares the binary's epoch because subpackages inherit the spec's Epoch.

Line shapes read (what rpm and its front ends print):

* ``rpm -qa`` (``%{nvra}``): ``openssl-libs-3.0.7-27.el9.x86_64`` — no epoch at all;
* ``rpm -qa --qf '%{nevra}\\n'``: ``openssl-libs-1:3.0.7-27.el9.x86_64``;
* yum/dnf ``envra``: ``1:openssl-libs-3.0.7-27.el9.x86_64``;
* ``gpg-pubkey-<keyid>-<date>`` (no arch): an imported signing key, not software — skipped.

Stdlib only (the host agent reuses this module).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from patchwarden.collect.parsing import PackageCollector, ParsedPackages, numbered_lines
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage

# The query patchwarden runs and documents (the "rpm-qf" format).
RPM_QF_FORMAT = "%{NAME}\\t%{EPOCHNUM}\\t%{VERSION}\\t%{RELEASE}\\t%{ARCH}\\t%{SOURCERPM}\\n"
RPM_QF_COLUMNS = ("name", "epochnum", "version", "release", "arch", "sourcerpm")

# Architectures rpm builds for; a trailing ".<word>" is an arch only if listed here,
# otherwise it belongs to the release (``1.el9`` has no arch).
RPM_ARCHES = frozenset(
    {
        "noarch",
        "x86_64",
        "x86_64_v2",
        "x86_64_v3",
        "x86_64_v4",
        "amd64",
        "i386",
        "i486",
        "i586",
        "i686",
        "athlon",
        "geode",
        "pentium3",
        "pentium4",
        "ia32e",
        "ia64",
        "aarch64",
        "arm64",
        "armv5tel",
        "armv6l",
        "armv6hl",
        "armv7l",
        "armv7hl",
        "armv7hnl",
        "armv8l",
        "armhfp",
        "ppc",
        "ppc64",
        "ppc64le",
        "ppc64p7",
        "ppc64iseries",
        "ppc64pseries",
        "s390",
        "s390x",
        "sparc",
        "sparcv9",
        "sparc64",
        "alpha",
        "mips",
        "mipsel",
        "mips64",
        "mips64el",
        "riscv64",
        "loongarch64",
        "src",
        "nosrc",
    }
)

_VERSION_CHARS = re.compile(r"^[A-Za-z0-9._+~^]+$")
_NAME_CHARS = re.compile(r"^[^\s/:]+$")
_MARINER_MANIFEST_COLUMNS = 10


@dataclass(frozen=True)
class Nevra:
    """One parsed rpm package label. ``epoch`` is ``0`` when absent; ``arch`` may be ``""``."""

    name: str
    epoch: int
    version: str
    release: str
    arch: str = ""
    epoch_given: bool = False

    @property
    def evr(self) -> str:
        """``epoch:version-release``, the epoch only when non-zero."""
        return format_evr(self.epoch, self.version, self.release)


def format_evr(epoch: int, version: str, release: str) -> str:
    """``1:3.0.7-27.el9`` (or ``3.0.7-27.el9`` for epoch 0)."""
    if epoch:
        return f"{epoch}:{version}-{release}"
    return f"{version}-{release}"


def parse_nevra(label: str) -> Nevra:
    """Parse ``name-[epoch:]version-release[.arch]`` or ``epoch:name-version-release.arch``.

    Raises ``ValueError`` with the reason when the label is not a package label.
    """
    text = label.strip()
    if not text or any(ch.isspace() for ch in text):
        raise ValueError("empty or contains whitespace")
    leading_epoch: str | None = None
    head, colon, tail = text.partition(":")
    if colon and head.isdigit() and "-" not in head:
        leading_epoch, text = head, tail
    arch = ""
    stem, dot, last = text.rpartition(".")
    if dot and (last in RPM_ARCHES or last == "(none)"):
        text, arch = stem, ("" if last == "(none)" else last)
    elif dot and last == "":
        # "gpg-pubkey-...-..." rendered with an empty %{ARCH}.
        text = stem
    parts = text.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError("expected name-version-release")
    name, version, release = parts
    epoch_text = leading_epoch
    if ":" in version:
        inner, version = version.split(":", 1)
        if leading_epoch is not None and inner != leading_epoch:
            raise ValueError("two different epochs")
        epoch_text = inner
    return _checked(name, epoch_text, version, release, arch)


def _checked(name: str, epoch: str | None, version: str, release: str, arch: str) -> Nevra:
    if not _NAME_CHARS.match(name):
        raise ValueError(f"invalid package name {name!r}")
    for what, value in (("version", version), ("release", release)):
        if not _VERSION_CHARS.match(value):
            raise ValueError(f"invalid {what} {value!r}")
    number = 0
    given = epoch not in (None, "", "(none)")
    if given:
        if epoch is None or not epoch.isdigit():
            raise ValueError(f"epoch {epoch!r} is not a number")
        number = int(epoch)
    return Nevra(name, number, version, release, arch, epoch_given=given)


def parse_source_rpm(filename: str) -> tuple[str, str, str]:
    """``openssl-3.0.7-27.el9.src.rpm`` -> ``("openssl", "3.0.7", "27.el9")``.

    Raises ``ValueError`` when the name is not a source rpm file name.
    """
    for suffix in (".src.rpm", ".nosrc.rpm"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            break
    else:
        raise ValueError(f"{filename!r} does not end in .src.rpm")
    parts = stem.rsplit("-", 2)
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"{filename!r} is not name-version-release.src.rpm")
    return parts[0], parts[1], parts[2]


def _package(
    nevra: Nevra, sourcerpm: str, ecosystem: str, collector: PackageCollector, line: int
) -> None:
    source_name = source_version = ""
    if sourcerpm and sourcerpm != "(none)":
        try:
            src_name, src_version, src_release = parse_source_rpm(sourcerpm)
        except ValueError as exc:
            collector.report(line, f"{nevra.name}: source rpm ignored: {exc}")
        else:
            source_name = src_name
            source_version = format_evr(nevra.epoch, src_version, src_release)
    collector.add(
        InstalledPackage(nevra.name, nevra.evr, ecosystem, nevra.arch, source_name, source_version),
        line,
    )


def _is_key(nevra: Nevra) -> bool:
    return nevra.name == "gpg-pubkey"


def parse_rpm_qa(
    text: str, *, ecosystem: str = "", source: str = "<rpm -qa output>"
) -> ParsedPackages:
    """Packages from ``rpm -qa`` output, one NEVRA label per line.

    Such lines carry no source package. Plain ``rpm -qa`` omits epochs; when no line
    has one, a problem says so, because an epoch-less version can compare wrongly
    with advisories (``1:3.0.7-28`` is newer than ``3.0.8-1``).
    """
    collector = PackageCollector(source, "rpm -qa output")
    any_epoch = False
    for number, line in numbered_lines(text):
        if not line.strip():
            continue
        try:
            nevra = parse_nevra(line)
        except ValueError as exc:
            collector.bad(number, f"not a package label {line.strip()[:80]!r}: {exc}")
            continue
        if _is_key(nevra):
            continue
        any_epoch = any_epoch or nevra.epoch_given
        _package(nevra, "", ecosystem, collector, number)
    if not any_epoch:
        collector.note(
            "no package shows an epoch: plain `rpm -qa` omits them, so versions of "
            "packages with an epoch compare wrongly; collect with rpm -qa --qf "
            f"'{RPM_QF_FORMAT}'"
        )
    return collector.result()


def parse_rpm_qf(
    text: str, *, ecosystem: str = "", source: str = "<rpm -qa --qf output>"
) -> ParsedPackages:
    """Packages from tab-separated ``rpm -qa --qf`` output.

    Column layouts read:

    * ``RPM_QF_FORMAT``: name, epochnum, version, release, arch, sourcerpm;
    * any layout with a header row naming its columns (``epochnum``/``epoch``,
      ``name``, ``version``, ``release``, ``arch``, ``sourcerpm``; others ignored),
      e.g. an rpmdb dump;
    * CBL-Mariner / Azure Linux ``/var/lib/rpmmanifest/container-manifest-2`` (10
      columns: name, version-release, installtime, buildtime, vendor, ``(none)``, size,
      arch, epochnum, sourcerpm).
    """
    collector = PackageCollector(source, "rpm -qa --qf output")
    layout: dict[str, int] | None = None
    for number, line in numbered_lines(text):
        if not line.strip():
            continue
        columns = [column.strip() for column in line.split("\t")]
        if layout is None:
            layout = _layout(columns)
            if layout is None:
                raise InventoryError(
                    f"not rpm -qa --qf output: {len(columns)} tab-separated columns; "
                    f"expected {len(RPM_QF_COLUMNS)} ({', '.join(RPM_QF_COLUMNS)}), "
                    "a header row, or a 10-column container manifest",
                    source=source,
                    line=number,
                )
            if "header" in layout:
                continue
        width = layout["width"]
        if len(columns) != width:
            collector.bad(number, f"expected {width} tab-separated columns, found {len(columns)}")
            continue
        try:
            nevra, sourcerpm = _nevra_from_columns(columns, layout)
        except ValueError as exc:
            collector.bad(number, f"{columns[layout['name']] or '?'}: {exc}")
            continue
        if _is_key(nevra):
            continue
        _package(nevra, sourcerpm, ecosystem, collector, number)
    return collector.result()


def _layout(columns: list[str]) -> dict[str, int] | None:
    """Column positions from the first line: a header, the default, or a manifest."""
    lowered = [column.lower().lstrip("%{").rstrip("}") for column in columns]
    if "name" in lowered and "version" in lowered and "release" in lowered:
        layout = {"header": 1, "width": len(columns)}
        for key in ("name", "version", "release", "arch", "sourcerpm"):
            if key in lowered:
                layout[key] = lowered.index(key)
        for key in ("epochnum", "epoch"):
            if key in lowered:
                layout["epoch"] = lowered.index(key)
                break
        return layout
    if len(columns) == len(RPM_QF_COLUMNS):
        return {
            "width": 6,
            "name": 0,
            "epoch": 1,
            "version": 2,
            "release": 3,
            "arch": 4,
            "sourcerpm": 5,
        }
    if len(columns) == _MARINER_MANIFEST_COLUMNS and "-" in columns[1]:
        return {"width": 10, "name": 0, "evr": 1, "arch": 7, "epoch": 8, "sourcerpm": 9}
    return None


def _nevra_from_columns(columns: list[str], layout: dict[str, int]) -> tuple[Nevra, str]:
    """The package label and source rpm file name of one row."""

    def column(key: str) -> str:
        return columns[layout[key]] if key in layout else ""

    if "evr" in layout:
        version, dash, release = column("evr").rpartition("-")
        if not dash:
            raise ValueError(f"version-release {column('evr')!r} has no '-'")
    else:
        version, release = column("version"), column("release")
    arch = column("arch")
    nevra = _checked(
        column("name"), column("epoch"), version, release, "" if arch == "(none)" else arch
    )
    return nevra, column("sourcerpm")
