"""The HTTP client against a scripted stdlib HTTP server, for answers the real server
does not give on demand: redirects, other protocol versions, 5xx with Retry-After,
oversized or non-JSON answers, a server that hangs."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from patchwarden.agent.client import CHECKIN_PATH, INVENTORY_HASH_HEADER, ServerClient
from patchwarden.agent.config import AgentConfig
from patchwarden.agent.errors import ServerRefused, ServerUnreachable
from patchwarden.agent.runner import Agent
from patchwarden.agent.state import StateDir


@dataclass
class Answer:
    status: int
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass
class Script:
    """What the scripted server answers, and what it was sent."""

    answer: Answer = field(default_factory=lambda: Answer(200))
    seen: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    script: Script

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.script.seen.append((self.command, self.path, dict(self.headers)))
        answer = self.script.answer
        time.sleep(answer.delay)
        self.send_response(answer.status)
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        # The client may have given up first (timeouts, oversized answers).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(answer.body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def scripted() -> Iterator[tuple[str, Script]]:
    script = Script()
    handler = type("Handler", (_Handler,), {"script": script})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", script
    finally:
        httpd.shutdown()
        httpd.server_close()


def _enrolled_apk_agent(url: str, tmp_path: Path) -> Agent:
    """An agent with a credential, collecting a one-package Alpine root."""
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").write_text("P:musl\nV:1.2.5-r0\nA:x86_64\no:musl\n\n")
    config = AgentConfig(server_url=url, state_dir=tmp_path / "state", collect_root=root)
    StateDir(config.state_dir).write_credential("pwa_1_x")
    return Agent(config)


def test_redirects_are_not_followed_and_the_credential_stays_home(
    scripted: tuple[str, Script],
) -> None:
    url, script = scripted
    script.answer = Answer(307, headers={"Location": "http://127.0.0.2:9/steal"})
    with pytest.raises(
        ServerRefused, match=re.escape("redirected to http://127.0.0.2:9/steal")
    ) as refused:
        ServerClient(url).checkin("pwa_1_secret", {"protocol": 1})
    assert refused.value.status == 307
    assert len(script.seen) == 1
    assert script.seen[0][2]["Authorization"] == "Bearer pwa_1_secret"


def test_an_answer_in_another_protocol_version_is_refused(scripted: tuple[str, Script]) -> None:
    url, script = scripted
    body = {"protocol": 2, "upload_inventory": False, "next_checkin_seconds": 60}
    script.answer = Answer(200, json.dumps(body).encode())
    with pytest.raises(ServerRefused, match="speaks agent protocol 2"):
        ServerClient(url).checkin("pwa_1_x", {"protocol": 1})


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (Answer(503, b"busy", {"Retry-After": "7"}), "503 busy"),
        (Answer(502, b"<html>bad gateway</html>"), "502 <html>bad gateway</html>"),
        (Answer(429, b'{"error": "slow down", "hint": null, "type": "RateLimited"}'), "429"),
        (Answer(200, b"not json"), "answer is not JSON"),
        (Answer(200, b"[1]"), "not a JSON object"),
        (Answer(200, b'{"protocol": 1}'), "lacks 'upload_inventory'"),
        (Answer(200, b" " * (2 << 20)), "larger than"),
        (Answer(200, b"{}", delay=2.0), "timed out"),
    ],
)
def test_answers_worth_retrying_are_sorted_as_unreachable(
    scripted: tuple[str, Script], answer: Answer, message: str
) -> None:
    url, script = scripted
    script.answer = answer
    with pytest.raises(ServerUnreachable, match=re.escape(message)) as unreachable:
        ServerClient(url, timeout=0.5).checkin("pwa_1_x", {"protocol": 1})
    assert unreachable.value.retry_after == (7.0 if answer.status == 503 else None)


def test_a_server_error_spools_the_inventory_and_retry_after_sets_the_wait(
    scripted: tuple[str, Script], tmp_path: Path
) -> None:
    url, script = scripted
    script.answer = Answer(
        503, b'{"error": "maintenance", "hint": null, "type": "x"}', {"Retry-After": "120"}
    )
    result = _enrolled_apk_agent(url, tmp_path).run_once()
    assert (result.checked_in, result.spooled) == (False, 1)
    assert 108 <= result.next_interval <= 132
    assert "maintenance" in result.error
    assert [(method, path) for method, path, _ in script.seen] == [("POST", CHECKIN_PATH)]


def test_an_inventory_upload_declares_its_content_hash(
    scripted: tuple[str, Script], tmp_path: Path
) -> None:
    """The server acknowledges an upload carrying its hash before validating every
    package (it verifies the hash when applying the report)."""
    url, script = scripted
    script.answer = Answer(200, b'{"upload_inventory": true, "next_checkin_seconds": 300}')
    result = _enrolled_apk_agent(url, tmp_path).run_once()
    uploads = [headers for method, path, headers in script.seen if method == "PUT"]
    assert len(uploads) == 1
    assert uploads[0][INVENTORY_HASH_HEADER] == result.inventory_hash
    assert re.fullmatch("[0-9a-f]{64}", result.inventory_hash)
