"""JSON given on the command line (--defaults, --filter) is plain data like any
document: deep nesting, NaN or duplicate keys are one-line errors, never a crash."""

from __future__ import annotations

import pytest

from patchwarden.cli.main import run


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["enroll", "create", "--defaults", "[" * 5000 + "]" * 5000], "nested more than 32"),
        (["enroll", "create", "--defaults", '{"tags": NaN}'], "NaN is not accepted"),
        (["enroll", "create", "--defaults", '{"a": 1, "a": 2}'], "'a' appears twice"),
        (["enroll", "create", "--defaults", "[1]"], "must be an object"),
        (["groups", "create", "g", "--filter", '{"tags_any": ['], "not valid JSON"),
    ],
)
def test_json_options_are_checked_before_anything_runs(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --")
    assert message in err
    assert "internal error" not in err
