"""Dynamic asset-group filters: validation and evaluation (pure).

A filter is a JSON object; every key present must hold for an asset to be a member
(keys are ANDed, list values are ORed within a key):

==================  ==========================================================
key                 matches when
==================  ==========================================================
``tags_all``        the asset has every listed tag
``tags_any``        the asset has at least one listed tag
``os``              the OS id is one of the list (``debian``, ``almalinux``, …)
``ecosystem``       the OS ecosystem is one of the list, or starts with a listed
                    base followed by ``:`` (``Debian`` matches ``Debian:12``)
``environment``     the environment is one of the list
``location``        the location is one of the list
``kind``            the asset kind is one of the list
``exposure``        ``internet`` or ``internal``
``criticality_min`` criticality is at least this (1-5)
``criticality_max`` criticality is at most this (1-5)
``hostname``        the hostname matches one of the shell-style patterns
``source``          the asset source is one of the list (agent, ssh, cmdb, …)
==================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from patchwarden.core.errors import ValidationFailed

_LIST_KEYS = (
    "tags_all",
    "tags_any",
    "os",
    "ecosystem",
    "environment",
    "location",
    "kind",
    "hostname",
    "source",
)
_INT_KEYS = ("criticality_min", "criticality_max")
FILTER_KEYS = (*_LIST_KEYS, *_INT_KEYS, "exposure")


@dataclass(frozen=True, slots=True)
class AssetFacts:
    """What a group filter can look at."""

    hostname: str
    os_id: str = ""
    ecosystem: str = ""
    environment: str = ""
    location: str = ""
    kind: str = ""
    exposure: str = "internal"
    criticality: int = 3
    tags: tuple[str, ...] = ()
    source: str = ""


def validate_filter(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A normalized copy of a filter, or ``ValidationFailed`` naming the bad key."""
    if not isinstance(raw, Mapping):
        raise ValidationFailed("a group filter must be a JSON object")
    clean: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in FILTER_KEYS:
            raise ValidationFailed(
                f"unknown group filter key {key!r}", hint=f"known keys: {', '.join(FILTER_KEYS)}"
            )
        if key in _LIST_KEYS:
            items = [value] if isinstance(value, str) else value
            if not isinstance(items, Sequence) or not all(isinstance(i, str) and i for i in items):
                raise ValidationFailed(f"group filter {key!r} must be a list of non-empty strings")
            clean[key] = sorted(set(items))
        elif key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 5:
                raise ValidationFailed(f"group filter {key!r} must be an integer 1-5")
            clean[key] = value
        else:  # exposure
            if value not in ("internet", "internal"):
                raise ValidationFailed("group filter 'exposure' must be 'internet' or 'internal'")
            clean[key] = value
    if not clean:
        raise ValidationFailed("a dynamic group needs at least one filter key")
    return clean


def matches(group_filter: Mapping[str, Any], asset: AssetFacts) -> bool:
    """Whether ``asset`` belongs to a group with this (validated) filter."""
    tags = set(asset.tags)
    for key, value in group_filter.items():
        if key == "tags_all":
            ok = set(value) <= tags
        elif key == "tags_any":
            ok = bool(set(value) & tags)
        elif key == "os":
            ok = asset.os_id in value
        elif key == "ecosystem":
            ok = any(asset.ecosystem == v or asset.ecosystem.startswith(v + ":") for v in value)
        elif key == "environment":
            ok = asset.environment in value
        elif key == "location":
            ok = asset.location in value
        elif key == "kind":
            ok = asset.kind in value
        elif key == "hostname":
            ok = any(fnmatchcase(asset.hostname, pattern) for pattern in value)
        elif key == "source":
            ok = asset.source in value
        elif key == "criticality_min":
            ok = asset.criticality >= value
        elif key == "criticality_max":
            ok = asset.criticality <= value
        elif key == "exposure":
            ok = asset.exposure == value
        else:
            raise ValidationFailed(f"unknown group filter key {key!r}")
        if not ok:
            return False
    return True
