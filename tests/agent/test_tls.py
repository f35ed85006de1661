"""TLS: the real server behind uvicorn's TLS, with a self-signed certificate."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from patchwarden.agent.config import AgentConfig
from patchwarden.agent.errors import ServerUnreachable
from patchwarden.agent.runner import Agent
from tests.agent.conftest import LiveServer, TokenFactory, sqlite_copy


def self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "patchwarden test")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "server.crt", folder / "server.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def db_url(sqlite_template: Path, tmp_path: Path) -> str:
    """TLS does not depend on the database: SQLite only."""
    return sqlite_copy(sqlite_template, tmp_path)


@pytest.fixture
def tls_server(db_url: str, tmp_path: Path) -> Iterator[LiveServer]:
    home = tmp_path / "tls-home"
    home.mkdir()
    live = LiveServer(db_url, home, tls=self_signed(tmp_path))
    live.start()
    try:
        yield live
    finally:
        live.stop()


def test_https_verifies_the_server_against_the_configured_ca(
    tls_server: LiveServer,
    make_token: TokenFactory,
    agent_config: Callable[..., AgentConfig],
) -> None:
    assert tls_server.tls is not None
    untrusting = Agent(agent_config(tls_server.url, state_dir=tls_server.home / "untrusting"))
    with pytest.raises(ServerUnreachable, match="certificate not trusted"):
        untrusting.enroll(make_token())
    assert not untrusting.enrolled

    agent = Agent(agent_config(tls_server.url, ca_file=tls_server.tls[0]))
    agent.enroll(make_token())
    result = agent.run_once()
    assert (result.checked_in, result.uploaded) == (True, True)
