"""OSV range semantics: the reference algorithm, its flattened form, and the index."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.core.errors import InvalidVersion
from patchwarden.core.matching import AdvisoryIndex
from patchwarden.core.model import Affected, AffectedRange, Event
from patchwarden.core.osv import (
    Interval,
    flatten,
    flatten_affected,
    includes,
    interval_includes,
)

ECO = "PyPI"


def rng(*events: tuple[str, str], kind: str = "ECOSYSTEM") -> AffectedRange:
    return AffectedRange(kind, tuple(Event(k, v) for k, v in events))  # type: ignore[arg-type]


def test_fixed_range_is_half_open() -> None:
    r = rng(("introduced", "0"), ("fixed", "1.0.2"))
    assert includes(ECO, "0.1", r)
    assert includes(ECO, "1.0.1", r)
    assert not includes(ECO, "1.0.2", r)
    assert not includes(ECO, "2.0", r)
    assert flatten(ECO, r) == (Interval("0", fixed="1.0.2"),)


def test_last_affected_is_inclusive() -> None:
    r = rng(("introduced", "0"), ("last_affected", "2.1.214"))
    assert includes(ECO, "2.1.214", r)
    assert not includes(ECO, "2.1.215", r)
    assert flatten(ECO, r) == (Interval("0", last_affected="2.1.214"),)


def test_multiple_ranges_in_one_events_list() -> None:
    r = rng(
        ("introduced", "1.0.0"), ("fixed", "1.0.2"), ("introduced", "3.0.0"), ("fixed", "3.2.5")
    )
    affected = {
        v
        for v in ("0.9", "1.0.0", "1.0.1", "1.0.2", "2.0", "3.0.0", "3.2.4", "3.2.5")
        if includes(ECO, v, r)
    }
    assert affected == {"1.0.0", "1.0.1", "3.0.0", "3.2.4"}
    assert len(flatten(ECO, r)) == 2


def test_events_out_of_order_are_sorted_first() -> None:
    r = rng(
        ("fixed", "3.2.5"), ("introduced", "3.0.0"), ("fixed", "1.0.2"), ("introduced", "1.0.0")
    )
    assert includes(ECO, "1.0.1", r)
    assert not includes(ECO, "2.0", r)
    assert includes(ECO, "3.1", r)


def test_limit_caps_the_range() -> None:
    r = rng(("introduced", "1.0"), ("limit", "2.0"))
    assert includes(ECO, "1.5", r)
    assert not includes(ECO, "2.0", r)
    star = rng(("introduced", "1.0"), ("limit", "*"))
    assert includes(ECO, "99", star)
    assert flatten(ECO, star)[0].limit == ""


def test_unfixed_range_has_no_upper_bound() -> None:
    r = rng(("introduced", "0"))
    assert includes(ECO, "999", r)
    assert flatten(ECO, r) == (Interval("0"),)


def test_git_ranges_never_match_versions() -> None:
    r = rng(("introduced", "abc123"), ("fixed", "def456"), kind="GIT")
    assert not includes(ECO, "1.0", r)
    assert flatten(ECO, r) == ()


def test_semver_range_uses_semver_even_in_other_ecosystems() -> None:
    r = rng(("introduced", "1.0.0"), ("fixed", "1.2.0"), kind="SEMVER")
    assert includes("Go", "v1.1.0", r)
    assert not includes("Go", "v1.2.0", r)


def test_non_canonical_event_versions_flatten_instead_of_being_skipped() -> None:
    # PYSEC-2021-371 (real): binderhub's fix is the pre-PEP 440 version "0.2.0-n653",
    # which pip's legacy ordering (OSV's too) puts below every PEP 440 version.
    real = Affected(
        "PyPI",
        "binderhub",
        (
            rng(("introduced", "0"), ("fixed", "195caac1"), kind="GIT"),
            rng(("introduced", "0"), ("fixed", "0.2.0-n653")),
        ),
    )
    flat = flatten_affected("PYSEC-2021-371", real)
    assert flat.problems == ()
    assert flat.intervals == (Interval("0", fixed="0.2.0-n653"),)
    assert includes("PyPI", "0.1.0-n1", real.ranges[1])
    assert not includes("PyPI", "0.1.0", real.ranges[1])
    # An Alpine secdb fix with digits after the letter (real, v3.11 opensmtpd).
    alpine = rng(("introduced", "0"), ("fixed", "6.6.2p1-r0"))
    assert flatten("Alpine:v3.11", alpine) == (Interval("0", fixed="6.6.2p1-r0"),)
    assert includes("Alpine:v3.11", "6.6.1p1-r0", alpine)


def test_invalid_event_version_is_reported_not_guessed() -> None:
    bad = Affected("npm", "left-pad", (rng(("introduced", "0"), ("fixed", "not a version")),))
    flat = flatten_affected("GHSA-x", bad)
    assert flat.intervals == ()
    assert len(flat.problems) == 1
    assert "GHSA-x" in flat.problems[0]
    assert "not a version" in flat.problems[0]
    with pytest.raises(InvalidVersion):
        includes("npm", "1.0.0", bad.ranges[0])


# --------------------------------------------------------------- property tests

versions_st = st.builds(
    lambda a, b, c: f"{a}.{b}.{c}",
    st.integers(0, 4),
    st.integers(0, 4),
    st.integers(0, 4),
)
events_st = st.lists(
    st.tuples(st.sampled_from(["introduced", "fixed", "last_affected", "limit"]), versions_st),
    min_size=1,
    max_size=7,
).map(
    lambda evs: [("introduced", "0"), *evs] if not any(k == "introduced" for k, _ in evs) else evs
)


@settings(max_examples=400, deadline=None)
@given(events=events_st, probe=versions_st, eco=st.sampled_from(["PyPI", "npm", "Debian:12"]))
def test_flattened_intervals_agree_with_the_specification(
    events: list[tuple[str, str]], probe: str, eco: str
) -> None:
    """For any events list, the union of flattened intervals is exactly the spec's set."""
    r = rng(*events)
    expected = includes(eco, probe, r)
    intervals = flatten(eco, r)
    assert any(interval_includes(eco, probe, iv) for iv in intervals) == expected


@settings(max_examples=300, deadline=None)
@given(
    ranges=st.lists(events_st, min_size=1, max_size=4),
    probes=st.lists(versions_st, min_size=1, max_size=8),
)
def test_index_agrees_with_the_specification(
    ranges: list[list[tuple[str, str]]], probes: list[str]
) -> None:
    """The region index returns exactly the advisories the reference algorithm does."""
    index = AdvisoryIndex()
    advisories = {}
    for n, events in enumerate(ranges):
        adv_id = f"ADV-{n}"
        r = rng(*events)
        advisories[adv_id] = r
        for iv in flatten(ECO, r):
            index.add_interval(adv_id, ECO, "pkg", iv)
    for probe in probes:
        expected = {a for a, r in advisories.items() if includes(ECO, probe, r)}
        got = {m.advisory_id for m in index.match(ECO, "pkg", probe)}
        assert got == expected, (probe, ranges)


def test_flattening_is_stable_for_a_real_shape() -> None:
    """A Debian-style range from a DSA: introduced 0, fixed with tilde revision."""
    r = rng(("introduced", "0"), ("fixed", "3.0.11-1~deb12u1"))
    assert includes("Debian:12", "3.0.9-1", r)
    assert includes("Debian:12", "3.0.11-1~deb12u0", r)
    assert not includes("Debian:12", "3.0.11-1~deb12u1", r)
    assert not includes("Debian:12", "3.0.11-1", r)
