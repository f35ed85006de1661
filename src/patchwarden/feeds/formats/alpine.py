"""Alpine secdb (``secdb.alpinelinux.org/v3.x/{main,community}.json``, or the YAML
the old alpine-secdb repository published) to ``Advisory`` values.

A secdb file lists, per origin (source) package, ``secfixes: {fixed version: [ids]}``:
versions below the key are affected by the listed CVEs, and the key ``"0"`` means "never
affected in this branch" (no entry is made).

Ids: one advisory per CVE, ``ALPINE-<CVE>`` as osv.dev names them, holding one affected
entry per (branch, package) in ecosystem ``Alpine:<distroversion>`` with ``note`` the
repository (``main`` / ``community``). ``parse_alpine_secdbs`` merges several files (a
whole mirror) into the same ids; when files are parsed one at a time, each advisory
holds that file's entries only.

When a package lists one CVE under several fixed versions (fixes on older upstream
branches), each becomes its own range ``introduced 0, fixed X``: OSV treats ranges as a
union, so a version is affected unless it is at least the highest of them — the
cautious reading. Entries carry free text next to the id (``CVE-2016-9932 XSA-200``,
``CVE-2017-9229.patch``): the CVE ids are taken and the rest ignored; entries with no
CVE id at all (``XSA-207``) are counted in ``meta["non_cve_entries"]``. Secdb has no
timestamps: ``modified`` is the caller's ``now``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from patchwarden.core.model import Advisory, Affected, AffectedRange, Event
from patchwarden.feeds.formats._common import (
    Where,
    as_object,
    get_list,
    get_object,
    get_str,
    load_json,
    load_yaml,
    require_aware,
    type_name,
    unique,
)
from patchwarden.feeds.parsed import ParsedFeed

_EXPECTED = "an Alpine secdb document ({distroversion, reponame, packages})"
# Tolerates the typos found in real secdb entries: CVE_2017-1234, "CVE 2018-12345".
_CVE_IN_TEXT = re.compile(r"CVE[-_ ](\d{4})-(\d{4,})")


@dataclass(slots=True)
class _Collected:
    advisories: dict[str, list[Affected]] = field(default_factory=dict)
    non_cve_entries: int = 0


def parse_alpine_secdb(data: bytes, source: str, *, now: datetime) -> ParsedFeed:
    """Parse one secdb file, JSON or YAML (recognised from the content)."""
    return parse_alpine_secdbs([(data, source)], source=source, now=now)


def parse_alpine_secdbs(
    documents: Iterable[tuple[bytes, str]], *, source: str, now: datetime
) -> ParsedFeed:
    """Parse several secdb files (``(bytes, name)`` pairs) into merged ``ALPINE-<CVE>``
    advisories; ``source`` names the whole set (for example the mirror folder)."""
    require_aware(now)
    collected = _Collected()
    count = 0
    for data, name in documents:
        count += 1
        _collect(decode_secdb(data, name), name, collected)
    advisories = [
        Advisory(
            id=f"ALPINE-{cve}",
            modified=now,
            source="alpine-secdb",
            aliases=(cve,),
            # The same file given twice (say as YAML and as JSON) must not repeat entries.
            affected=unique(affected),
        )
        for cve, affected in collected.advisories.items()
    ]
    meta = {"files": str(count), "non_cve_entries": str(collected.non_cve_entries)}
    return ParsedFeed(kind="alpine-secdb", source=source, advisories=advisories, meta=meta)


def decode_secdb(data: bytes, source: str) -> object:
    """JSON when the content starts like JSON, YAML otherwise."""
    if data.lstrip()[:1] == b"{":
        return load_json(data, source, expected=_EXPECTED)
    return load_yaml(data, source, expected=_EXPECTED)


def is_secdb(decoded: object) -> bool:
    """Whether a decoded document has secdb's top-level keys."""
    return isinstance(decoded, dict) and "distroversion" in decoded and "packages" in decoded


def _collect(decoded: object, source: str, collected: _Collected) -> None:
    where = Where(source)
    top = as_object(decoded, where, None, expected=_EXPECTED)
    branch = get_str(top, "distroversion", where, required=True).strip()
    repo = get_str(top, "reponame", where)
    ecosystem = f"Alpine:{branch}"
    for index, item in enumerate(get_list(top, "packages", where)):
        path = f"packages[{index}].pkg"
        wrapper = as_object(item, where, f"packages[{index}]", expected="an object with 'pkg'")
        pkg = get_object(wrapper, "pkg", where, path=path)
        name = get_str(pkg, "name", where, path=f"{path}.name", required=True)
        here = where.at(name)
        by_cve: dict[str, list[str]] = {}
        for raw_version, entries in get_object(
            pkg, "secfixes", here, path=f"{path}.secfixes"
        ).items():
            version = _version_key(raw_version, here, f"{path}.secfixes")
            if entries is None:
                continue
            if not isinstance(entries, list):
                raise here.error(
                    f"expected a list of ids, found {type_name(entries)}",
                    field=f"{path}.secfixes.{version}",
                )
            for position, entry in enumerate(entries):
                if not isinstance(entry, str):
                    raise here.error(
                        f"expected an id string, found {type_name(entry)}",
                        field=f"{path}.secfixes.{version}[{position}]",
                    )
                cves = [f"CVE-{year}-{number}" for year, number in _CVE_IN_TEXT.findall(entry)]
                if not cves:
                    collected.non_cve_entries += 1
                if version == "0":
                    continue
                for cve in cves:
                    by_cve.setdefault(cve, []).append(version)
        for cve, versions in by_cve.items():
            ranges = tuple(
                AffectedRange("ECOSYSTEM", (Event("introduced", "0"), Event("fixed", fixed)))
                for fixed in unique(versions)
            )
            collected.advisories.setdefault(cve, []).append(
                Affected(ecosystem=ecosystem, name=name, ranges=ranges, note=repo)
            )


def _version_key(raw: object, where: Where, path: str) -> str:
    # JSON keys are strings; a YAML key may decode to an int (``0:``), which is exact.
    # A float key (``1.10:`` read as 1.1) would silently change the version: refuse it.
    if isinstance(raw, str) and raw.strip():
        return raw.strip()
    if isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw)
    raise where.error(
        f"invalid fixed version key {raw!r}",
        field=path,
        hint="quote fixed versions in YAML secdb files",
    )
