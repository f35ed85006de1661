"""The patchwarden-inventory/1 JSON format: exact round-trips and precise validation errors."""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patchwarden.collect.dpkg import parse_dpkg_status
from patchwarden.collect.jsonfmt import (
    FORMAT,
    MAX_ERRORS,
    format_timestamp,
    inventory_from_json,
    inventory_to_json,
    loads_inventory,
    parse_timestamp,
)
from patchwarden.collect.parsing import UTC
from patchwarden.core.errors import InventoryError
from patchwarden.core.model import InstalledPackage, Inventory, OsInfo
from tests.support import data_file

FIXTURE = Path(__file__).parent / "fixtures" / "json" / "web-01.json"

# ------------------------------------------------------------------ strategies

_token_chars = st.characters(
    min_codepoint=0x21,
    max_codepoint=0x2FF,
    blacklist_characters="\x7f",
    blacklist_categories=("Zs", "Cc"),
)
tokens = st.text(_token_chars, min_size=1, max_size=16)
optional_tokens = st.one_of(st.just(""), tokens)
# Free text: anything but control characters (spaces allowed).
texts = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=24)
ecosystem_names = st.one_of(
    st.sampled_from(["", "Debian:12", "Ubuntu:22.04:LTS", "Rocky Linux:9", "PyPI", "npm"]),
    texts,
)
os_infos = st.builds(
    OsInfo,
    id=tokens,
    version_id=texts,
    name=texts,
    pretty_name=texts,
    codename=texts,
    ecosystem=ecosystem_names,
    family=st.sampled_from(["", "debian", "rpm", "alpine"]),
)
packages = st.builds(
    InstalledPackage,
    name=tokens,
    version=tokens,
    ecosystem=ecosystem_names,
    arch=optional_tokens,
    source_name=optional_tokens,
    source_version=optional_tokens,
)
offsets = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
moments = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=offsets
)
inventories = st.builds(
    Inventory,
    hostname=texts.filter(bool),
    packages=st.lists(packages, max_size=12, unique=True).map(tuple),
    os=st.one_of(st.none(), os_infos),
    kernel=texts,
    arch=texts,
    reboot_required=st.booleans(),
    collected_at=st.one_of(st.none(), moments),
    source=texts,
    problems=st.lists(st.text(max_size=40), max_size=4).map(tuple),
)


@given(inventories)
def test_round_trip_is_exact(inventory: Inventory) -> None:
    document = inventory_to_json(inventory)
    assert inventory_from_json(document) == inventory
    # ... also through JSON text, as the agent sends it.
    assert loads_inventory(json.dumps(document)) == inventory
    # The document is canonical: converting back gives the same document.
    assert inventory_to_json(inventory_from_json(document)) == document


@given(moments)
def test_timestamps_round_trip_as_utc(moment: datetime) -> None:
    text = format_timestamp(moment)
    assert text.endswith("Z")
    parsed = parse_timestamp(text)
    assert parsed == moment
    assert parsed.utcoffset() == timedelta(0)


# --------------------------------------------------------------------- documents


def test_fixture_document() -> None:
    inventory = loads_inventory(FIXTURE.read_text())
    assert inventory.hostname == "web-01.example.org"
    assert inventory.collected_at == datetime(2026, 11, 27, 13, 54, 51, tzinfo=UTC)
    assert inventory.os is not None
    assert inventory.os.ecosystem == "Debian:12"
    assert inventory.reboot_required is True
    assert inventory.source == "agent"
    assert inventory.packages == (
        InstalledPackage(
            "libssl3", "3.0.11-1~deb12u2", "Debian:12", "amd64", "openssl", "3.0.11-1~deb12u2"
        ),
        InstalledPackage("bash", "5.2.15-2+b2", "Debian:12", "amd64", "bash", "5.2.15-2"),
        InstalledPackage("requests", "2.31.0", "PyPI"),
    )
    assert inventory_to_json(inventory) == json.loads(FIXTURE.read_text())


def test_real_status_file_round_trips() -> None:
    parsed = parse_dpkg_status(
        data_file("local-dpkg/var_lib_dpkg_status").read_text(), ecosystem="Debian:12"
    )
    inventory = Inventory(
        hostname="builder",
        packages=parsed.packages,
        os=OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian"),
        collected_at=datetime(2026, 11, 27, 13, 54, 51, tzinfo=UTC),
    )
    document = inventory_to_json(inventory)
    assert len(document["packages"]) == 743
    assert all("ecosystem" not in entry for entry in document["packages"])
    assert inventory_from_json(json.loads(json.dumps(document))) == inventory


def test_package_ecosystem_is_written_only_when_it_differs_from_the_os() -> None:
    inventory = Inventory(
        hostname="h",
        packages=(
            InstalledPackage("a", "1", "Debian:12"),
            InstalledPackage("b", "1", ""),
            InstalledPackage("c", "1", "PyPI"),
        ),
        os=OsInfo(id="debian", ecosystem="Debian:12"),
    )
    assert inventory_to_json(inventory)["packages"] == [
        {"name": "a", "version": "1"},
        {"name": "b", "version": "1", "ecosystem": ""},
        {"name": "c", "version": "1", "ecosystem": "PyPI"},
    ]


def test_minimal_document_defaults() -> None:
    inventory = inventory_from_json({"format": FORMAT, "hostname": "h", "packages": []})
    assert inventory == Inventory(hostname="h", packages=())


def test_offsets_and_fractions_are_normalised_to_utc_microseconds() -> None:
    assert parse_timestamp("2026-01-31T23:30:00.123456789+05:30") == datetime(
        2026, 1, 31, 18, 0, 0, 123456, tzinfo=UTC
    )
    assert format_timestamp(datetime(2026, 1, 31, 18, 0, 0, 5, tzinfo=UTC)) == (
        "2026-01-31T18:00:00.000005Z"
    )


@pytest.mark.parametrize(
    "text",
    ["2026-01-31", "2026-01-31T12:00:00", "2026-13-01T00:00:00Z", "2026-01-31 12:00:00Z", "x"],
)
def test_bad_timestamps(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the message varies with the defect
        parse_timestamp(text)


def test_naive_collected_at_cannot_be_written() -> None:
    naive = Inventory(hostname="h", packages=(), collected_at=datetime(2026, 1, 1))
    with pytest.raises(InventoryError, match="timezone-aware"):
        inventory_to_json(naive)


def test_writing_an_invalid_inventory_fails_before_upload() -> None:
    bad = Inventory(hostname="h", packages=(InstalledPackage("a b", "1", ""),))
    with pytest.raises(InventoryError, match=r"packages\[0\]\.name: 'a b' contains whitespace"):
        inventory_to_json(bad)


# ------------------------------------------------------------------------- errors


def valid_document() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(FIXTURE.read_text())
    return document


def errors_of(document: object) -> str:
    with pytest.raises(InventoryError) as caught:
        inventory_from_json(document, source="upload")
    message = str(caught.value)
    assert message.startswith("upload: invalid inventory document: ")
    return message


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["packages"][1].pop("version"), "packages[1].version: missing"),
        (
            lambda d: d["packages"][2].update(version=2),
            "packages[2].version: expected a string, got the number 2",
        ),
        (lambda d: d["packages"][0].update(name=""), "packages[0].name: must not be empty"),
        (
            lambda d: d["packages"][0].update(arch="amd 64"),
            "packages[0].arch: 'amd 64' contains whitespace or control characters",
        ),
        (
            lambda d: d["packages"][1].update(verison="1"),
            "packages[1].verison: unknown field",
        ),
        (
            lambda d: d["packages"].__setitem__(1, "bash=5.2"),
            "packages[1]: expected an object, got a string",
        ),
        (
            lambda d: d["packages"].append(copy.deepcopy(d["packages"][0])),
            "packages[3]: duplicates packages[0]",
        ),
        (lambda d: d.update(format="patchwarden-inventory/2"), "format: expected"),
        (lambda d: d.pop("hostname"), "hostname: missing"),
        (lambda d: d.pop("packages"), "packages: missing"),
        (lambda d: d.update(packages={}), "packages: expected a list, got an object"),
        (
            lambda d: d.update(reboot_required="yes"),
            "reboot_required: expected true or false, got a string",
        ),
        (
            lambda d: d.update(collected_at="yesterday"),
            "collected_at: 'yesterday': not an RFC 3339 date-time",
        ),
        (lambda d: d.update(collected_at=1700000000), "collected_at: expected an RFC 3339 string"),
        (lambda d: d["os"].update(family="bsd"), "os.family: expected one of"),
        (lambda d: d["os"].pop("id"), "os.id: missing"),
        (lambda d: d.update(os=[]), "os: expected an object, got a list"),
        (lambda d: d.update(problems=[1]), "problems[0]: expected a string, got the number 1"),
        (lambda d: d.update(hostnme="x"), "hostnme: unknown field"),
        (lambda d: d.update(problems=["x" * 5000]), "problems[0]: longer than 4096 characters"),
        (lambda d: d.update(hostname="h" * 600), "hostname: longer than 512 characters"),
        (lambda d: d.update(kernel="6.1\n"), "kernel: '6.1\\n' contains control characters"),
    ],
)
def test_validation_errors_name_the_path(mutate: Any, expected: str) -> None:
    document = valid_document()
    mutate(document)
    assert expected in errors_of(document)


def test_all_errors_are_reported_together_up_to_a_cap() -> None:
    document = valid_document()
    document["packages"] = [{"name": "", "version": ""} for _ in range(MAX_ERRORS + 5)]
    message = errors_of(document)
    assert "packages[0].name: must not be empty; packages[0].version: must not be empty" in message
    more = 2 * (MAX_ERRORS + 5) - MAX_ERRORS
    assert message.endswith(f"and {more} more (see docs/inventory-format.md)")


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([], "$: expected an object, got a list"),
        ({}, "format: missing"),
        (None, "$: expected an object, got null"),
    ],
)
def test_documents_that_are_not_inventories(document: object, expected: str) -> None:
    assert expected in errors_of(document)


def test_invalid_json_text_names_the_line() -> None:
    with pytest.raises(InventoryError, match=r"^f:3: invalid JSON") as caught:
        loads_inventory('{\n "format": "x",\n oops\n}', source="f")
    assert caught.value.line == 3
