"""The admin REST API: assets, findings, groups (static and dynamic), users, tokens,
enrollment tokens — with pagination, filtering and audited changes."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient

from patchwarden.core.model import (
    Advisory,
    Affected,
    AffectedRange,
    Event,
    InstalledPackage,
    Inventory,
    OsInfo,
)
from patchwarden.server.context import AppContext
from patchwarden.store.advisories import import_advisories
from patchwarden.store.findings import refresh_findings
from patchwarden.store.inventory import record_inventory
from tests.server.conftest import PASSWORD, SignedIn, bearer

DEBIAN = OsInfo(
    id="debian",
    version_id="12",
    ecosystem="Debian:12",
    family="debian",
    pretty_name="Debian GNU/Linux 12 (bookworm)",
)


def seed(ctx: AppContext, hosts: int = 3) -> list[int]:
    """Hosts web-0.. with openssl 3.0.9-1 (vulnerable) and one advisory."""
    advisory = Advisory(
        id="DSA-5532-1",
        modified=datetime(2026, 1, 1, tzinfo=UTC),
        aliases=("CVE-2023-5363",),
        summary="openssl security update",
        affected=(
            Affected(
                "Debian:12",
                "openssl",
                (
                    AffectedRange(
                        "ECOSYSTEM", (Event("introduced", "0"), Event("fixed", "3.0.11-1~deb12u1"))
                    ),
                ),
            ),
        ),
        database_severity="high",
    )
    ids = []
    with ctx.db.session() as session:
        import_advisories(session, [advisory])
        for n in range(hosts):
            inv = Inventory(
                hostname=f"web-{n}",
                os=DEBIAN,
                packages=(
                    InstalledPackage(
                        "libssl3", "3.0.9-1", "Debian:12", "amd64", "openssl", "3.0.9-1"
                    ),
                    InstalledPackage("bash", "5.2.15-2", "Debian:12", "amd64", "bash", "5.2.15-2"),
                ),
            )
            asset_id, _ = record_inventory(session, inv, now=ctx.now())
            ids.append(asset_id)
        refresh_findings(session, now=ctx.now())
    return ids


def test_assets_list_filter_page_and_detail(ctx: AppContext, admin: SignedIn) -> None:
    ids = seed(ctx, hosts=5)
    page = admin.client.get("/api/v1/assets", params={"limit": 2, "offset": 0}).json()
    assert page["total"] == 5
    assert len(page["items"]) == 2
    assert page["next_offset"] == 2
    assert page["items"][0]["open_findings"]["P3"] + page["items"][0]["open_findings"]["P2"] == 1
    found = admin.client.get("/api/v1/assets", params={"q": "web-3"}).json()
    assert [a["hostname"] for a in found["items"]] == ["web-3"]
    detail = admin.client.get(f"/api/v1/assets/{ids[0]}").json()
    assert detail["packages"] == 2
    assert detail["os"]["ecosystem"] == "Debian:12"
    assert detail["agent"] is None
    packages = admin.client.get(f"/api/v1/assets/{ids[0]}/packages").json()
    assert {p["name"] for p in packages["items"]} == {"libssl3", "bash"}
    report = admin.client.get(f"/api/v1/assets/{ids[0]}/report").json()
    assert report["findings"][0]["advisory_id"] == "DSA-5532-1"
    assert report["remediation"][0]["target_version"] == "3.0.11-1~deb12u1"
    missing = admin.client.get("/api/v1/assets/999")
    assert missing.status_code == 404
    assert "999" in missing.json()["error"]


def test_changing_context_rescores_and_regroups(ctx: AppContext, admin: SignedIn) -> None:
    ids = seed(ctx, hosts=2)
    group = admin.client.post(
        "/api/v1/groups",
        json={"name": "exposed", "filter": {"exposure": "internet"}},
        headers=admin.headers(),
    ).json()
    assert group["members"] == 0
    before = admin.client.get("/api/v1/findings", params={"asset_id": ids[0]}).json()["items"][0]
    changed = admin.client.patch(
        f"/api/v1/assets/{ids[0]}",
        json={"exposure": "internet", "criticality": 5, "tags": ["web", "pci"]},
        headers=admin.headers(),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["groups"] == [{"id": group["id"], "name": "exposed"}]
    after = admin.client.get("/api/v1/findings", params={"asset_id": ids[0]}).json()["items"][0]
    assert after["risk_score"] > before["risk_score"]
    members = admin.client.get(f"/api/v1/groups/{group['id']}/members").json()
    assert [m["hostname"] for m in members["items"]] == ["web-0"]
    bad = admin.client.patch(
        f"/api/v1/assets/{ids[0]}", json={"criticality": 9}, headers=admin.headers()
    )
    assert bad.status_code == 422
    unknown = admin.client.patch(
        f"/api/v1/assets/{ids[0]}", json={"os_id": "windows"}, headers=admin.headers()
    )
    assert unknown.status_code == 422
    assert "cannot change os_id" in unknown.json()["error"]


def test_static_groups_and_group_errors(ctx: AppContext, admin: SignedIn) -> None:
    ids = seed(ctx, hosts=3)
    created = admin.client.post(
        "/api/v1/groups", json={"name": "lab", "members": ids[:2]}, headers=admin.headers()
    )
    assert created.status_code == 201
    group_id = created.json()["id"]
    assert created.json()["members"] == 2
    moved = admin.client.post(
        f"/api/v1/groups/{group_id}/members",
        json={"add": [ids[2]], "remove": [ids[0]]},
        headers=admin.headers(),
    )
    assert moved.json()["members"] == 2
    duplicate = admin.client.post("/api/v1/groups", json={"name": "lab"}, headers=admin.headers())
    assert duplicate.status_code == 409
    bad_filter = admin.client.post(
        "/api/v1/groups", json={"name": "x", "filter": {"colour": "red"}}, headers=admin.headers()
    )
    assert bad_filter.status_code == 422
    assert "colour" in bad_filter.json()["error"]
    ghost = admin.client.post(
        f"/api/v1/groups/{group_id}/members", json={"add": [999]}, headers=admin.headers()
    )
    assert ghost.status_code == 404
    filtered = admin.client.get("/api/v1/findings", params={"group": group_id}).json()
    assert filtered["total"] == 2
    assert admin.client.delete(f"/api/v1/groups/{group_id}", headers=admin.headers()).json() == {
        "status": "deleted"
    }


def test_users_and_tokens(ctx: AppContext, admin: SignedIn, app_client: TestClient) -> None:
    created = admin.client.post(
        "/api/v1/users",
        json={"username": "dana", "password": "another long password", "role": "operator"},
        headers=admin.headers(),
    )
    assert created.status_code == 201, created.text
    short = admin.client.post(
        "/api/v1/users",
        json={"username": "eve", "password": "short", "role": "operator"},
        headers=admin.headers(),
    )
    assert short.status_code == 422
    assert "12 characters" in short.json()["error"]
    users = admin.client.get("/api/v1/users").json()
    assert "dana" in {u["username"] for u in users["items"]}
    assert all("password" not in str(u) for u in users["items"])

    token = admin.client.post(
        "/api/v1/tokens",
        json={"name": "ci", "scopes": ["read"], "days": 7},
        headers=admin.headers(),
    ).json()
    assert token["token"].startswith("pwt_")
    assert token["scopes"] == ["read"]
    me = app_client.get("/api/v1/me", headers=bearer(token["token"])).json()
    assert me["permissions"] == ["read"]
    listed = admin.client.get("/api/v1/tokens").json()
    assert all("token" not in item for item in listed["items"])
    revoked = admin.client.delete(f"/api/v1/tokens/{token['id']}", headers=admin.headers())
    assert revoked.json()["revoked_at"] is not None
    assert app_client.get("/api/v1/me", headers=bearer(token["token"])).status_code == 401

    dana_id = created.json()["id"]
    disabled = admin.client.patch(
        f"/api/v1/users/{dana_id}", json={"disabled": True}, headers=admin.headers()
    )
    assert disabled.json()["disabled"] is True
    login = app_client.post(
        "/api/v1/session", json={"username": "dana", "password": "another long password"}
    )
    assert login.status_code == 401
    self_demote = admin.client.patch(
        "/api/v1/users/1", json={"role": "auditor"}, headers=admin.headers()
    )
    assert self_demote.status_code == 403


def test_enrollment_tokens_api(ctx: AppContext, admin: SignedIn, app_client: TestClient) -> None:
    created = admin.client.post(
        "/api/v1/enrollment-tokens",
        json={
            "hours": 2,
            "max_uses": 3,
            "note": "rack 7",
            "defaults": {"environment": "prod", "tags": ["rack7"]},
        },
        headers=admin.headers(),
    ).json()
    assert created["token"].startswith("pwe_")
    enrolled = app_client.post(
        "/api/agent/v1/enroll",
        json={"protocol": 1, "enrollment_token": created["token"], "hostname": "r7-1"},
    ).json()
    detail = admin.client.get(f"/api/v1/assets/{enrolled['asset_id']}").json()
    assert detail["environment"] == "prod"
    assert detail["tags"] == ["rack7"]
    listed = admin.client.get("/api/v1/enrollment-tokens").json()["items"]
    assert listed[0]["uses"] == 1
    bad = admin.client.post(
        "/api/v1/enrollment-tokens", json={"defaults": {"os_id": "x"}}, headers=admin.headers()
    )
    assert bad.status_code == 422


def test_browser_sign_in_and_out(ctx: AppContext, app_client: TestClient) -> None:
    login_page = app_client.get("/login")
    assert login_page.status_code == 200
    csrf = app_client.cookies.get("pw_login_csrf")
    assert csrf
    signed = app_client.post(
        "/login",
        data={"username": "auditor", "password": PASSWORD, "csrf_token": csrf, "next": "/"},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    assert signed.headers["location"] == "/"
    assert app_client.get("/api/v1/me").json()["role"] == "auditor"
    forged = app_client.post(
        "/login",
        data={"username": "auditor", "password": PASSWORD, "csrf_token": "x", "next": "/"},
        follow_redirects=False,
    )
    assert forged.status_code == 200
    assert "expired" in forged.text
    open_redirect = app_client.get("/login", params={"next": "https://evil.example/"})
    assert 'value="/"' in open_redirect.text
