"""First contact with the app: health, sign-in, an authenticated read."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.server.conftest import SignedIn


def test_health_is_public(app_client: TestClient) -> None:
    response = app_client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_anonymous_api_call_is_refused(app_client: TestClient) -> None:
    response = app_client.get("/api/v1/assets")
    assert response.status_code == 401
    assert "sign in" in response.json()["error"]


def test_admin_reads_the_fleet(admin: SignedIn) -> None:
    response = admin.client.get("/api/v1/summary")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "assets": 0,
        "open_findings": {"P1": 0, "P2": 0, "P3": 0, "P4": 0},
        "overdue": 0,
    }


def test_the_api_schema_is_documented_and_authenticated(
    app_client: TestClient, admin: SignedIn
) -> None:
    assert app_client.get("/api/openapi.json").status_code == 401
    assert app_client.get("/openapi.json").status_code == 404  # no open default
    schema = admin.client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/assets" in schema["paths"]
    assert "/api/v1/rollouts/{rollout_id}/approve" in schema["paths"]
    page = admin.client.get("/api/docs")
    assert page.status_code == 200
    assert "/api/openapi.json" in page.text
