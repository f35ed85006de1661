"""The all-at-once package check agrees with the entry-by-entry walk it short-cuts.

``jsonfmt._valid_packages`` accepts a package list only when every entry is valid;
otherwise the walk runs and names the problems. Whatever the input, the two must
build the same inventory or refuse it alike.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.collect import jsonfmt
from patchwarden.core.errors import InventoryError

_FIELD = st.one_of(
    st.sampled_from(["libssl3", "3.0.15-1~deb12u1", "amd64", "openssl", "1:2.3", "", "x" * 513]),
    st.text(
        alphabet=st.sampled_from("ab1.+-~:\x00\x1f\x7f \t\n\x85\xa0\u2000\u3000é"),
        max_size=6,
    ),
    st.integers(),
    st.none(),
    st.booleans(),
)
_KEYS = st.sampled_from([*jsonfmt._PACKAGE_KEYS, "epoch"])
_ENTRY = st.one_of(
    st.dictionaries(_KEYS, _FIELD, max_size=7),
    # well-formed entries with at most a few bad values, so that whole lists are often
    # valid and an invalid one is often invalid in one field only
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["a", "b", "libc6", "libc6", "lib c6", "", "é\u3000"]),
            "version": st.sampled_from(["1", "2", "2", "1\t", 2]),
        },
        optional={
            "arch": st.sampled_from(["amd64", "all", "", "x" * 513]),
            "source_name": st.sampled_from(["glibc", "", "glibc\x7f"]),
            "source_version": st.sampled_from(["2.36-9", "", None]),
            "ecosystem": st.sampled_from(["Debian:12", "PyPI", "", "Debian\x00", "a b"]),
        },
    ),
    st.integers(),
    st.text(max_size=3),
)


def _document(packages: object) -> dict[str, Any]:
    return {
        "format": jsonfmt.FORMAT,
        "hostname": "web-1",
        "os": {"id": "debian", "version_id": "12", "ecosystem": "Debian:12"},
        "packages": packages,
    }


def _outcome(packages: object) -> object:
    try:
        return jsonfmt.inventory_from_json(_document(packages))
    except InventoryError as exc:
        return ("refused", str(exc))


@settings(max_examples=400)
@given(packages=st.lists(_ENTRY, max_size=6))
def test_fast_path_and_walk_agree(packages: list[Any]) -> None:
    fast = _outcome(packages)
    with mock.patch.object(jsonfmt, "_valid_packages", return_value=None):
        walked = _outcome(packages)
    if isinstance(walked, tuple):
        assert isinstance(fast, tuple), f"fast path accepted what the walk refuses: {walked}"
        assert fast == walked  # the walk wrote the message either way
    else:
        assert fast == walked


def test_fast_path_takes_a_valid_list_and_leaves_a_bad_one_to_the_walk() -> None:
    good = [{"name": "libssl3", "version": "3.0.15-1", "source_name": "openssl"}]
    taken = jsonfmt._valid_packages(good, "Debian:12")
    assert taken is not None
    assert taken[0].source_name == "openssl"
    assert taken[0].ecosystem == "Debian:12"
    for bad in (
        [{"name": "lib ssl3", "version": "1"}],
        [{"name": "a", "version": "1"}, {"name": "a", "version": "1"}],
        [{"name": "a", "version": 1}],
        [{"name": "a"}],
        [{"name": "a", "version": "1", "epoch": "0"}],
        [{"name": "a", "version": "1", "arch": "x" * 513}],
        [{"name": "a", "version": "1", "ecosystem": "Debian\x00"}],
        [{"name": "a\u2000b", "version": "1"}],
        [],
    ):
        assert jsonfmt._valid_packages(bad, "Debian:12") is None, bad
