"""Every route of the app is authenticated and authorized — enumerated, not listed by hand.

A new route that forgets its ``Permission`` / ``AgentAuth`` / ``Public`` dependency fails
``test_every_route_declares_its_access``; one that declares a permission but lets
anonymous callers, agents or weaker roles through fails the refusal tests.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from patchwarden.server.app import create_app
from patchwarden.server.auth import AgentAccess, Permission, Public
from patchwarden.server.context import AppContext
from patchwarden.server.security import ROLE_PERMISSIONS
from patchwarden.server.services import agents, identity
from patchwarden.store.audit import Actor
from tests.server.conftest import ROLES, SignedIn, bearer, sign_in


@dataclass(frozen=True)
class RouteAccess:
    method: str
    path: str
    kind: str  # permission, agent, public
    permission: str = ""


def _access(route: APIRoute) -> list[tuple[str, str]]:
    found = []
    for dep in route.dependant.dependencies:
        call = dep.call
        if isinstance(call, Permission):
            found.append(("permission", call.permission))
        elif isinstance(call, AgentAccess):
            found.append(("agent", ""))
        elif isinstance(call, Public):
            found.append(("public", call.reason))
        # Dependencies of dependencies (e.g. the DB session) are not access declarations.
    return found


def _api_routes(routes: list[Any]) -> list[APIRoute]:
    """Every APIRoute, descending into included routers (FastAPI keeps them nested)."""
    found: list[APIRoute] = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        elif hasattr(route, "original_router"):
            found.extend(_api_routes(route.original_router.routes))
    return found


def routes(app: FastAPI) -> list[RouteAccess]:
    result = []
    for route in _api_routes(app.routes):
        declared = _access(route)
        assert len(declared) == 1, f"{route.path} declares {declared or 'no'} access rule(s)"
        kind, detail = declared[0]
        for method in sorted(route.methods):
            result.append(
                RouteAccess(method, route.path, kind, detail if kind == "permission" else "")
            )
    return result


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def call(client: TestClient, access: RouteAccess, headers: dict[str, str]) -> int:
    response = client.request(
        access.method,
        concrete(access.path),
        headers={"Accept": "application/json", **headers},
        json={},
        follow_redirects=False,
    )
    return response.status_code


@pytest.fixture
def role_tokens(ctx: AppContext) -> dict[str, str]:
    tokens = {}
    with ctx.db.session() as session:
        for role in ROLES:
            user = identity.get_user(session, role)
            _row, secret = identity.create_token(
                session,
                Actor("test", "system"),
                user,
                name="t",
                scopes=None,
                days=1,
                now=ctx.now(),
            )
            tokens[role] = secret
    return tokens


@pytest.fixture
def agent_token(ctx: AppContext) -> str:
    with ctx.db.session() as session:
        _row, enroll_token = agents.create_enrollment_token(
            session, Actor("test", "system"), now=ctx.now()
        )
        enrolled = agents.enroll(
            session,
            token=enroll_token,
            hostname="h1",
            fqdn="",
            machine_id="",
            agent_version="",
            ip="127.0.0.1",
            now=ctx.now(),
        )
    return enrolled.credential


def test_every_route_declares_its_access(ctx: AppContext) -> None:
    table = routes(create_app(ctx, background=False))
    assert len(table) > 30
    public = {(r.method, r.path) for r in table if r.kind == "public"}
    assert public == {
        ("GET", "/healthz"),
        ("POST", "/api/v1/session"),
        ("POST", "/api/agent/v1/enroll"),
        ("GET", "/login"),
        ("POST", "/login"),
    }


def test_anonymous_callers_are_refused_everywhere(ctx: AppContext, app_client: TestClient) -> None:
    for access in routes(app_client.app):  # type: ignore[arg-type]
        if access.kind == "public":
            continue
        assert call(app_client, access, {}) == 401, access


def test_agent_credentials_open_only_agent_routes(
    ctx: AppContext, app_client: TestClient, agent_token: str
) -> None:
    for access in routes(app_client.app):  # type: ignore[arg-type]
        if access.kind == "permission":
            assert call(app_client, access, bearer(agent_token)) == 401, access


def test_user_tokens_do_not_open_agent_routes(
    ctx: AppContext, app_client: TestClient, role_tokens: dict[str, str]
) -> None:
    for access in routes(app_client.app):  # type: ignore[arg-type]
        if access.kind == "agent":
            assert call(app_client, access, bearer(role_tokens["admin"])) == 401, access


def test_weaker_roles_are_refused(
    ctx: AppContext, app_client: TestClient, role_tokens: dict[str, str]
) -> None:
    checked = 0
    for access in routes(app_client.app):  # type: ignore[arg-type]
        if access.kind != "permission":
            continue
        for role in ROLES:
            if access.permission not in ROLE_PERMISSIONS[role]:
                assert call(app_client, access, bearer(role_tokens[role])) == 403, (role, access)
                checked += 1
    assert checked > 30


def test_narrow_token_scope_limits_a_strong_role(ctx: AppContext, app_client: TestClient) -> None:
    with ctx.db.session() as session:
        admin = identity.get_user(session, "admin")
        _row, read_only = identity.create_token(
            session, Actor("t", "system"), admin, name="ro", scopes=["read"], days=1, now=ctx.now()
        )
    assert app_client.get("/api/v1/assets", headers=bearer(read_only)).status_code == 200
    response = app_client.post(
        "/api/v1/groups", headers=bearer(read_only), json={"name": "g", "members": []}
    )
    assert response.status_code == 403
    assert "groups:write" in response.json()["error"]


def test_session_writes_need_the_csrf_token(ctx: AppContext) -> None:
    signed: SignedIn = sign_in(ctx, "admin")
    with signed.client:
        body = {"name": "web", "members": []}
        refused = signed.client.post("/api/v1/groups", json=body)
        assert refused.status_code == 403
        assert "CSRF" in refused.json()["error"]
        wrong = signed.client.post("/api/v1/groups", json=body, headers={"X-CSRF-Token": "nope"})
        assert wrong.status_code == 403
        accepted = signed.client.post("/api/v1/groups", json=body, headers=signed.headers())
        assert accepted.status_code == 201, accepted.text


def test_expired_and_revoked_tokens_are_refused(
    ctx: AppContext, app_client: TestClient, role_tokens: dict[str, str], clock: object
) -> None:
    token = role_tokens["auditor"]
    assert app_client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    with ctx.db.session() as session:
        token_id = int(token.split("_")[1])
        identity.revoke_token(session, Actor("t", "system"), token_id, now=ctx.now(), owner_id=None)
    response = app_client.get("/api/v1/me", headers=bearer(token))
    assert response.status_code == 401
    assert "revoked" in response.json()["error"]

    other = role_tokens["operator"]
    clock.advance(days=2)  # type: ignore[attr-defined]
    response = app_client.get("/api/v1/me", headers=bearer(other))
    assert response.status_code == 401
    assert "expired" in response.json()["error"]
