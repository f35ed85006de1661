"""NVD CVE API 2.0 paging against a real HTTP server on 127.0.0.1 serving a real NVD page."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from patchwarden.core.errors import FeedError
from patchwarden.feeds.importer import import_files
from patchwarden.feeds.sync import NvdOptions, fetch_nvd_pages
from patchwarden.store.db import Database
from patchwarden.store.intel import get_intel, intel_counts
from tests.support import data_file

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


class _NvdHandler(http.server.BaseHTTPRequestHandler):
    """Serves one real NVD page as the API would, sliced by startIndex/resultsPerPage."""

    page: ClassVar[dict[str, Any]] = {}
    seen: ClassVar[list[dict[str, list[str]]]] = []
    fail_with: ClassVar[int] = 0

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        _NvdHandler.seen.append({**query, "apiKey": [self.headers.get("apiKey", "")]})
        if _NvdHandler.fail_with:
            self.send_response(_NvdHandler.fail_with)
            self.end_headers()
            return
        start = int(query["startIndex"][0])
        size = int(query["resultsPerPage"][0])
        items = _NvdHandler.page["vulnerabilities"]
        body = {
            **_NvdHandler.page,
            "startIndex": start,
            "resultsPerPage": size,
            "totalResults": len(items),
            "vulnerabilities": items[start : start + size],
        }
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def nvd_url() -> Iterator[str]:
    page = data_file("vunnel-fixtures/tests/unit/providers/nvd/test-fixtures/full-page.json")
    _NvdHandler.page = json.loads(page.read_text())
    _NvdHandler.seen = []
    _NvdHandler.fail_with = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NvdHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/rest/json/cves/2.0"
    finally:
        server.shutdown()
        server.server_close()


def test_pages_are_fetched_with_rate_limit_pauses_and_imported(
    db: Database, tmp_path: Path, nvd_url: str
) -> None:
    pauses: list[float] = []
    progress: list[tuple[str, int, int | None]] = []
    pages = fetch_nvd_pages(
        NvdOptions(api_url=nvd_url, page_size=10),
        now=NOW,
        cache_dir=tmp_path,
        progress=lambda *a: progress.append(a),
        sleep=pauses.append,
    )
    assert len(pages) == 4  # 38 CVEs in pages of 10
    assert [int(q["startIndex"][0]) for q in _NvdHandler.seen] == [0, 10, 20, 30]
    assert pauses == [6.0, 6.0, 6.0]  # 5 requests per 30 s without an API key
    assert progress[-1] == ("nvd", 38, 38)
    report = import_files(db, pages, now=NOW, kind="nvd")
    assert sum(f.intel for f in report.files) == 38
    with db.session() as session:
        assert intel_counts(session)["cvss"] > 0
        first = _NvdHandler.page["vulnerabilities"][0]["cve"]["id"]
        assert first in get_intel(session, [first])


def test_incremental_windows_and_api_key(tmp_path: Path, nvd_url: str) -> None:
    pauses: list[float] = []
    since = NOW - timedelta(days=200)
    fetch_nvd_pages(
        NvdOptions(api_url=nvd_url, api_key="k-123", page_size=2000, since=since),
        now=NOW,
        cache_dir=tmp_path,
        sleep=pauses.append,
    )
    windows = [(q["lastModStartDate"][0], q["lastModEndDate"][0]) for q in _NvdHandler.seen]
    assert len(windows) == 2  # 200 days split into windows of at most 120
    first_start = datetime.fromisoformat(windows[0][0])
    first_end = datetime.fromisoformat(windows[0][1])
    assert first_end - first_start == timedelta(days=120)
    assert datetime.fromisoformat(windows[1][1]) == NOW
    assert {q["apiKey"][0] for q in _NvdHandler.seen} == {"k-123"}
    assert pauses == [0.6]  # 50 requests per 30 s with a key


def test_rate_limited_answers_are_clear_errors(tmp_path: Path, nvd_url: str) -> None:
    _NvdHandler.fail_with = 403
    with pytest.raises(FeedError) as caught:
        fetch_nvd_pages(
            NvdOptions(api_url=nvd_url), now=NOW, cache_dir=tmp_path, sleep=lambda _s: None
        )
    assert "HTTP 403" in str(caught.value)
    assert "API key" in str(caught.value)
