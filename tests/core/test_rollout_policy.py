"""The typed rollout policy (``core.rollout.parse_policy``): every key with its type and
range, unknown keys refused, clear messages — and whatever it accepts, the agent
accepts in the job it becomes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patchwarden.agent.jobs import validate_job
from patchwarden.core.errors import ValidationFailed
from patchwarden.core.rollout import (
    POLICY_KEYS,
    POLICY_RANGES,
    RolloutPolicy,
    parse_count,
    parse_policy,
    resolve_count,
)


def test_defaults_cover_every_key_and_round_trip() -> None:
    policy = parse_policy({})
    assert policy == RolloutPolicy()
    assert set(policy.to_json()) == set(POLICY_KEYS)
    assert len(POLICY_KEYS) == 12
    assert parse_policy(policy.to_json()) == policy
    full = {
        "max_attempts": 3,
        "retry_backoff_minutes": 0,
        "expected_minutes": 45,
        "claim_deadline_minutes": 60,
        "progress_deadline_minutes": 90,
        "lease_minutes": 10,
        "bandwidth_kbps": 2048,
        "reboot": "never",
        "pre_hooks": ["snapshot"],
        "checks": [
            {"type": "systemd", "unit": "nginx.service"},
            {"type": "http", "url": "http://127.0.0.1/health", "expect_status": 204},
            {"type": "tcp", "host": "127.0.0.1", "port": 5432},
            {"type": "command", "name": "selftest"},
        ],
        "check_timeout": 30,
        "rollback_on_failure": False,
    }
    parsed = parse_policy(full)
    assert parsed.to_json() == full
    assert parsed.retry.max_attempts == 3
    assert parsed.claim_deadline.total_seconds() == 3600


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"claim_deadline_minutes": "soon"},
            "policy.claim_deadline_minutes: should be a whole number from 1 to 43200, got 'soon'",
        ),
        ({"max_attempts": 0}, "policy.max_attempts: should be a whole number from 1 to 10, got 0"),
        ({"max_attempts": True}, "policy.max_attempts: should be a whole number"),
        ({"lease_minutes": 1.5}, "policy.lease_minutes: should be a whole number"),
        ({"bandwidth_kbps": -1}, "policy.bandwidth_kbps: should be a whole number from 0"),
        ({"expected_minutes": None}, "policy.expected_minutes: should be a whole number"),
        ({"progress_deadline_minutes": [1]}, "policy.progress_deadline_minutes"),
        ({"retry_backoff_minutes": 61}, "policy.retry_backoff_minutes"),
        ({"check_timeout": 3601}, "policy.check_timeout: should be a whole number from 1 to 3600"),
        ({"reboot": "sometimes"}, "policy.reboot: should be one of never, if_required, always"),
        ({"rollback_on_failure": "yes"}, "policy.rollback_on_failure: should be true or false"),
        ({"pre_hooks": "snapshot"}, "policy.pre_hooks: should be a list of at most 16 items"),
        ({"pre_hooks": [1]}, "policy.pre_hooks[0]: should be a name, got 1"),
        ({"pre_hooks": ["../x"]}, "policy.pre_hooks[0]: should be a hook name"),
        ({"checks": [["x"]]}, "policy.checks[0]: should be an object"),
        ({"checks": [{"type": "shell"}]}, "policy.checks[0].type: should be one of"),
        ({"checks": [{"type": "systemd", "unit": "a b"}]}, "policy.checks[0].unit"),
        ({"checks": [{"type": "http", "url": "file:///etc"}]}, "policy.checks[0].url"),
        ({"checks": [{"type": "tcp", "host": "db", "port": 0}]}, "policy.checks[0].port"),
        (
            {"checks": [{"type": "command", "name": "x", "argv": []}]},
            "policy.checks[0]: unknown key(s) argv",
        ),
        ({"checks": [{"type": "systemd"}] * 33}, "policy.checks: should be a list of at most 32"),
        ({"lease": 5}, "policy: unknown key(s) lease"),
        ("soon", "policy: should be an object, got 'soon'"),
    ],
)
def test_bad_policies_are_refused_naming_the_key(raw: object, message: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_policy(raw)
    assert caught.value.message.startswith(message), caught.value.message


def test_unknown_keys_list_the_known_ones() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_policy({"claim_deadline": 5})
    assert caught.value.hint is not None
    assert "claim_deadline_minutes" in caught.value.hint


def test_messages_cut_long_values_short() -> None:
    with pytest.raises(ValidationFailed) as caught:
        parse_policy({"reboot": "x" * 100_000})
    assert len(caught.value.message) < 200


def test_counts() -> None:
    assert resolve_count("10%", 25, what="concurrency") == 3
    assert parse_count(" 7 ").resolve(100) == 7
    for bad in ("soon", "0", "0%", "101%", "nan%", True, 2.5, None, [1]):
        with pytest.raises(ValidationFailed, match="should be a whole number"):
            parse_count(bad, what="concurrency")


# Any JSON value: what a spec, an API body or a database row could hold for a key.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
near_values: dict[str, st.SearchStrategy[Any]] = {
    **{
        key: st.integers(low - 2, high + 2) | json_values
        for key, (low, high) in POLICY_RANGES.items()
    },
    "reboot": st.sampled_from(["never", "if_required", "always", "later"]) | json_values,
    "pre_hooks": st.lists(st.sampled_from(["snapshot", "drain-lb", "-x", ""]), max_size=3)
    | json_values,
    "checks": st.lists(
        st.sampled_from(
            [
                {"type": "systemd", "unit": "nginx"},
                {"type": "systemd", "unit": "--now"},
                {"type": "http", "url": "https://127.0.0.1:8443/health"},
                {"type": "http", "url": "http://", "expect_status": 200},
                {"type": "tcp", "host": "db.internal", "port": 5432},
                {"type": "tcp", "host": "db", "port": "5432"},
                {"type": "command", "name": "selftest"},
                {"type": "command", "name": "rm -rf"},
            ]
        ),
        max_size=3,
    )
    | json_values,
    "rollback_on_failure": st.booleans() | json_values,
}


@settings(max_examples=400, deadline=None)
@given(st.fixed_dictionaries({}, optional=near_values))
def test_what_the_server_accepts_the_agent_accepts(raw: dict[str, Any]) -> None:
    """A policy either is refused with ``ValidationFailed`` (never another error), or
    becomes job fields the agent's own validation accepts — so a rollout is never
    created with a policy every host would refuse."""
    try:
        policy = parse_policy(raw)
    except ValidationFailed:
        return
    payload = {
        "job_id": 1,
        "attempt": 1,
        "kind": "install",
        "backend": "apt",
        "packages": [{"name": "openssl", "version": "3.0.11-1"}],
        **policy.job_fields(),
    }
    validate_job(payload)
