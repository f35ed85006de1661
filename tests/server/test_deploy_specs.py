"""The shared deployment input models (``server/services/deploy_specs.py``) on their own:
what they accept is what the agent accepts, and their messages name the place."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.agent.jobs import parse_script_package
from patchwarden.core.documents import parse_document
from patchwarden.core.errors import ValidationFailed
from patchwarden.server.services.deploy_specs import (
    SCRIPT_NAME,
    SCRIPT_VERSION,
    rollout_spec,
    script_package_spec,
)
from tests.support import REPO_ROOT

COMMANDS = {
    "detect": ["/opt/vendor/bin/agent", "--version"],
    "install": ["/bin/sh", "{artifact}"],
    "verify": ["/opt/vendor/bin/agent", "--selftest"],
    "uninstall": ["/opt/vendor/uninstall"],
}


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(SCRIPT_NAME, fullmatch=True),
    st.from_regex(SCRIPT_VERSION, fullmatch=True),
)
def test_every_name_the_server_registers_the_agent_runs(name: str, version: str) -> None:
    spec = script_package_spec({"name": name, "version": version, "commands": COMMANDS})
    package = parse_script_package(
        {
            "name": spec.name,
            "version": spec.version,
            "url": "https://patchwarden.example.org/api/agent/v1/artifacts/1",
            "sha256": "0" * 64,
            **spec.commands.model_dump(),
        }
    )
    assert (package.name, package.version) == (name, version)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=130), st.text(max_size=70))
def test_names_are_refused_or_plain(name: str, version: str) -> None:
    """Whatever text is offered, a name that passes has no path separator, control
    or direction character, space or leading dash."""
    try:
        script_package_spec({"name": name, "version": version, "commands": COMMANDS})
    except ValidationFailed:  # anything else fails the test
        return
    for text in (name, version):
        assert "/" not in text
        assert "\\" not in text
        assert text.isascii()
        assert text.isprintable()
        assert " " not in text
        assert not text.startswith(("-", "."))


def test_the_documented_spec_example_is_valid() -> None:
    text = (REPO_ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    spec = rollout_spec(parse_document(example, source="docs", yaml_syntax=True))
    assert spec.rollout_policy.checks[0] == {"type": "systemd", "unit": "nginx"}
    assert [ring.concurrency for ring in spec.rings] == ["1", "2", "10%"]
