"""Server fixtures: the real FastAPI app on the test database, an injectable clock,
and users of every role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from patchwarden.server.app import create_app
from patchwarden.server.context import AppContext, ServerConfig
from patchwarden.server.services import identity
from patchwarden.store.audit import Actor
from patchwarden.store.db import Database

PASSWORD = "correct horse battery staple"
ROLES = ("admin", "operator", "approver", "auditor")
#: The ``ctx`` fixture creates one user per role, in ROLES order, on an empty database.
USER_IDS = {role: number for number, role in enumerate(ROLES, start=1)}


def user_actor(role: str) -> Actor:
    """The fixture user of ``role`` as a signed-in actor (four eyes needs user ids)."""
    return Actor(role, "user", user_id=USER_IDS[role])


class Clock:
    """A settable clock for the app under test."""

    def __init__(self, start: datetime) -> None:
        self.value = start

    def __call__(self) -> datetime:
        return self.value

    def advance(self, **delta: float) -> None:
        self.value += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 27, 9, 0, tzinfo=UTC))


@pytest.fixture
def ctx(db: Database, clock: Clock) -> AppContext:
    context = AppContext(db=db, config=ServerConfig(), clock=clock)
    with db.session() as session:
        for role in ROLES:
            user = identity.create_user(
                session,
                Actor("test", "system"),
                username=role,
                password=PASSWORD,
                role=role,
                now=clock(),
            )
            assert user.id == USER_IDS[role]
    return context


@pytest.fixture
def app_client(ctx: AppContext) -> Iterator[TestClient]:
    """An anonymous client of the real app (no background sweeper)."""
    with TestClient(create_app(ctx, background=False)) as client:
        yield client


@dataclass
class SignedIn:
    """A client with a browser session: cookie set, CSRF token known."""

    client: TestClient
    csrf: str

    def headers(self) -> dict[str, str]:
        return {"X-CSRF-Token": self.csrf}


def sign_in(ctx: AppContext, role: str) -> SignedIn:
    client = TestClient(create_app(ctx, background=False))
    response = client.post("/api/v1/session", json={"username": role, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return SignedIn(client, response.json()["csrf_token"])


@pytest.fixture
def admin(ctx: AppContext) -> Iterator[SignedIn]:
    signed = sign_in(ctx, "admin")
    with signed.client:
        yield signed


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
