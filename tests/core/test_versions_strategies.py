"""Hypothesis strategies for version strings of every scheme, and the total-order laws.

The per-scheme test modules import these; the laws themselves run here for every
scheme. Alphabets are small on purpose so that generated pairs often share prefixes
or are equal in different spellings (``1.0`` and ``1.00`` in dpkg, ``1.0`` and ``1_0``
in rpm), which is where orderings go wrong.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.core import versions

# A Debian upstream version starts with a digit; ":" and "-" join the alphabet only
# when an epoch or a revision makes them legal.
_DIGITS = "0129"
_DPKG_CHARS = "0129aZz.+~"


@st.composite
def dpkg_versions(draw: st.DrawFn) -> str:
    """Valid Debian versions: optional epoch, upstream, optional revision."""
    has_epoch = draw(st.booleans())
    has_revision = draw(st.booleans())
    extra = (":" if has_epoch else "") + ("-" if has_revision else "")
    upstream = draw(st.sampled_from(_DIGITS)) + draw(
        st.text(alphabet=_DPKG_CHARS + extra, max_size=7)
    )
    version = upstream
    if has_epoch:
        version = f"{draw(st.sampled_from(['0', '1', '2', '01', '10']))}:{version}"
    if has_revision:
        version += "-" + draw(st.text(alphabet=_DPKG_CHARS, min_size=1, max_size=5))
    return version


def dpkg_like_strings() -> st.SearchStrategy[str]:
    """Strings dpkg warns about (or refuses): any start, odd and non-ASCII characters."""
    return st.one_of(
        dpkg_versions(),
        st.text(alphabet="0129aZz.+~:-_$é", min_size=1, max_size=9),
    )


_RPM_CHARS = "0129aZz._+~^"


@st.composite
def rpm_versions(draw: st.DrawFn) -> str:
    """Valid RPM EVRs: optional epoch, version, optional release."""
    version = draw(st.text(alphabet=_RPM_CHARS, min_size=1, max_size=7))
    if draw(st.booleans()):
        version = f"{draw(st.sampled_from(['0', '1', '2', '00', '10']))}:{version}"
    if draw(st.booleans()):
        version += "-" + draw(st.text(alphabet=_RPM_CHARS, min_size=1, max_size=5))
    return version


def rpm_like_strings() -> st.SearchStrategy[str]:
    """Any string rpm might be handed: odd colons and hyphens, spaces, non-ASCII."""
    return st.one_of(
        rpm_versions(),
        st.text(alphabet="0129aZz._+~^-: é", min_size=1, max_size=9),
    )


_APK_NUMBERS = st.sampled_from(["0", "1", "2", "9", "00", "01", "10", "010"])
_APK_SUFFIXES = ("alpha", "beta", "pre", "rc", "cvs", "svn", "git", "hg", "p")


@st.composite
def apk_versions(draw: st.DrawFn) -> str:
    """Valid Alpine versions, exercising every token kind."""
    version = draw(_APK_NUMBERS)
    version += "".join("." + n for n in draw(st.lists(_APK_NUMBERS, max_size=3)))
    if draw(st.booleans()):
        version += draw(st.sampled_from("abz"))
    for name in draw(st.lists(st.sampled_from(_APK_SUFFIXES), max_size=2)):
        version += "_" + name + draw(st.sampled_from(["", "0", "1", "2", "10"]))
    if draw(st.booleans()):
        version += "~" + draw(st.sampled_from(["0", "1", "a", "ab12", "ff", "0a"]))
    if draw(st.booleans()):
        version += "-r" + draw(st.sampled_from(["0", "1", "2", "10", "01"]))
    return version


def apk_like_strings() -> st.SearchStrategy[str]:
    """Valid versions with a character or two changed: valid or not, apk decides."""
    alphabet = "012.abfrz_-~p"
    return st.one_of(
        apk_versions(),
        st.text(alphabet=alphabet, max_size=10),
        st.tuples(apk_versions(), st.text(alphabet=alphabet, max_size=3)).map("".join),
    )


_SEMVER_NUMBERS = st.sampled_from(["0", "1", "2", "10"])
_SEMVER_IDS = st.sampled_from(["0", "1", "2", "10", "a", "b", "A", "a1", "1a", "-", "rc-1"])


@st.composite
def semver_versions(draw: st.DrawFn) -> str:
    """Valid SemVer 2.0 versions, with and without ``v``, pre-release and build."""
    version = ".".join(draw(st.lists(_SEMVER_NUMBERS, min_size=3, max_size=3)))
    if draw(st.booleans()):
        version += "-" + ".".join(draw(st.lists(_SEMVER_IDS, min_size=1, max_size=3)))
    if draw(st.booleans()):
        version += "+" + ".".join(draw(st.lists(_SEMVER_IDS, min_size=1, max_size=2)))
    if draw(st.booleans()):
        version = "v" + version
    return version


def semver_like_strings() -> st.SearchStrategy[str]:
    """SemVer with more or fewer numbers, leading zeros, loose prefixes and suffixes."""
    numbers = st.lists(st.sampled_from(["0", "1", "2", "00", "01", "10"]), min_size=1, max_size=5)
    tail = st.text(alphabet="01a.-+bA", max_size=6)
    return st.one_of(
        semver_versions(),
        st.tuples(st.sampled_from(["", "v", "=", "v ", " "]), numbers.map(".".join), tail).map(
            "".join
        ),
    )


_PEP440_NUMBERS = st.sampled_from(["0", "1", "2", "00", "01", "10"])
_SEPARATOR = st.sampled_from(["", ".", "-", "_"])


@st.composite
def pep440_versions(draw: st.DrawFn) -> str:
    """PEP 440 versions in many of the spellings PEP 440 accepts and normalizes."""
    version = ".".join(draw(st.lists(_PEP440_NUMBERS, min_size=1, max_size=4)))
    if draw(st.booleans()):
        version = draw(st.sampled_from(["0!", "1!", "01!"])) + version
    if draw(st.booleans()):
        letter = draw(
            st.sampled_from(["a", "A", "alpha", "b", "beta", "Beta", "c", "rc", "pre", "preview"])
        )
        number = draw(st.sampled_from(["", "0", "1", "2"]))
        version += draw(_SEPARATOR) + letter + (draw(_SEPARATOR) + number if number else "")
    post = draw(st.sampled_from([None, "post", "rev", "r", "POST", "-"]))
    if post == "-":
        version += "-" + draw(_PEP440_NUMBERS)
    elif post is not None:
        number = draw(st.sampled_from(["", "0", "1", "2"]))
        version += draw(_SEPARATOR) + post + (draw(_SEPARATOR) + number if number else "")
    if draw(st.booleans()):
        number = draw(st.sampled_from(["", "0", "1"]))
        version += draw(_SEPARATOR) + draw(st.sampled_from(["dev", "DEV"])) + number
    if draw(st.booleans()):
        segments = draw(
            st.lists(
                st.sampled_from(["0", "1", "01", "a", "B", "ab", "1a"]), min_size=1, max_size=3
            )
        )
        version += "+" + draw(_SEPARATOR.filter(bool)).join(segments)
    if draw(st.booleans()):
        version = draw(st.sampled_from(["v", "V", " ", "\t"])) + version
    return version


STRATEGIES: dict[str, tuple[str, st.SearchStrategy[str]]] = {
    "dpkg": ("Debian", dpkg_versions()),
    "rpm": ("Red Hat", rpm_versions()),
    "apk": ("Alpine", apk_versions()),
    "pep440": ("PyPI", pep440_versions()),
    "semver": ("npm", semver_versions()),
}


def pep440_like_strings() -> st.SearchStrategy[str]:
    """PEP 440 versions and legacy ones (``0.9-doduo``, ``0.3m1``, ``trunk``)."""
    legacy = st.text(alphabet="019abcmx.-_+!:@", min_size=1, max_size=9)
    words = st.lists(
        st.sampled_from(["0", "9", "1", ".", "-", "rc", "pre", "dev", "final", "doduo", "m1"]),
        min_size=1,
        max_size=6,
    ).map("".join)
    return st.one_of(pep440_versions(), legacy, words)


# Canonical and non-canonical strings of every scheme; the laws hold for all the
# orderable ones.
ANY_STRINGS: dict[str, tuple[str, st.SearchStrategy[str]]] = {
    "dpkg": ("Debian", dpkg_like_strings()),
    "rpm": ("Red Hat", rpm_like_strings()),
    "apk": ("Alpine", apk_like_strings()),
    "pep440": ("PyPI", pep440_like_strings()),
    "semver": ("npm", semver_like_strings()),
}


def sign(value: int) -> int:
    return (value > 0) - (value < 0)


def test_strategies_cover_every_scheme() -> None:
    assert set(STRATEGIES) == set(versions.SCHEMES)
    assert set(ANY_STRINGS) == set(versions.SCHEMES)


@pytest.mark.parametrize("scheme", list(STRATEGIES))
@settings(max_examples=200)
@given(data=st.data())
def test_generated_versions_are_valid(scheme: str, data: st.DataObject) -> None:
    ecosystem, strategy = STRATEGIES[scheme]
    version = data.draw(strategy)
    assert versions.is_valid(ecosystem, version), version


@pytest.mark.parametrize("scheme", list(STRATEGIES))
@settings(max_examples=300)
@given(data=st.data())
def test_sort_key_is_a_total_order_consistent_with_compare(
    scheme: str, data: st.DataObject
) -> None:
    ecosystem, strategy = STRATEGIES[scheme]
    _check_laws(ecosystem, *(data.draw(strategy) for _ in range(3)))


@pytest.mark.parametrize("scheme", list(ANY_STRINGS))
@settings(max_examples=150)
@given(data=st.data())
def test_the_laws_hold_for_non_canonical_versions_too(scheme: str, data: st.DataObject) -> None:
    ecosystem, strategy = ANY_STRINGS[scheme]
    orderable = strategy.filter(lambda v: versions.is_valid(ecosystem, v))
    _check_laws(ecosystem, *(data.draw(orderable) for _ in range(3)))


def _check_laws(ecosystem: str, a: str, b: str, c: str) -> None:
    key = versions.key_function(ecosystem)
    ab, ba = versions.compare(ecosystem, a, b), versions.compare(ecosystem, b, a)
    # Antisymmetry, and compare agrees with the keys (equal keys iff compare == 0).
    assert ab == -ba
    assert ab in (-1, 0, 1)
    assert (key(a) < key(b)) == (ab < 0)
    assert (key(a) == key(b)) == (ab == 0)
    # Transitivity over the triple, in every arrangement.
    ordered = sorted((a, b, c), key=key)
    for low, high in ((0, 1), (1, 2), (0, 2)):
        assert versions.compare(ecosystem, ordered[low], ordered[high]) <= 0
    # A key is a pure function of the version: computing it again gives the same.
    versions.cache_clear()
    assert versions.sort_key(ecosystem, a) == key(a)
