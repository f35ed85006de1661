"""The regex checks of tokens and control characters agree with their definitions."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from patchwarden.collect.parsing import has_control, is_token


def _reference_token(value: str) -> bool:
    return bool(value) and not any(ch.isspace() or ch < " " or ch == "\x7f" for ch in value)


def _reference_control(value: str) -> bool:
    return any(ch < " " or ch == "\x7f" for ch in value)


# Mostly package-name characters, plus every kind of space and control character.
_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from("abc019.+-~:_\x00\x1f\x7f \t\n\x85\xa0\u1680\u2000\u2028\u3000\ufeff"),
        st.characters(),
    ),
    max_size=12,
)


@given(_TEXT)
def test_is_token_matches_its_definition(value: str) -> None:
    assert is_token(value) == _reference_token(value)


@given(_TEXT)
def test_has_control_matches_its_definition(value: str) -> None:
    assert has_control(value) == _reference_control(value)


def test_examples() -> None:
    assert is_token("libssl3")
    assert is_token("1:2.3~rc1+dfsg-4")
    assert not is_token("")
    assert not is_token("a b")
    assert not is_token("a\u00a0b")  # a no-break space is whitespace too
    assert has_control("a\x00b")
    assert not has_control("tab-free text")
