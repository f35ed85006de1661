"""Dynamic group filters (pure)."""

from __future__ import annotations

import pytest

from patchwarden.core.errors import ValidationFailed
from patchwarden.core.groups import AssetFacts, matches, validate_filter

WEB = AssetFacts(
    hostname="web-01",
    os_id="debian",
    ecosystem="Debian:12",
    environment="prod",
    location="fra1",
    kind="server",
    exposure="internet",
    criticality=4,
    tags=("web", "pci"),
    source="agent",
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"tags_all": ["web", "pci"]}, True),
        ({"tags_all": ["web", "db"]}, False),
        ({"tags_any": ["db", "pci"]}, True),
        ({"ecosystem": ["Debian"]}, True),
        ({"ecosystem": ["Debian:11"]}, False),
        ({"ecosystem": "Debian:12"}, True),
        ({"hostname": ["web-*"], "environment": ["prod"]}, True),
        ({"hostname": ["db-*"]}, False),
        ({"criticality_min": 4, "criticality_max": 5}, True),
        ({"criticality_min": 5}, False),
        ({"exposure": "internal"}, False),
        ({"os": ["debian", "ubuntu"], "source": ["agent"]}, True),
        ({"location": ["ams3"]}, False),
        ({"kind": ["server"]}, True),
    ],
)
def test_filters(raw: dict[str, object], expected: bool) -> None:
    assert matches(validate_filter(raw), WEB) is expected


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "at least one"),
        ({"colour": ["red"]}, "unknown group filter key 'colour'"),
        ({"tags_any": "web"}, None),  # a single string is accepted as a one-item list
        ({"tags_any": [1]}, "non-empty strings"),
        ({"criticality_min": 9}, "1-5"),
        ({"criticality_min": True}, "1-5"),
        ({"exposure": "dmz"}, "internet"),
    ],
)
def test_validation(raw: dict[str, object], message: str | None) -> None:
    if message is None:
        assert validate_filter(raw) == {"tags_any": ["web"]}
        return
    with pytest.raises(ValidationFailed, match=message):
        validate_filter(raw)
