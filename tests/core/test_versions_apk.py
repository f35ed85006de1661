"""apk ordering against apk-tools' documented ordering and a direct model of its walk.

There is no apk on this machine, so two things stand in for it: comparison and
validity facts taken from apk-tools' own test data (``test/version.data`` in
apk-tools 3; written out here as cases, not copied as a file), and ``ApkModel`` below,
which walks two versions token by token the way ``apk_version_compare`` in
apk-tools' ``src/version.c`` does — invalid tokens included, and with apk-tools 2's
reading of digits right after the letter (``1.8.28p1``), as patchwarden documents. The
key encodes that walk as a string; hypothesis holds the two to each other on generated
strings, valid or not.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

import pytest
from hypothesis import given, settings

from patchwarden.core import versions
from patchwarden.core.errors import InvalidVersion
from tests.core.test_versions_strategies import apk_like_strings, apk_versions, sign
from tests.support import data_file

# --- a direct model of apk-tools' token walk ------------------------------------------

INITIAL, DIGIT, LETTER, SUFFIX, SUFFIX_NO, HASH, REVISION, END, INVALID = range(9)
SUFFIX_ORDER = ["", "alpha", "beta", "pre", "rc", "", "cvs", "svn", "git", "hg", "p"]
NO_SUFFIX = 5  # the rank of a version without suffix: below it are pre-releases


@dataclass
class Token:
    kind: int
    text: str = ""
    suffix: int = 0
    number: str = ""  # apk-tools 2: the digits right after a letter (letter tokens only)


def _digits(text: str, at: int) -> int:
    end = at
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return end


class ApkModel:
    """Reads one version token by token, as apk-tools does."""

    def __init__(self, text: str) -> None:
        self.text = text
        end = _digits(text, 0)
        self.at = end
        self.token = Token(INITIAL if end else INVALID, text[:end])

    def advance(self) -> None:
        text, at, previous = self.text, self.at, self.token.kind
        if at == len(text):
            self.token = Token(END)
            return
        char = text[at]
        if "a" <= char <= "z":
            self._set(LETTER if previous <= DIGIT else INVALID, at, at + 1)
            if self.token.kind == LETTER:
                end = _digits(text, self.at)
                self.token.number = text[self.at : end]
                self.at = end
        elif char == "." or "0" <= char <= "9":
            if char == ".":
                if previous > DIGIT:
                    self._set(INVALID, at, at)
                    return
                at += 1
            kind = {INITIAL: DIGIT, DIGIT: DIGIT, SUFFIX: SUFFIX_NO}.get(previous, INVALID)
            end = _digits(text, at)
            self._set(kind if end > at else INVALID, at, end)
        elif char == "_":
            end = at + 1
            while end < len(text) and "a" <= text[end] <= "z":
                end += 1
            name = text[at + 1 : end]
            valid = previous <= SUFFIX_NO and name in SUFFIX_ORDER and name
            self._set(SUFFIX if valid else INVALID, at + 1, end)
            self.token.suffix = SUFFIX_ORDER.index(name) if valid else 0
        elif char == "~":
            end = at + 1
            while end < len(text) and text[end] in "0123456789abcdef":
                end += 1
            valid = previous < HASH and end > at + 1
            self._set(HASH if valid else INVALID, at + 1, end)
        elif char == "-":
            if previous >= REVISION or text[at + 1 : at + 2] != "r":
                self._set(INVALID, at, at)
                return
            end = _digits(text, at + 2)
            self._set(REVISION if end > at + 2 else INVALID, at + 2, end)
        else:
            self._set(INVALID, at, at)

    def _set(self, kind: int, start: int, end: int) -> None:
        self.token = Token(kind, self.text[start:end])
        self.at = end


def model_valid(text: str) -> bool:
    """apk-tools 3's validity: every token valid, and no digits after the letter."""
    walk = ApkModel(text)
    while walk.token.kind < END:
        if walk.token.number:
            return False
        walk.advance()
    return walk.token.kind == END


def model_orderable(text: str) -> bool:
    """apk ranks every string that does not start with a digit equal: no order."""
    control = any(char < " " or char == "\x7f" for char in text)
    return ApkModel(text).token.kind != INVALID and not control


def number(text: str) -> int:
    return int(text) % 2**64  # apk reads numbers into 64-bit integers


def _value_cmp(a: Token, b: Token) -> int:
    if a.kind == DIGIT and (a.text[0] == "0" or b.text[0] == "0"):
        return (a.text > b.text) - (a.text < b.text)  # leading zero: compare as text
    if a.kind in (INITIAL, DIGIT, SUFFIX_NO, REVISION):
        return sign(number(a.text) - number(b.text))
    if a.kind == SUFFIX:
        return sign(a.suffix - b.suffix)
    if a.kind == LETTER and a.text == b.text:
        # apk-tools 2: a number after the letter beats none, numbers compare as numbers
        if not (a.number and b.number):
            return sign(len(a.number) - len(b.number))
        return sign(number(a.number) - number(b.number))
    return (a.text > b.text) - (a.text < b.text)  # letters and hashes: bytes


def model_compare(a: str, b: str) -> int:
    wa, wb = ApkModel(a), ApkModel(b)
    while wa.token.kind == wb.token.kind and wa.token.kind < END:
        result = _value_cmp(wa.token, wb.token)
        if result:
            return result
        wa.advance()
        wb.advance()
    ta, tb = wa.token, wb.token
    if ta.kind == tb.kind:
        return 0
    # The version that goes on is greater, unless it goes on with a pre-release.
    if ta.kind == SUFFIX and ta.suffix < NO_SUFFIX:
        return -1
    if tb.kind == SUFFIX and tb.suffix < NO_SUFFIX:
        return 1
    return -1 if ta.kind > tb.kind else 1


# --- facts from apk-tools' test data ----------------------------------------------------

COMPARISONS = [
    ("2.34", ">", "0.1.0_alpha"),
    ("0.1.0_alpha", "=", "0.1.0_alpha"),
    ("0.1.0_alpha", "<", "0.1.3_alpha"),
    ("0.1.0_alpha2", ">", "0.1.0_alpha"),
    ("0.1.0_alpha", "<", "2.2.39-r1"),
    ("1.0.4-r3", "<", "1.0.4-r4"),
    ("1.1", ">", "1.1_alpha1"),
    ("1.2.1", ">", "1.2"),
    ("1.3_alpha", "<", "1.3_alpha2"),
    ("0.8_beta1", "<", "0.8_beta2"),
    ("3.10.18-r1", ">", "2.3.0b-r1"),
    ("2.3.0b-r1", "<", "2.3.0b-r2"),
    ("0.12.3", ">", "0.12"),
    ("0.12", "<", "0.13_beta1"),
    ("1.2.12.1", "<", "1.2.13"),
    ("0.2.0-r1", "<", "3.1_p16"),
    ("3.1_p16", "<", "3.1_p17"),
    ("1.06-r6", "<", "006"),  # the first number is always a number
    ("006", ">", "1.0.0"),
    ("1.2.2-r1", ">", "1.2.2"),
    ("2.59", "<", "20050718-r1"),
    ("3.9.8-r5", ">", "2.01.01_alpha10"),
    ("1.0", ">", "0.99.3.20040818"),
    ("1.39", ">", "1.00_beta2"),
    ("4.2.52_p2-r1", "<", "4.2.52_p4-r2"),
    ("1.02", "<", "1.03-r1"),
    ("2.18.3-r10", ">", "1.05-r18"),
    ("20060720", ">", "3.0.20060720"),
    ("1.4.4-r1", "<", "2.1.9.200602141850"),
    ("2.5.1-r8", "<", "2.5.1a-r1"),
    ("1.3.5-r10", ">", "1.3.5-r8"),
    ("20040401", ">", "2.0.0_rc3-r1"),
    ("3.0.0-r2", "<", "021109-r3"),
    ("0.9.16-r1", "<", "3.9_pre20060124"),
    ("3.9_pre20060124", ">", "0.01"),
    ("1.1.7", "<", "6b-r7"),
    ("0.10.0", "<", "0.10.1_rc1"),
    ("0.15.1b-r2", ">", "0.15.1b"),
    ("22.7.3-r1", ">", "22.7"),
    ("2.1_pre20", "<", "2.1_pre26"),
    ("2.10.1", ">", "02.08.01b"),
    ("8.1.2.20050715-r1", "<", "20030215"),
    ("3.81", ">", "1.6d"),
    ("1.2.07.8", "<", "1.2.12.04"),  # "07" < "12" as text
    ("1.2.12.04", "<", "1.2.12.05"),
    ("1.07", "<", "1.07.5"),
    ("0.1_pre20060810", "<", "0.1_pre20060817"),
    ("3.3.17", ">", "0.59s-r11"),
    ("0.20070118", "<", "0.20070207_rc1"),
    ("4.01", "<", "4.20"),
    ("4.20", ">", "0.20070118"),
    ("4.5_p1-r1", ">", "4.5_p1"),
    ("0.9.8c-r1", "<", "0.9.8d"),
    ("013", "<", "014-r1"),
    ("1.7", "<", "1.7b"),
    ("1.8.5", "<", "1.8.5_p2"),
    ("2.9.11_pre20051101-r3", ">", "2.9.11_pre20051101"),
    ("1.6.8_p12-r1", ">", "1.6.8_p9-r2"),
    ("0.9.28.1", "<", "087-r1"),
    ("104-r11", ">", "104-r9"),
    ("2.12r-r4", "<", "2.12r-r5"),
    ("7.0.17", "<", "7.0.174"),
    ("1.3-r0", "<", "1.3.1-r0"),
    ("1.3_pre1-r1", "<", "1.3.2"),
    ("1.0_p10-r0", ">", "1.0_p9-r0"),
    ("0.1.0_alpha_pre2", "<", "0.1.0_alpha"),
    ("1.0.0_pre20191002222144-r0", "<", "1.0.0_pre20210530193627-r0"),
    ("6.0_pre1", "<", "6.0"),
    ("6.0_p1", ">", "6.0"),
    ("8.2.0", "<", "8.2.001"),
    ("8.2.0015", "<", "8.2.002"),
    ("1.0~1234", "<", "1.0~2345"),
    ("1.0~1234-r1", "<", "1.0~2345-r0"),
    ("1.0~1234-r1", ">", "1.0~1234-r0"),
]

VALID_VERSIONS = [
    "1.2",
    "0.1_pre2",
    "0.1_pre2~1234abcd",
    "0.1_p1_pre2",
    "0.1_alpha1_pre2",
    "0.1_git20240101_pre1",
]

INVALID_VERSIONS = [
    "",
    "0.1bc",
    "0.1bc1",
    "0.1a1",
    "0.1a.1",
    "0.1_pre2~",
    "0.1_pre2~1234xbcd",
    "0.1_pre2~1234abcd_pre1",
    "0.1_pre2-r1~1234xbcd",
    "0.1_foobar",
    "0.1_foobar1",
    "0.1-pre1.1",
    "0.1-r",
    "0.1-r2_pre1",
    "0.1-r2_p3_pre1",
    "0.1-r2-r3",
    "0.1-r2.1",
    ".1",
    "a",
    "_pre1",
    "-r1",
    "0.1_",
    "0.1_-r0",
    "0.1__alpha",
    "0.1_1_alpha",
    # Besides apk-tools' list: uppercase hex, trailing dot, space.
    "1.0~ABCD",
    "1.0.",
    " 1.0",
]

_EXPECTED = {"<": -1, "=": 0, ">": 1}


@pytest.mark.parametrize(("a", "op", "b"), COMPARISONS)
def test_apk_tools_comparisons(a: str, op: str, b: str) -> None:
    assert versions.compare("Alpine", a, b) == _EXPECTED[op]
    assert versions.compare("Alpine", b, a) == -_EXPECTED[op]
    assert model_compare(a, b) == _EXPECTED[op]  # the model agrees with apk-tools too


@pytest.mark.parametrize("version", VALID_VERSIONS)
def test_apk_tools_valid_versions(version: str) -> None:
    assert versions.is_valid("Alpine", version)
    assert model_valid(version)


@pytest.mark.parametrize("version", INVALID_VERSIONS)
def test_apk_tools_invalid_versions(version: str) -> None:
    # apk-tools refuses these as versions; a string that starts with a digit is still
    # ordered the way apk compares it, the others cannot be ordered at all.
    assert not model_valid(version)
    assert not versions.is_canonical("Alpine", version)
    if model_orderable(version):
        assert versions.is_valid("Alpine", version)
    else:
        with pytest.raises(InvalidVersion, match="does not start with a digit"):
            versions.sort_key("Alpine:v3.20", version)


@pytest.mark.parametrize(
    ("a", "op", "b"),
    [
        # A letter with digits, as apk-tools 2 read it (apk-tools 3 stops at the digit).
        ("1.8.28p1-r1", ">", "1.8.28-r1"),
        ("1.8.28p1-r1", "<", "1.8.28p2-r0"),
        ("1.8.28p1-r0", "<", "1.8.28p1-r1"),
        ("1.8.28p-r1", "<", "1.8.28p1-r0"),
        ("1.8.28p1-r1", "<", "1.8.29-r0"),
        ("5.1p1-r0", ">", "5.1_p1-r0"),  # a letter beats a suffix, as for valid versions
        ("5.1p1-r0", ">", "5.1-r9"),
        ("5.1p1", "<", "5.1p1-r0"),
        ("5.1p01", "=", "5.1p1"),
        # Elsewhere the walk stops where apk-tools 3 stops: below what continues validly.
        ("0.12.5.-r0", "<", "0.12.5-r0"),
        ("0.12.5.-r0", ">", "0.12.4-r9"),
        ("0.12.5.-r0", "<", "0.12.5"),
        ("0.12.5.-r0", ">", "0.12.5_rc1"),  # a pre-release still sorts lower
        ("0.12.5.-r0", "=", "0.12.5.-r9"),  # apk ignores what follows the break
        ("2.7.16-33", "<", "2.7.16-r0"),
        ("1.11-20-r0", "<", "1.11-r0"),
        ("10.2.22.r0", "<", "10.2.22-r0"),
        ("10.2.22.r0", ">", "10.2.21-r0"),
    ],
)
def test_non_canonical_versions_order_as_documented(a: str, op: str, b: str) -> None:
    assert versions.compare("Alpine", a, b) == _EXPECTED[op]
    assert versions.compare("Alpine", b, a) == -_EXPECTED[op]
    assert model_compare(a, b) == _EXPECTED[op]


def test_numbers_wrap_like_apk_uint64() -> None:
    # apk reads a number into 64 bits without overflow checks: 2**64 reads as 0.
    assert versions.compare("Alpine", str(2**64), "0") == 0
    assert versions.compare("Alpine", str(2**64 + 5), "4") == 1
    assert versions.compare("Alpine", "1." + str(2**64 + 1), "1.1") == 0
    assert model_compare(str(2**64 + 5), "4") == 1


def test_zero_parses() -> None:
    assert versions.compare("Alpine", "0", "0.0") == -1


@settings(max_examples=600)
@given(apk_like_strings(), apk_like_strings())
def test_agrees_with_the_model(a: str, b: str) -> None:
    assert versions.is_canonical("Alpine", a) is model_valid(a)
    assert versions.is_valid("Alpine", a) is model_orderable(a)
    if model_orderable(a) and model_orderable(b):
        assert versions.compare("Alpine", a, b) == model_compare(a, b), (a, b)


@settings(max_examples=300)
@given(apk_versions(), apk_versions())
def test_agrees_with_the_model_on_valid_versions(a: str, b: str) -> None:
    assert versions.compare("Alpine", a, b) == model_compare(a, b), (a, b)


def test_real_secdb_versions() -> None:
    found: set[str] = set()
    for path in sorted(data_file("alpine-secdb").glob("*/*.json")):
        for package in json.loads(path.read_text()).get("packages") or []:
            found.update(package["pkg"].get("secfixes") or {})
    assert len(found) > 1000
    # Typos in the real secdb ("0.12.5.-r0", "2.7.16-33"...) are not canonical, and
    # still ordered the way apk orders them.
    odd = sorted(v for v in found if not versions.is_canonical("Alpine", v))
    assert odd == sorted(v for v in found if not model_valid(v))
    assert "0.12.5.-r0" in odd
    assert "2.7.16-33" in odd
    assert len(odd) < 20
    ordered = sorted(found, key=versions.key_function("Alpine"))
    for a, b in itertools.pairwise(ordered):
        assert model_compare(a, b) <= 0, (a, b)
        assert versions.compare("Alpine", a, b) == model_compare(a, b), (a, b)
