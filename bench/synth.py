"""A synthetic fleet and advisory set, grown from the real shared data.

Fleet: two host profiles built on real inventories and padded to the wanted size with
generated packages of the same shape —

* ``Debian:12``: the real dpkg status file (743 packages, with their source packages),
  padded with generated source packages of one to four binaries each;
* ``AlmaLinux:9``: the real Rocky Linux 9 ``rpm -qa`` inventory (an el9 rebuild, no
  source names, like every ``rpm -qa`` export), padded with generated el9 packages.

Every host starts from its profile's base and drifts: some source packages sit a few
versions older or newer (walking a per-version "ladder" of neighbouring versions in the
native ordering), a few carry a host-only version (a local rebuild), and some packages
are removed while as many are added from a pool of optional packages. Everything is
derived from ``seed``: the same arguments give the same fleet.

Advisories: the real OSV (AlmaLinux, PyPA) and Debian DSA/DLA records, plus generated
ones written in the real feed formats — DSA-list text and AlmaLinux OSV JSON lines —
and parsed by patchwarden's own parsers, so they have exactly the real shape. Generated
fixed versions come from the same ladders: most advisories are history (fixed at or
below the base version, so they hit only hosts that lag behind), a configured number per
profile are open (fixed above the base version), and the rest name packages no host has
(most of a real advisory database is about software you do not run).
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import accumulate
from pathlib import Path

from patchwarden.collect.files import load_inventory_file
from patchwarden.collect.osrelease import os_info_for_ecosystem
from patchwarden.core import versions
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.model import Advisory, InstalledPackage, Inventory, OsInfo
from patchwarden.feeds.formats.detect import parse_bytes, parse_path

DEBIAN = "Debian:12"
ALMA = "AlmaLinux:9"

#: Real inputs, relative to the shared data folder.
DPKG_STATUS = "local-dpkg/var_lib_dpkg_status"
RPM_INVENTORY = "rpm-inventories/go-rpmdb_Rockylinux9WithSQLite3.rpm-qa.txt"
REAL_FEEDS: tuple[tuple[str, str], ...] = (
    ("osv-almalinux/advisories", "osv"),
    ("pypa-advisory-database/pypi_osv_all.jsonl", "osv"),
    ("debian-security-tracker/DSA_list.txt", "debian-dsa"),
    ("debian-security-tracker/DLA_list.txt", "debian-dla"),
)

#: Drift steps along a version ladder and how often each is drawn (hosts lag more
#: often than they run ahead).
DRIFT_STEPS = (-3, -2, -1, 1, 2)
DRIFT_WEIGHTS = (1, 2, 4, 3, 1)

Binary = tuple[str, str, str]  # (name, version, arch)
# A generated advisory before it is written out: the group it names and the rung of its
# fixed version relative to the group's base version (None: no fix yet).
Draft = tuple["Group", int | None]


# ----------------------------------------------------------------- version ladders

_DEB_SECURITY = re.compile(r"^(?P<head>.*)(?P<sep>[+~])deb(?P<rel>\d+)u(?P<n>\d+)$")
_LEAD_INT = re.compile(r"^(\d+)(.*)$")
_NUMERIC_PREFIX = re.compile(r"^(\d+(?:\.\d+)*)(.*)$")


def _split_epoch(version: str) -> tuple[str, str]:
    if ":" in version:
        epoch, rest = version.split(":", 1)
        return epoch + ":", rest
    return "", version


def _lower_upstream(upstream: str) -> str | None:
    """The dotted numeric prefix lowered by one (``2.36+dfsg`` → ``2.35+dfsg``,
    ``1.2.0`` → ``1.1.9``); None when there is nothing left to lower."""
    match = _NUMERIC_PREFIX.match(upstream)
    if match is None:
        return None
    parts = [int(p) for p in match.group(1).split(".")]
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] > 0:
            parts[i] -= 1
            parts[i + 1 :] = [9] * (len(parts) - i - 1)
            return ".".join(map(str, parts)) + match.group(2)
    return None


def _dpkg_step(version: str, up: bool) -> str | None:
    epoch, rest = _split_epoch(version)
    upstream, dash, revision = rest.rpartition("-")
    if not dash:
        upstream, revision = rest, ""
    # The security-update suffix sits on the revision (or the version, for native
    # packages): +deb12u1, +deb12u2, ...
    tail = revision if dash else upstream
    security = _DEB_SECURITY.match(tail)
    # Below "~deb12u1" comes the previous upstream, not the bare revision (which sorts
    # above it), so that case falls through to lowering the upstream version.
    if security and (up or security["sep"] == "+" or int(security["n"]) > 1):
        head, sep, release, n = security.group("head", "sep", "rel", "n")
        if up:
            tail = f"{head}{sep}deb{release}u{int(n) + 1}"
        else:
            tail = f"{head}{sep}deb{release}u{int(n) - 1}" if int(n) > 1 else head
    elif up:
        tail += "+deb12u1"
    elif dash and (lead := _LEAD_INT.match(revision)) and int(lead[1]) > 1:
        tail = str(int(lead[1]) - 1)
    else:
        lowered = _lower_upstream(upstream)
        if lowered is None:
            return None
        return f"{epoch}{lowered}-1" if dash else f"{epoch}{lowered}"
    return f"{epoch}{upstream}-{tail}" if dash else f"{epoch}{tail}"


def _rpm_step(version: str, up: bool) -> str | None:
    epoch, rest = _split_epoch(version)
    upstream, dash, release = rest.rpartition("-")
    if not dash:
        return None
    lead = _LEAD_INT.match(release)
    if up:
        release = f"{int(lead[1]) + 1}{lead[2]}" if lead else release + ".1"
    elif lead and int(lead[1]) > 1:
        release = f"{int(lead[1]) - 1}{lead[2]}"
    else:
        lowered = _lower_upstream(upstream)
        if lowered is None:
            return None
        upstream = lowered
    return f"{epoch}{upstream}-{release}"


class Ladders:
    """Neighbouring versions of installed versions, checked against the native order.

    ``at(ecosystem, version, step)`` is the version ``step`` places above (positive) or
    below (negative) ``version``; a ladder that runs out (nothing lower to derive) stays
    on its last rung, so the result is never out of order.
    """

    def __init__(self) -> None:
        self._rungs: dict[tuple[str, str, bool], list[str]] = {}

    def at(self, ecosystem: str, version: str, step: int) -> str:
        """The version ``step`` rungs away from ``version`` (0: itself)."""
        if step == 0:
            return version
        up = step > 0
        rungs = self._rungs.setdefault((ecosystem, version, up), [version])
        wanted = abs(step)
        stepper = _dpkg_step if ecosystem.startswith("Debian") else _rpm_step
        key = versions.key_function(ecosystem)
        while len(rungs) <= wanted:
            candidate = stepper(rungs[-1], up)
            if candidate is None or not _beyond(key, rungs[-1], candidate, up=up):
                break
            rungs.append(candidate)
        return rungs[min(wanted, len(rungs) - 1)]


def _beyond(
    key: Callable[[str], versions.VersionKey], last: str, candidate: str, *, up: bool
) -> bool:
    """Whether ``candidate`` sorts strictly above (``up``) or below ``last``."""
    try:
        return key(candidate) > key(last) if up else key(candidate) < key(last)
    except ValidationFailed:
        return False


# ------------------------------------------------------------------ generated names

_CONSONANTS = "bcdfghjklmnprstvwz"
_VOWELS = "aeiou"


def _stem(rng: random.Random, taken: set[str]) -> str:
    while True:
        syllables = rng.randint(2, 4)
        stem = "".join(rng.choice(_CONSONANTS) + rng.choice(_VOWELS) for _ in range(syllables))
        if rng.random() < 0.2:
            stem += str(rng.randint(2, 9))
        if stem not in taken:
            taken.add(stem)
            return stem


def _debian_version(rng: random.Random) -> str:
    upstream = ".".join(str(rng.randint(0, 30)) for _ in range(rng.choice((2, 2, 3, 3, 3))))
    upstream += rng.choice(("", "", "", "", "", "+dfsg", "+ds", "+really" + upstream))
    revision = str(rng.randint(1, 6))
    if rng.random() < 0.3:
        revision += f"+deb12u{rng.randint(1, 4)}"
    epoch = f"{rng.randint(1, 3)}:" if rng.random() < 0.05 else ""
    return f"{epoch}{upstream}-{revision}"


def _rpm_version(rng: random.Random) -> str:
    upstream = ".".join(str(rng.randint(0, 30)) for _ in range(rng.choice((2, 3, 3))))
    release = f"{rng.randint(1, 40)}.el9"
    if rng.random() < 0.4:
        release += f"_{rng.randint(0, 6)}"
        if rng.random() < 0.3:
            release += f".{rng.randint(1, 3)}"
    epoch = f"{rng.randint(1, 3)}:" if rng.random() < 0.05 else ""
    return f"{epoch}{upstream}-{release}"


@dataclass(frozen=True, slots=True)
class Group:
    """Binary packages built from one source package, upgraded together.

    ``source`` is empty for rpm packages (``rpm -qa`` exports carry no source).
    """

    source: str
    source_version: str
    binaries: tuple[Binary, ...]

    @property
    def advisory_names(self) -> tuple[tuple[str, str], ...]:
        """The (name, version) pairs an advisory for this group names: the source for
        Debian, every binary for rpm (AlmaLinux advisories list binary RPMs)."""
        if self.source:
            return ((self.source, self.source_version),)
        return tuple((name, version) for name, version, _arch in self.binaries)


def _debian_group(rng: random.Random, taken: set[str]) -> Group:
    stem = _stem(rng, taken)
    version = _debian_version(rng)
    soname = rng.randint(0, 9)
    shapes: list[tuple[str, ...]] = [
        (stem,),
        (stem, f"{stem}-common"),
        (f"lib{stem}{soname}", f"lib{stem}-dev"),
        (stem, f"{stem}-data", f"lib{stem}{soname}"),
        (f"python3-{stem}",),
        (stem, f"{stem}-common", f"{stem}-doc", f"lib{stem}{soname}"),
    ]
    names = rng.choices(shapes, weights=(40, 15, 15, 10, 10, 10))[0]
    source = f"python-{stem}" if names[0].startswith("python3-") else stem
    binaries = []
    for name in names:
        arch = "all" if name.endswith(("-common", "-data", "-doc")) else "amd64"
        # A binNMU rebuild changes the binary version only.
        bin_version = version + "+b1" if arch == "amd64" and rng.random() < 0.03 else version
        binaries.append((name, bin_version, arch))
    return Group(source, version, tuple(binaries))


def _rpm_group(rng: random.Random, taken: set[str]) -> Group:
    stem = _stem(rng, taken)
    version = _rpm_version(rng)
    shapes: list[tuple[str, ...]] = [
        (stem,),
        (stem, f"{stem}-libs"),
        (stem, f"{stem}-libs", f"{stem}-devel"),
        (f"python3-{stem}",),
        (f"{stem}-common", stem, f"{stem}-tools"),
    ]
    names = rng.choices(shapes, weights=(45, 20, 15, 10, 10))[0]
    arch = "noarch" if names[0].startswith("python3-") else "x86_64"
    return Group("", "", tuple((name, version, arch) for name in names))


def _pad(
    groups: list[Group],
    target: int,
    rng: random.Random,
    taken: set[str],
    *,
    debian: bool,
) -> None:
    """Append generated groups until ``groups`` holds ``target`` binaries."""
    count = sum(len(g.binaries) for g in groups)
    while count < target:
        group = _debian_group(rng, taken) if debian else _rpm_group(rng, taken)
        keep = group.binaries[: target - count]
        groups.append(Group(group.source, group.source_version, keep))
        count += len(keep)


def _generated(rng: random.Random, taken: set[str], binaries: int, *, debian: bool) -> list[Group]:
    groups: list[Group] = []
    _pad(groups, binaries, rng, taken, debian=debian)
    return groups


# ----------------------------------------------------------------------- the fleet


@dataclass(slots=True)
class Profile:
    """One kind of host: its ecosystem, base packages and the pools around them."""

    name: str
    ecosystem: str
    os: OsInfo
    base: list[Group]
    extras: list[Group]
    archive: list[Group]
    real_binaries: int


@dataclass(frozen=True, slots=True)
class Host:
    """One synthetic host."""

    index: int
    profile: str
    inventory: Inventory
    criticality: int
    exposure: str


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """Size and drift of the synthetic fleet; rates are per host."""

    hosts: int = 10_000
    packages: int = 1_500
    debian_share: float = 0.6
    drift_rate: float = 0.05  # source packages at another version than the base
    churn_rate: float = 0.02  # packages removed, and as many added from the extras
    unique_rate: float = 0.002  # source packages at a version only this host has
    extras_share: float = 0.15  # size of the optional pool, relative to the base
    archive_factor: int = 4  # never-installed names per base name, for advisories
    seed: int = 1


@dataclass(slots=True)
class Fleet:
    """The hosts, their profiles and the ladders that drifted them."""

    config: FleetConfig
    profiles: dict[str, Profile]
    hosts: list[Host]
    ladders: Ladders
    interned: dict[tuple[str, ...], InstalledPackage] = field(default_factory=dict)

    def distinct_packages(self) -> list[InstalledPackage]:
        """Every distinct installed package of the fleet."""
        return list(self.interned.values())


def _real_debian(root: Path) -> list[Group]:
    inventory = load_inventory_file(root / DPKG_STATUS, ecosystem=DEBIAN, hostname="real")
    by_source: dict[str, list[InstalledPackage]] = {}
    for package in inventory.packages:
        by_source.setdefault(package.source_name or package.name, []).append(package)
    return [
        Group(
            source,
            packages[0].source_version or packages[0].version,
            tuple((p.name, p.version, p.arch) for p in packages),
        )
        for source, packages in by_source.items()
    ]


def _real_rpm(root: Path) -> list[Group]:
    inventory = load_inventory_file(root / RPM_INVENTORY, ecosystem=ALMA, hostname="real")
    return [Group("", "", ((p.name, p.version, p.arch),)) for p in inventory.packages]


def build_profiles(root: Path, config: FleetConfig) -> dict[str, Profile]:
    """The Debian 12 and AlmaLinux 9 profiles: real base, generated padding and pools."""
    rng = random.Random(f"profiles:{config.seed}")
    profiles: dict[str, Profile] = {}
    for name, ecosystem, real, debian in (
        ("debian12", DEBIAN, _real_debian(root), True),
        ("alma9", ALMA, _real_rpm(root), False),
    ):
        taken = {b[0] for g in real for b in g.binaries} | {g.source for g in real}
        real_binaries = sum(len(g.binaries) for g in real)
        base = list(real)
        if real_binaries > config.packages:
            base = _trim(base, config.packages)
        _pad(base, config.packages, rng, taken, debian=debian)
        extras = _generated(rng, taken, int(config.packages * config.extras_share), debian=debian)
        archive = _generated(rng, taken, config.packages * config.archive_factor, debian=debian)
        profiles[name] = Profile(
            name=name,
            ecosystem=ecosystem,
            os=os_info_for_ecosystem(ecosystem),
            base=base,
            extras=extras,
            archive=archive,
            real_binaries=min(real_binaries, config.packages),
        )
    return profiles


def _trim(groups: list[Group], target: int) -> list[Group]:
    kept: list[Group] = []
    count = 0
    for group in groups:
        if count >= target:
            break
        binaries = group.binaries[: target - count]
        kept.append(Group(group.source, group.source_version, binaries))
        count += len(binaries)
    return kept


def _local_version(version: str, host: int, debian: bool) -> str:
    """A host-only rebuild of ``version`` (sorts just above it)."""
    return f"{version}+h{host}" if debian else f"{version}.h{host}"


def build_fleet(root: Path, config: FleetConfig) -> Fleet:
    """Generate every host of the fleet (deterministic for a given config)."""
    profiles = build_profiles(root, config)
    fleet = Fleet(config=config, profiles=profiles, hosts=[], ladders=Ladders())
    debian_hosts = round(config.hosts * config.debian_share)
    for index in range(config.hosts):
        profile = profiles["debian12" if index < debian_hosts else "alma9"]
        fleet.hosts.append(_make_host(fleet, profile, index))
    return fleet


def _make_host(fleet: Fleet, profile: Profile, index: int) -> Host:
    config = fleet.config
    rng = random.Random(f"host:{config.seed}:{index}")
    base = profile.base
    n = len(base)
    steps: dict[int, int] = {}
    for i in rng.sample(range(n), k=min(n, round(n * config.drift_rate))):
        steps[i] = rng.choices(DRIFT_STEPS, DRIFT_WEIGHTS)[0]
    unique = set(rng.sample(range(n), k=min(n, _poisson(rng, n * config.unique_rate))))
    removed: set[int] = set()
    to_remove = round(config.packages * config.churn_rate)
    dropped = 0
    for i in rng.sample(range(n), k=n):
        if dropped >= to_remove:
            break
        removed.add(i)
        dropped += len(base[i].binaries)

    packages: list[InstalledPackage] = []
    for i, group in enumerate(base):
        if i not in removed:
            packages.extend(
                _installed(
                    fleet, profile, group, step=steps.get(i, 0), host=index, unique=i in unique
                )
            )
    added = 0
    for group in rng.sample(profile.extras, k=len(profile.extras)):
        if added >= dropped:
            break
        step = rng.choices(DRIFT_STEPS, DRIFT_WEIGHTS)[0] if rng.random() < 0.3 else 0
        installed = _installed(fleet, profile, group, step=step, host=index, unique=False)
        packages.extend(installed)
        added += len(installed)
    hostname = f"{profile.name}-{index:05d}.bench.example"
    inventory = Inventory(
        hostname=hostname,
        packages=tuple(packages),
        os=profile.os,
        kernel="6.1.0-bench" if profile.name == "debian12" else "5.14.0-bench.el9",
        arch="x86_64",
        source="bench",
    )
    return Host(
        index=index,
        profile=profile.name,
        inventory=inventory,
        criticality=rng.choices((1, 2, 3, 4, 5), weights=(1, 2, 4, 2, 1))[0],
        exposure="internet" if rng.random() < 0.15 else "internal",
    )


def _poisson(rng: random.Random, mean: float) -> int:
    """A small Poisson draw (Knuth's method; ``mean`` stays in single digits here)."""
    if mean <= 0:
        return 0
    limit = pow(2.718281828459045, -mean)
    k, p = 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


def _installed(
    fleet: Fleet, profile: Profile, group: Group, *, step: int, host: int, unique: bool
) -> list[InstalledPackage]:
    """The group's binaries as installed on one host, ``step`` rungs from the base."""
    eco = profile.ecosystem
    debian = profile.name == "debian12"
    ladders = fleet.ladders
    source_version = ladders.at(eco, group.source_version, step) if group.source else ""
    if unique and group.source:
        source_version = _local_version(source_version, host, debian)
    result = []
    for name, version, arch in group.binaries:
        bin_version = ladders.at(eco, version, step)
        if unique:
            bin_version = _local_version(bin_version, host, debian)
        key = (eco, name, bin_version, arch, group.source, source_version)
        package = fleet.interned.get(key)
        if package is None:
            package = InstalledPackage(name, bin_version, eco, arch, group.source, source_version)
            fleet.interned[key] = package
        result.append(package)
    return result


def redrift(fleet: Fleet, host: Host, salt: int) -> Inventory:
    """A changed inventory for ``host``: a tenth of its drifted packages moved to other
    rungs plus one host-only rebuild (what one ``apt upgrade`` or ``dnf update`` of a
    subset looks like to the server)."""
    profile = fleet.profiles[host.profile]
    rng = random.Random(f"redrift:{fleet.config.seed}:{host.index}:{salt}")
    by_name = {b[0]: g for g in (*profile.base, *profile.extras) for b in g.binaries}
    current = {p.name: p for p in host.inventory.packages}
    groups = list(dict.fromkeys(by_name[name] for name in current if name in by_name))
    changed: dict[str, InstalledPackage] = {}
    picks = rng.sample(groups, k=max(1, len(groups) // 10))
    for n, group in enumerate(picks):
        step = rng.choice((-2, -1, 1, 2))
        unique = n == 0
        rebuild_host = host.index + salt * 100_000  # a host-only version never seen before
        for package in _installed(
            fleet, profile, group, step=step, host=rebuild_host, unique=unique
        ):
            if package.name in current:
                changed[package.name] = package
    packages = tuple(changed.get(p.name, p) for p in host.inventory.packages)
    return Inventory(
        hostname=host.inventory.hostname,
        packages=packages,
        os=host.inventory.os,
        kernel=host.inventory.kernel,
        arch=host.inventory.arch,
        source="bench",
    )


# ----------------------------------------------------------------------- advisories


@dataclass(frozen=True, slots=True)
class AdvisoryConfig:
    """Size and shape of the advisory set."""

    total: int = 200_000  # real + generated
    debian_share: float = 0.6  # of the generated ones: DSA-like Debian 12, rest AlmaLinux 9
    open_debian: int = 40  # generated advisories unfixed at the Debian base versions
    open_rpm: int = 15  # same for the AlmaLinux profile (the real ALSA ones come on top)
    installed_share: float = 0.25  # of history advisories: on installed (base/extra) names
    advised_share: float = 0.6  # installed names that have any history advisory at all
    zipf: float = 0.8  # skew of advisories per name (a few names have thousands)
    seed: int = 1


def load_real_advisories(root: Path, now: datetime) -> tuple[list[Advisory], dict[str, int]]:
    """Every real advisory of the shared data, and how many each feed gave."""
    advisories: list[Advisory] = []
    counts: dict[str, int] = {}
    for relative, kind in REAL_FEEDS:
        feed = parse_path(root / relative, kind, now=now)
        advisories.extend(feed.advisories)
        counts[relative] = len(feed.advisories)
    return advisories, counts


def _zipf_weights(count: int, exponent: float) -> list[float]:
    return list(accumulate(1.0 / (rank**exponent) for rank in range(1, count + 1)))


def _history_step(rng: random.Random) -> int:
    """How many rungs below the base a historical fix sits (mostly recent ones)."""
    return -min(1 + int(rng.expovariate(1 / 6)), 40)


def _draft(
    profile: Profile, count: int, open_count: int, config: AdvisoryConfig, rng: random.Random
) -> list[Draft]:
    """Pick name and fixed rung of ``count`` advisories for one profile.

    ``None`` as the step means "no fix yet" (only ever on never-installed names).
    """
    drafts: list[Draft] = []
    for group in rng.sample(profile.base, k=min(open_count, len(profile.base), count)):
        drafts.append((group, rng.choice((1, 1, 2))))
    # Only some installed packages ever get advisories (a real Debian 12 host has
    # sources without a single CVE); history advisories go to those.
    installed = [*profile.base, *profile.extras]
    rng.shuffle(installed)
    installed = installed[: max(1, round(len(installed) * config.advised_share))]
    archive = list(profile.archive)
    rng.shuffle(archive)
    inst_cum = _zipf_weights(len(installed), config.zipf)
    arch_cum = _zipf_weights(len(archive), config.zipf)
    history = count - len(drafts)
    for _ in range(history):
        if rng.random() < config.installed_share:
            group = rng.choices(installed, cum_weights=inst_cum)[0]
            drafts.append((group, _history_step(rng)))
        else:
            group = rng.choices(archive, cum_weights=arch_cum)[0]
            step = None if rng.random() < 0.02 else _history_step(rng) + rng.randint(0, 3)
            drafts.append((group, step))
    return drafts


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_RATINGS = ("Critical", "Important", "Important", "Moderate", "Moderate", "Low")


def _cves(rng: random.Random, serial: int) -> list[str]:
    return [
        f"CVE-{2014 + (serial + i) % 12}-{900000 + serial * 3 + i}"
        for i in range(rng.randint(1, 3))
    ]


def _dsa_text(drafts: list[Draft], ladders: Ladders, rng: random.Random, first: int) -> bytes:
    """The drafts as a Debian DSA list (``data/DSA/list`` format)."""
    lines: list[str] = []
    day0 = datetime(2026, 6, 30, tzinfo=UTC)
    for n, (group, step) in enumerate(drafts):
        serial = first + n
        when = day0 - timedelta(days=n * 4000 // max(1, len(drafts)))
        name, version = group.advisory_names[0]
        lines.append(
            f"[{when.day:02d} {_MONTHS[when.month - 1]} {when.year}] DSA-{serial}-1 {name}"
            " - security update"
        )
        lines.append("\t{" + " ".join(_cves(rng, serial)) + "}")
        if step is None:
            lines.append(f"\t[bookworm] - {name} <unfixed>")
        else:
            lines.append(f"\t[bookworm] - {name} {ladders.at(DEBIAN, version, step)}")
    return ("\n".join(lines) + "\n").encode()


def _alsa_jsonl(drafts: list[Draft], ladders: Ladders, rng: random.Random, first: int) -> bytes:
    """The drafts as AlmaLinux OSV records, one JSON document per line."""
    out: list[bytes] = []
    day0 = datetime(2026, 6, 30, tzinfo=UTC)
    for n, (group, step) in enumerate(drafts):
        serial = first + n
        when = day0 - timedelta(days=n * 1500 // max(1, len(drafts)))
        stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        cves = _cves(rng, serial)
        rating = rng.choice(_RATINGS)
        lead = group.binaries[0][0]
        affected = []
        for name, version in group.advisory_names:
            events: list[dict[str, str]] = [{"introduced": "0"}]
            if step is not None:
                events.append({"fixed": ladders.at(ALMA, version, step)})
            affected.append(
                {
                    "package": {"ecosystem": ALMA, "name": name},
                    "ranges": [{"type": "ECOSYSTEM", "events": events}],
                }
            )
        record = {
            "id": f"ALSA-{when.year}:{serial}",
            "summary": f"{rating}: {lead} security update",
            "related": cves,
            "published": stamp,
            "modified": stamp,
            "details": f"An update for {lead} is now available for AlmaLinux 9.",
            "references": [
                {
                    "url": f"https://errata.almalinux.org/9/ALSA-{when.year}-{serial}.html",
                    "type": "ADVISORY",
                },
                *(
                    {"url": f"https://access.redhat.com/security/cve/{c}", "type": "REPORT"}
                    for c in cves
                ),
            ],
            "affected": affected,
        }
        out.append(json.dumps(record, separators=(",", ":")).encode())
    return b"\n".join(out) + b"\n"


def build_advisories(
    root: Path, fleet: Fleet, config: AdvisoryConfig, now: datetime
) -> tuple[list[Advisory], dict[str, int]]:
    """Real advisories plus generated ones up to ``config.total``; and the counts."""
    real, counts = load_real_advisories(root, now)
    generated = max(0, config.total - len(real))
    deb_count = round(generated * config.debian_share)
    rpm_count = generated - deb_count
    rng = random.Random(f"advisories:{config.seed}")
    debian = _draft(fleet.profiles["debian12"], deb_count, config.open_debian, config, rng)
    rpm = _draft(fleet.profiles["alma9"], rpm_count, config.open_rpm, config, rng)
    advisories = list(real)
    if deb_count:
        text = _dsa_text(debian, fleet.ladders, rng, first=100_000)
        feed = parse_bytes(text, "generated-dsa-list", "debian-dsa", now=now)
        advisories.extend(feed.advisories)
        counts["generated DSA-like (Debian:12)"] = len(feed.advisories)
    if rpm_count:
        data = _alsa_jsonl(rpm, fleet.ladders, rng, first=100_000)
        feed = parse_bytes(data, "generated-alsa.jsonl", "osv", now=now)
        advisories.extend(feed.advisories)
        counts["generated ALSA-like (AlmaLinux:9)"] = len(feed.advisories)
    counts["open at base (Debian, generated)"] = min(config.open_debian, deb_count)
    counts["open at base (AlmaLinux, generated)"] = min(config.open_rpm, rpm_count)
    return advisories, counts


def affected_entries(advisories: Iterable[Advisory]) -> int:
    """How many (advisory, package) entries a list of advisories holds."""
    return sum(len(a.affected) for a in advisories)


def host_sample(hosts: Sequence[Host], count: int) -> list[Host]:
    """``count`` hosts spread evenly over the fleet (so both profiles are represented)."""
    if count >= len(hosts):
        return list(hosts)
    stride = len(hosts) / count
    return [hosts[int(i * stride)] for i in range(count)]
