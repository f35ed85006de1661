"""Feed import (all-or-nothing) and sync against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import gzip
import http.server
import shutil
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import ClassVar

import pytest
from sqlalchemy import func, select

from patchwarden.core.errors import FeedError
from patchwarden.feeds.importer import import_files
from patchwarden.feeds.sync import EpssFeed, KevFeed, OsvFeed, sync
from patchwarden.store.db import Database
from patchwarden.store.intel import intel_counts
from patchwarden.store.models import AdvisoryRow, FeedState
from tests.support import data_file

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def advisory_count(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(AdvisoryRow)) or 0


def alma_records(limit: int = 200) -> list[Path]:
    folder = data_file("osv-almalinux/advisories/almalinux9")
    return sorted(folder.glob("*.json"))[:limit]


def make_osv_zip(path: Path, records: list[Path]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for record in records:
            zf.write(record, arcname=record.name)
    return path


def test_import_real_almalinux_zip_and_kev_epss(db: Database, tmp_path: Path) -> None:
    zipped = make_osv_zip(tmp_path / "all.zip", alma_records())
    kev = data_file("cisa-kev/known_exploited_vulnerabilities.json")
    epss = data_file("vunnel-fixtures/tests/unit/providers/epss/test-fixtures/example-1.csv")
    report = import_files(db, [zipped, kev, epss], now=NOW)
    kinds = {f.kind: f for f in report.files}
    assert set(kinds) == {"osv", "kev", "epss"}
    assert kinds["osv"].added == 200
    assert kinds["kev"].intel == 1404  # the catalog's entry count (SOURCE.txt)
    assert advisory_count(db) == 200
    with db.session() as s:
        counts = intel_counts(s)
        state = s.get(FeedState, "osv:AlmaLinux")
    assert counts["kev"] == 1404
    assert counts["epss"] == kinds["epss"].intel > 0
    assert state is not None
    assert state.records == 200
    assert state.last_import == NOW


def test_corrupt_file_imports_nothing_and_keeps_previous_data(db: Database, tmp_path: Path) -> None:
    import_files(db, [make_osv_zip(tmp_path / "first.zip", alma_records(50))], now=NOW)
    assert advisory_count(db) == 50

    good = make_osv_zip(tmp_path / "good.zip", alma_records(120))
    bad = tmp_path / "ALSA-broken.json"
    text = alma_records(121)[120].read_text()
    bad.write_text(text[: len(text) // 2])  # truncated JSON
    with pytest.raises(FeedError) as caught:
        import_files(db, [good, bad], now=NOW)
    assert "ALSA-broken.json" in str(caught.value)
    assert advisory_count(db) == 50  # the good file in the same run was not imported either

    missing_field = tmp_path / "no-modified.json"
    missing_field.write_text('{"id": "OSV-1", "affected": []}')
    with pytest.raises(FeedError) as caught:
        import_files(db, [missing_field], now=NOW)
    assert "OSV-1" in str(caught.value)
    assert "modified" in str(caught.value)
    assert advisory_count(db) == 50


def test_wrong_forced_format_is_refused(db: Database) -> None:
    epss = data_file("vunnel-fixtures/tests/unit/providers/epss/test-fixtures/example-1.csv")
    with pytest.raises(FeedError):
        import_files(db, [epss], now=NOW, kind="kev")


# ------------------------------------------------------------------- HTTP sync


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: ClassVar[list[tuple[str, str]]] = []

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        _QuietHandler.requests.append((self.path, self.headers.get("If-Modified-Since", "")))
        super().do_GET()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A mirror tree served by a real HTTP server on 127.0.0.1 (random port)."""
    root = tmp_path / "mirror"
    (root / "osv" / "AlmaLinux").mkdir(parents=True)
    (root / "kev").mkdir()
    (root / "epss").mkdir()
    make_osv_zip(root / "osv" / "AlmaLinux" / "all.zip", alma_records(80))
    shutil.copyfile(
        data_file("cisa-kev/known_exploited_vulnerabilities.json"),
        root / "kev" / "known_exploited_vulnerabilities.json",
    )
    epss_csv = data_file("vunnel-fixtures/tests/unit/providers/epss/test-fixtures/example-1.csv")
    (root / "epss" / "epss_scores-current.csv.gz").write_bytes(gzip.compress(epss_csv.read_bytes()))
    handler = partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _QuietHandler.requests = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()


def test_sync_from_http_mirror_is_conditional(
    db: Database, tmp_path: Path, mirror: tuple[str, Path]
) -> None:
    base, _root = mirror
    sources = [OsvFeed("AlmaLinux"), KevFeed(), EpssFeed()]
    seen: list[tuple[str, int, int | None]] = []
    report = sync(
        db,
        sources,
        cache_dir=tmp_path / "cache",
        now=NOW,
        mirror=base,
        progress=lambda label, done, total: seen.append((label, done, total)),
    )
    assert [o.status for o in report.outcomes] == ["updated"] * 3
    assert report.imported is not None
    assert advisory_count(db) == 80
    assert seen
    assert seen[-1][1] == seen[-1][2]
    with db.session() as s:
        state = s.get(FeedState, "osv:AlmaLinux")
        assert state is not None
        assert state.last_sync == NOW
        assert state.last_modified_header

    # Second sync: the server answers 304 Not Modified to If-Modified-Since.
    _QuietHandler.requests = []
    again = sync(db, sources, cache_dir=tmp_path / "cache", now=NOW, mirror=base)
    assert [o.status for o in again.outcomes] == ["not-modified"] * 3
    assert all(ims for _path, ims in _QuietHandler.requests)


def test_sync_with_a_corrupt_download_imports_nothing(
    db: Database, tmp_path: Path, mirror: tuple[str, Path]
) -> None:
    base, root = mirror
    zipped = root / "osv" / "AlmaLinux" / "all.zip"
    zipped.write_bytes(zipped.read_bytes()[:-200])  # damaged archive
    report = sync(
        db, [KevFeed(), OsvFeed("AlmaLinux")], cache_dir=tmp_path / "cache", now=NOW, mirror=base
    )
    statuses = {o.feed: o.status for o in report.outcomes}
    assert statuses == {"kev": "updated", "osv:AlmaLinux": "failed"}
    assert report.imported is None
    assert advisory_count(db) == 0
    with db.session() as s:
        assert intel_counts(s)["kev"] == 0  # KEV downloaded fine but was not imported alone


def test_sync_from_a_mirror_directory(
    db: Database, tmp_path: Path, mirror: tuple[str, Path]
) -> None:
    _base, root = mirror
    report = sync(db, [OsvFeed("AlmaLinux")], cache_dir=tmp_path / "c", now=NOW, mirror=str(root))
    assert [o.status for o in report.outcomes] == ["updated"]
    assert advisory_count(db) == 80
    missing = sync(db, [OsvFeed("PyPI")], cache_dir=tmp_path / "c", now=NOW, mirror=str(root))
    assert missing.outcomes[0].status == "failed"
    assert "missing from the mirror" in missing.outcomes[0].detail
