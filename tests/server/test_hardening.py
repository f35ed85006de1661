"""Hostile input and rights widening: each test replays an attack from issue 9.

Tokens that mint broader tokens, 500s from out-of-range ids, NUL bytes, lone surrogates,
NaN and huge integers, security headers and cookies under TLS, and sign-in throttling
per (user, IP) — on SQLite and PostgreSQL, through the real app.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from patchwarden.core.errors import AuthenticationRequired, RateLimited
from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext, ServerConfig
from patchwarden.server.security import PERMISSIONS
from patchwarden.server.services import agents, identity
from patchwarden.store.audit import Actor
from tests.server.conftest import PASSWORD, Clock, bearer

SYSTEM = Actor("test", "system")


def _token(ctx: AppContext, username: str, scopes: list[str] | None, days: int = 1) -> str:
    with ctx.db.session() as session:
        user = identity.get_user(session, username)
        _row, secret = identity.create_token(
            session, SYSTEM, user, name="cli", scopes=scopes, days=days, now=ctx.now()
        )
    return secret


def _agent(ctx: AppContext) -> str:
    with ctx.db.session() as session:
        _row, enroll_token = agents.create_enrollment_token(session, SYSTEM, now=ctx.now())
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


def _refusal(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error", "hint", "type"}, body
    return body


# ------------------------------------------------------------ widening one's rights


def test_a_scoped_token_mints_only_narrower_shorter_tokens(
    ctx: AppContext, app_client: TestClient
) -> None:
    scoped = _token(ctx, "admin", ["read", "tokens:self"], days=2)
    minted = app_client.post("/api/v1/tokens", json={"name": "m"}, headers=bearer(scoped))
    assert minted.status_code == 201, minted.text
    assert minted.json()["scopes"] == ["read", "tokens:self"]
    # Leaving out the lifetime takes the longest allowed: the parent's.
    assert minted.json()["expires_at"] == (ctx.now() + timedelta(days=2)).isoformat()
    child = minted.json()["token"]
    me = app_client.get("/api/v1/me", headers=bearer(child)).json()
    assert me["permissions"] == ["read", "tokens:self"]
    # The minted token cannot create an admin (issue 9: it could, with all 11 permissions).
    refused = app_client.post(
        "/api/v1/users",
        json={"username": "mallory", "password": "x" * 16, "role": "admin"},
        headers=bearer(child),
    )
    assert _refusal(refused, 403)["type"] == "PermissionDenied"

    wider = app_client.post(
        "/api/v1/tokens", json={"scopes": ["read", "users:write"]}, headers=bearer(scoped)
    )
    assert "users:write" in _refusal(wider, 403)["error"]
    longer = app_client.post("/api/v1/tokens", json={"days": 30}, headers=bearer(scoped))
    assert "outlive" in _refusal(longer, 403)["error"]
    shorter = app_client.post("/api/v1/tokens", json={"days": 1}, headers=bearer(scoped))
    assert shorter.status_code == 201, shorter.text


def test_a_signed_in_admin_still_creates_any_token(ctx: AppContext, admin: Any) -> None:
    created = admin.client.post(
        "/api/v1/tokens", json={"name": "full", "days": 366}, headers=admin.headers()
    )
    assert created.status_code == 201, created.text
    assert created.json()["scopes"] == sorted(PERMISSIONS)


def test_a_user_admin_token_cannot_hand_out_rights_it_lacks(
    ctx: AppContext, app_client: TestClient
) -> None:
    token = _token(ctx, "admin", ["read", "audit:read", "tokens:self", "users:write"])
    headers = bearer(token)
    body = {"username": "eve", "password": "y" * 16}
    as_admin = app_client.post("/api/v1/users", json={**body, "role": "admin"}, headers=headers)
    assert "role admin" in _refusal(as_admin, 403)["error"]
    # A role within the token's own permissions is fine.
    auditor = app_client.post("/api/v1/users", json={**body, "role": "auditor"}, headers=headers)
    assert auditor.status_code == 201, auditor.text
    eve = auditor.json()["id"]
    promoted = app_client.patch(f"/api/v1/users/{eve}", json={"role": "admin"}, headers=headers)
    _refusal(promoted, 403)
    with ctx.db.session() as session:
        operator_id = identity.get_user(session, "operator").id
        admin_id = identity.get_user(session, "admin").id
    # Setting a stronger user's password would let the token sign in as them.
    for target in (operator_id, admin_id):
        reset = app_client.patch(
            f"/api/v1/users/{target}", json={"password": "z" * 16}, headers=headers
        )
        _refusal(reset, 403)
    signed_in = app_client.post(
        "/api/v1/session", json={"username": "operator", "password": PASSWORD}
    )
    assert signed_in.status_code == 200  # the operator's password is unchanged
    # Taking rights away stays possible.
    disabled = app_client.patch(
        f"/api/v1/users/{operator_id}", json={"disabled": True}, headers=headers
    )
    assert disabled.status_code == 200, disabled.text


# -------------------------------------------------------- hostile input, no 5xx


@pytest.mark.parametrize(
    "credential",
    [
        "pwt_2147483648_x",
        "pwt_99999999999999999999999_x",
        "pwt_\u00b2_x",  # a digit to str.isdigit, not to int()
        "pwt_0_x",
        "pwt_1_\u00e9",
    ],
)
def test_out_of_range_api_tokens_are_refused(app_client: TestClient, credential: str) -> None:
    raw = f"Bearer {credential}".encode("latin-1")
    response = app_client.get("/api/v1/me", headers={"Authorization": raw})  # type: ignore[dict-item]
    _refusal(response, 401)


def test_out_of_range_agent_and_enrollment_tokens_are_refused(
    ctx: AppContext, app_client: TestClient
) -> None:
    for path in ("/api/agent/v1/jobs", "/api/agent/v1/script-packages/1/artifact"):
        response = app_client.get(path, headers=bearer("pwa_2147483648_secret"))
        _refusal(response, 401)
    checkin = app_client.post(
        "/api/agent/v1/checkin", json={}, headers=bearer("pwa_4294967296_secret")
    )
    _refusal(checkin, 401)
    enroll = app_client.post(
        "/api/agent/v1/enroll",
        json={"enrollment_token": "pwe_2147483648_x", "hostname": "h"},
    )
    _refusal(enroll, 401)


def test_path_and_query_ids_beyond_the_column_are_refused(
    ctx: AppContext, app_client: TestClient
) -> None:
    headers = bearer(_token(ctx, "admin", None))
    for path in (
        "/api/v1/assets/2147483648",
        "/api/v1/groups/99999999999999999999",
        "/api/v1/rollouts/2147483648",
        "/api/v1/findings?asset_id=2147483648",
        "/api/v1/assets?offset=9223372036854775808",
        "/api/v1/groups/1/members?limit=-1",
    ):
        _refusal(app_client.get(path, headers=headers), 422)
    agent = bearer(_agent(ctx))
    result = app_client.post(
        "/api/agent/v1/jobs/2147483648/result",
        json={"attempt": 1, "status": "failed"},
        headers=agent,
    )
    _refusal(result, 422)


def _post(client: TestClient, path: str, body: Any, headers: dict[str, str]) -> Any:
    """POST ``body`` as JSON text with escapes (a lone surrogate cannot be encoded raw)."""
    sent = {**headers, "Content-Type": "application/json"}
    return client.post(path, content=json.dumps(body).encode(), headers=sent)


@pytest.mark.parametrize("bad", ["a\x00b", "\ud800"])
def test_unstorable_text_is_refused_before_the_database(
    ctx: AppContext, app_client: TestClient, bad: str
) -> None:
    login = _post(app_client, "/api/v1/session", {"username": bad, "password": "x"}, {})
    assert "username" in _refusal(login, 422)["error"]
    headers = bearer(_token(ctx, "admin", None))
    for path, body in (
        ("/api/v1/groups", {"name": bad}),
        (
            "/api/v1/exceptions",
            {"advisory": "CVE-1", "justification": bad, "expires_at": "2030-01-01T00:00:00Z"},
        ),
        ("/api/v1/baselines", {"name": "b", "rules": {"deny": [bad]}}),
        ("/api/v1/baselines", {"name": "b", "rules": {bad: 1}}),
        ("/api/agent/v1/enroll", {"enrollment_token": "pwe_1_x", "hostname": bad}),
    ):
        _refusal(_post(app_client, path, body, headers), 422)
    if "\x00" in bad:  # (a URL cannot carry a lone surrogate)
        listed = app_client.get("/api/v1/assets", params={"q": bad}, headers=headers)
        _refusal(listed, 422)


def test_nul_in_a_page_url_or_login_form_is_a_clear_refusal(
    ctx: AppContext, app_client: TestClient
) -> None:
    headers = bearer(_token(ctx, "admin", None))
    page = app_client.get("/?q=%00", headers={**headers, "Accept": "text/html"})
    assert page.status_code == 422
    form = app_client.get("/login")
    csrf = form.cookies.get("pw_login_csrf") or app_client.cookies.get("pw_login_csrf")
    posted = app_client.post(
        "/login",
        data={"username": "ad\x00min", "password": "x", "csrf_token": csrf or ""},
        headers={"Accept": "text/html"},
    )
    assert posted.status_code == 422, posted.text


def test_pages_refuse_out_of_range_ids_and_nul_in_forms(
    ctx: AppContext, app_client: TestClient
) -> None:
    headers = {**bearer(_token(ctx, "admin", None)), "Accept": "text/html"}
    for path in ("/assets/2147483648", "/rollouts/99999999999", "/groups/2147483648"):
        assert app_client.get(path, headers=headers).status_code == 422, path
    overview = app_client.get("/?group=\u00b2", headers=headers)  # a digit to isdigit only
    assert overview.status_code == 200
    form = app_client.post(
        "/exceptions",
        data={"justification": "because\x00", "days": "30", "advisory": "CVE-1"},
        headers=headers,
    )
    assert form.status_code == 422, form.text


def test_agent_payloads_out_of_range_are_refused(ctx: AppContext, app_client: TestClient) -> None:
    agent = bearer(_agent(ctx))
    checkin = app_client.post(
        "/api/agent/v1/checkin", json={"uptime_seconds": 2147483648}, headers=agent
    )
    assert "uptime_seconds" in _refusal(checkin, 422)["error"]
    ok = app_client.post("/api/agent/v1/checkin", json={"uptime_seconds": 86400}, headers=agent)
    assert ok.status_code == 200, ok.text
    for raw in (
        b'{"attempt": 1, "status": "failed", "result": {"n": 1' + b"0" * 40 + b"}}",
        b'{"attempt": 1, "status": "failed", "result": {"n": NaN}}',
        b'{"attempt": 1, "status": "failed", "result": {"n": [Infinity]}}',
        b'{"attempt": 99999999999, "status": "failed"}',
    ):
        response = app_client.post(
            "/api/agent/v1/jobs/1/result",
            content=raw,
            headers={**agent, "Content-Type": "application/json"},
        )
        _refusal(response, 422)


def test_a_body_that_is_not_utf8_json_is_a_422(ctx: AppContext, app_client: TestClient) -> None:
    response = app_client.post(
        "/api/v1/session", content=b"\xff\xfe{", headers={"Content-Type": "application/json"}
    )
    assert _refusal(response, 422)["type"] == "ValidationFailed"


def test_the_document_declares_refusals_with_the_error_body(
    ctx: AppContext, app_client: TestClient
) -> None:
    spec = app_client.get("/api/openapi.json", headers=bearer(_token(ctx, "admin", None))).json()
    login = spec["paths"]["/api/v1/session"]["post"]["responses"]
    assert {"401", "413", "422", "429"} <= set(login)
    asset = spec["paths"]["/api/v1/assets/{asset_id}"]["get"]
    assert {"401", "403", "404", "413", "422"} <= set(asset["responses"])
    error = asset["responses"]["404"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    assert asset["parameters"][0]["schema"]["maximum"] == 2**31 - 1
    assert "HTTPValidationError" not in spec["components"]["schemas"]


# ------------------------------------------------------------- headers and cookies


def test_every_response_carries_the_security_headers(app_client: TestClient) -> None:
    for response in (app_client.get("/login"), app_client.get("/api/v1/me")):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
        assert "strict-transport-security" not in response.headers  # plain HTTP


def test_under_tls_every_cookie_is_secure_and_hsts_is_sent(ctx: AppContext) -> None:
    tls = AppContext(db=ctx.db, config=ServerConfig(secure_cookies=True), clock=ctx.clock)
    with TestClient(create_app(tls, background=False)) as client:
        form = client.get("/login")
        assert form.headers["strict-transport-security"].startswith("max-age=")
        cookies = form.headers.get_list("set-cookie")
        assert any(c.startswith("pw_login_csrf=") for c in cookies)
        assert all("Secure" in c for c in cookies), cookies
        login = client.post("/api/v1/session", json={"username": "admin", "password": PASSWORD})
        assert all("Secure" in c for c in login.headers.get_list("set-cookie"))
    # A request that arrives over HTTPS gets them without the setting too.
    with TestClient(create_app(ctx, background=False), base_url="https://testserver") as client:
        form = client.get("/login")
        assert "strict-transport-security" in form.headers
        assert all("Secure" in c for c in form.headers.get_list("set-cookie"))


# ------------------------------------------------------------------ sign-in limits


def test_guessing_from_one_address_does_not_lock_the_user_out_elsewhere(
    ctx: AppContext, clock: Clock
) -> None:
    config = ctx.config

    def attempt(password: str, ip: str) -> str:
        # As the sign-in route does: a failure is recorded (committed), then refused.
        with ctx.db.session() as session:
            try:
                identity.authenticate(
                    session, username="admin", password=password, ip=ip, now=clock(), config=config
                )
            except (AuthenticationRequired, RateLimited) as exc:
                return type(exc).__name__
        return "signed in"

    for _ in range(config.login_max_failures_user):
        assert attempt("wrong password!", "203.0.113.66") == "AuthenticationRequired"
    # The guesser is throttled, even with the right password ...
    assert attempt(PASSWORD, "203.0.113.66") == "RateLimited"
    # ... but the real admin, elsewhere, signs in (issue 9: locked out for 15 minutes).
    assert attempt(PASSWORD, "198.51.100.7") == "signed in"
