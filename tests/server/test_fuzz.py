"""Property-based fuzzing of the whole HTTP API against its own OpenAPI document.

schemathesis reads the document the app serves, generates requests for every operation
— valid ones and invalid ones (wrong types, out-of-range numbers, NUL bytes, lone
surrogates, huge integers, bodies that are not JSON) — and sends them to the real app
in-process, on SQLite and PostgreSQL, as three callers: an admin's API token, an
agent's credential and an anonymous client. Every answer must be no 5xx, and must match
the document: a declared status, its declared content type and schema (refusals are
the ``ErrorBody``). Hypothesis draws the cases at random; a failure prints its seed.

Bounded for the normal suite: ``PATCHWARDEN_FUZZ_EXAMPLES`` (default 4) examples per
operation and caller; raise it for a longer run by hand, e.g.
``PATCHWARDEN_FUZZ_EXAMPLES=200 .venv/bin/pytest tests/server/test_fuzz.py``.
"""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext
from patchwarden.server.services import agents, identity
from patchwarden.store.audit import Actor
from patchwarden.store.groups import create_group

EXAMPLES = int(os.environ.get("PATCHWARDEN_FUZZ_EXAMPLES", "4"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
SYSTEM = Actor("fuzz", "system")


def _seed(ctx: AppContext) -> dict[str, str]:
    """Objects for the fuzzer to find (ids 1, 2 …): an admin token, an enrolled host,
    a group. Returns each caller's headers."""
    now = ctx.now()
    with ctx.db.session() as session:
        admin = identity.get_user(session, "admin")
        _row, token = identity.create_token(
            session, SYSTEM, admin, name="fuzz", scopes=None, days=30, now=now
        )
        _row, enroll_token = agents.create_enrollment_token(session, SYSTEM, now=now, max_uses=5)
        enrolled = agents.enroll(
            session,
            token=enroll_token,
            hostname="fuzz-host",
            fqdn="",
            machine_id="",
            agent_version="",
            ip="127.0.0.1",
            now=now,
        )
        create_group(
            session, SYSTEM, name="fuzz", now=now, members=[enrolled.asset_id], description=""
        )
    return {
        "admin": f"Bearer {token}",
        "agent": f"Bearer {enrolled.credential}",
    }


def _fuzz(cases: st.SearchStrategy[schemathesis.Case], headers: dict[str, str]) -> None:
    """Send ``EXAMPLES`` cases as the caller with ``headers``; check every answer."""

    @given(case=cases)
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],
    )
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(headers=headers, checks=CHECKS)

    check()


def test_every_answer_matches_the_document(ctx: AppContext) -> None:
    credentials = _seed(ctx)
    callers = {
        "admin": {"Authorization": credentials["admin"]},
        "agent": {"Authorization": credentials["agent"]},
        "anonymous": {},
    }
    app = create_app(ctx, background=False)
    loaded = schemathesis.openapi.from_asgi("/api/openapi.json", app, headers=callers["admin"])
    operations = [result.ok() for result in loaded.get_all_operations()]
    assert len(operations) > 40
    failures: list[str] = []
    for operation in operations:
        # Valid and invalid requests alike, drawn from one strategy per operation.
        cases = st.one_of(
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
        )
        for caller, headers in callers.items():
            try:
                _fuzz(cases, headers)
            except (FailureGroup, Exception) as exc:  # every operation's failures, then report
                failures.append(f"{operation.label} as {caller}: {exc}")
    assert not failures, "\n\n".join(failures)
