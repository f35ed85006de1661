"""Two server processes against one PostgreSQL both serve agents correctly."""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select

from patchwarden.collect.jsonfmt import inventory_to_json
from patchwarden.core.model import InstalledPackage, Inventory, OsInfo
from patchwarden.server.services import agents
from patchwarden.store.audit import Actor, verify
from patchwarden.store.db import open_database
from patchwarden.store.models import AgentReportRow, AssetPackage, AssetRow
from tests.e2e.servers import running_servers
from tests.support import TEST_AUDIT_KEY

DEBIAN = OsInfo(id="debian", version_id="12", ecosystem="Debian:12", family="debian")


def inventory(host: str, extra: int) -> bytes:
    packages = tuple(
        InstalledPackage(f"pkg{n}", f"1.{n}-1", "Debian:12", "amd64", f"pkg{n}", f"1.{n}-1")
        for n in range(10 + extra)
    )
    inv = Inventory(hostname=host, packages=packages, os=DEBIAN)
    return gzip.compress(json.dumps(inventory_to_json(inv)).encode())


def test_two_servers_one_postgres(postgres_url: str, tmp_path: Path) -> None:
    database = open_database(postgres_url, migrate=False, audit_key=TEST_AUDIT_KEY)
    hosts = 12
    with database.session() as session:
        _row, token = agents.create_enrollment_token(
            session, Actor("test", "system"), now=datetime.now(UTC), max_uses=hosts
        )
    try:
        with running_servers(postgres_url, tmp_path, count=2) as servers:
            credentials = {}
            for n in range(hosts):
                server = servers[n % 2]  # enroll alternately through both processes
                answer = httpx.post(
                    f"{server.url}/api/agent/v1/enroll",
                    json={"protocol": 1, "enrollment_token": token, "hostname": f"multi-{n}"},
                    timeout=10,
                )
                assert answer.status_code == 200, answer.text
                credentials[n] = answer.json()["credential"]
            extra = httpx.post(
                f"{servers[1].url}/api/agent/v1/enroll",
                json={"protocol": 1, "enrollment_token": token, "hostname": "one-too-many"},
                timeout=10,
            )
            assert extra.status_code == 401  # max_uses holds across processes

            for n, credential in credentials.items():
                headers = {"Authorization": f"Bearer {credential}"}
                checkin = httpx.post(
                    f"{servers[(n + 1) % 2].url}/api/agent/v1/checkin",
                    json={"protocol": 1, "inventory_hash": "x"},
                    headers=headers,
                    timeout=10,
                )
                assert checkin.json()["upload_inventory"] is True
                uploaded = httpx.put(
                    f"{servers[n % 2].url}/api/agent/v1/inventory",
                    content=inventory(f"multi-{n}", n),
                    headers={**headers, "Content-Encoding": "gzip"},
                    timeout=30,
                )
                assert uploaded.status_code == 202, uploaded.text

            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                with database.session() as session:
                    pending = session.scalar(
                        select(func.count())
                        .select_from(AgentReportRow)
                        .join(AssetRow, AssetRow.id == AgentReportRow.asset_id)
                        .where(
                            AgentReportRow.status != "processed",
                            AssetRow.hostname.like("multi-%"),
                        )
                    )
                if pending == 0:
                    break
                time.sleep(0.2)
            assert pending == 0
            with database.session() as session:
                counts = dict(
                    session.execute(
                        select(AssetRow.hostname, func.count(AssetPackage.package_id))
                        .join(AssetPackage, AssetPackage.asset_id == AssetRow.id)
                        .where(AssetRow.hostname.like("multi-%"))  # other tests share the database
                        .group_by(AssetRow.hostname)
                    )
                    .tuples()
                    .all()
                )
                chain = verify(session)
            assert counts == {f"multi-{n}": 10 + n for n in range(hosts)}
            assert chain.ok, chain.problem  # concurrent appends from two processes chain
    finally:
        database.dispose()
