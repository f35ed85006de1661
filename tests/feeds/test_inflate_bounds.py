"""Decompression bombs in feed files and downloads are refused within the bounds.

Every bomb here is real (valid gzip / zip of zeros, tests/feeds/bombs.py). The refusal
names the file or member, the bound and the setting that raises it, nothing is
imported, and the process never holds the inflated data (measured in a subprocess).
"""

from __future__ import annotations

import gzip
import http.server
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

import patchwarden.cli.main
from patchwarden.core.errors import FeedError
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.importer import import_files
from patchwarden.feeds.inflate import DEFAULT_LIMITS, InflateBudget, InflateLimits
from patchwarden.feeds.sync import EpssFeed, KevFeed, NvdOptions, fetch_nvd_pages, sync
from patchwarden.settings import Settings
from patchwarden.store.db import Database, open_database
from patchwarden.store.intel import intel_counts
from patchwarden.store.models import AdvisoryRow, FeedState
from tests.feeds.bombs import MIB, gzip_bomb, zip_bomb
from tests.support import MEMORY_PROBE, data_file

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SMALL = InflateLimits(member_bytes=8 * MIB, total_bytes=64 * MIB, ratio=100)


def advisory_count(db: Database) -> int:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(AdvisoryRow)) or 0


def alma_zip(path: Path, count: int) -> Path:
    folder = data_file("osv-almalinux/advisories/almalinux9")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for record in sorted(folder.glob("*.json"))[:count]:
            archive.write(record, arcname=record.name)
    return path


# --------------------------------------------------------------- the three bounds


def test_zip_member_over_the_member_bound_is_refused_before_inflating(
    db: Database, tmp_path: Path
) -> None:
    import_files(db, [alma_zip(tmp_path / "good.zip", 30)], now=NOW)
    bomb = zip_bomb(tmp_path / "all.zip", 64)
    good = alma_zip(tmp_path / "more.zip", 60)
    with pytest.raises(FeedError) as caught:
        import_files(db, [good, bomb], now=NOW, limits=InflateLimits(32 * MIB, 1 << 30, 10**6))
    message = str(caught.value)
    assert "all.zip!BOMB-1.json" in message
    assert "32 MiB" in message
    assert "PATCHWARDEN_FEED_MAX_MEMBER_BYTES" in message
    assert advisory_count(db) == 30  # the good file of the same run was not imported
    with db.session() as s:
        state = s.get(FeedState, "osv:AlmaLinux")
        assert state is not None
        assert state.records == 30


def test_zip_member_whose_header_understates_its_size_is_corrupt(tmp_path: Path) -> None:
    # zipfile never returns more than the declared size; the CRC then fails.
    bomb = zip_bomb(tmp_path / "liar.zip", 64, declared=1000)
    with pytest.raises(FeedError, match=r"liar\.zip!BOMB-1\.json: corrupt zip member"):
        parse_path(bomb, now=NOW, budget=InflateBudget(SMALL))


def test_json_gz_over_the_member_bound_is_refused(db: Database, tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "records.json.gz", 64)
    with pytest.raises(FeedError) as caught:
        import_files(db, [bomb], now=NOW, limits=InflateLimits(16 * MIB, 1 << 30, 10**6))
    message = str(caught.value)
    assert message.startswith(f"{bomb}: inflates to more than 16 MiB")
    assert "PATCHWARDEN_FEED_MAX_MEMBER_BYTES=16777216" in message
    assert advisory_count(db) == 0


def test_high_ratio_member_within_the_size_bound_is_refused(tmp_path: Path) -> None:
    bomb = gzip_bomb(tmp_path / "scores.csv.gz", 6)  # 6 MiB from 7 KB: about 1000 times
    with pytest.raises(FeedError) as caught:
        InflateBudget(SMALL).gunzip(bomb.read_bytes(), str(bomb))
    message = str(caught.value)
    assert "inflates more than 100 times its compressed size" in message
    assert "PATCHWARDEN_FEED_MAX_RATIO=100" in message
    zipped = zip_bomb(tmp_path / "all.zip", 6)
    with pytest.raises(FeedError, match="PATCHWARDEN_FEED_MAX_RATIO"):
        parse_path(zipped, now=NOW, budget=InflateBudget(SMALL))


def test_members_under_the_member_bound_still_count_toward_the_total(tmp_path: Path) -> None:
    limits = InflateLimits(member_bytes=8 * MIB, total_bytes=12 * MIB, ratio=10**6)
    files = [gzip_bomb(tmp_path / f"part-{i}.json.gz", 5) for i in range(3)]
    budget = InflateBudget(limits)  # one import or sync: one budget for all its files
    for path in files[:2]:
        assert len(budget.gunzip(path.read_bytes(), str(path))) == 5 * MIB
    with pytest.raises(FeedError) as caught:
        budget.gunzip(files[2].read_bytes(), str(files[2]))
    message = str(caught.value)
    assert message.startswith(f"{files[2]}: feed data inflates to more than 12 MiB in total")
    assert "PATCHWARDEN_FEED_MAX_TOTAL_BYTES=12582912" in message


def test_bzip2_zip_members_are_refused(tmp_path: Path) -> None:
    # zipfile inflates bzip2 reads without an output bound: such members never reach it.
    path = tmp_path / "all.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_BZIP2) as archive:
        archive.writestr("BOMB-1.json", bytes(MIB))
    with pytest.raises(FeedError, match="compression method 12"):
        parse_path(path, now=NOW)


def test_gzip_streams_decode_like_gzip(tmp_path: Path) -> None:
    data = os.urandom(300_000) + b"x" * 2_000_000
    budget = InflateBudget()
    packed = gzip.compress(data)
    assert budget.gunzip(packed, "a") == data
    assert budget.gunzip(packed + gzip.compress(b"more"), "a") == data + b"more"
    assert budget.gunzip(packed + b"\0" * 7, "a") == data
    assert budget.gunzip(b"plain", "a") == b"plain"
    for broken in (packed[:-5], packed + b"junk", packed[:100]):
        with pytest.raises(FeedError, match="corrupt gzip data"):
            budget.gunzip(broken, "a")


# ------------------------------------------------- real data passes with margin


def test_real_feeds_pass_the_default_bounds(db: Database, tmp_path: Path) -> None:
    """The largest real feed files, compressed as their publishers do, import with the
    defaults; the settings' defaults are the library's."""
    cfg = Settings()
    configured = InflateLimits(
        cfg.feed_max_member_bytes, cfg.feed_max_total_bytes, cfg.feed_max_ratio
    )
    assert configured == DEFAULT_LIMITS
    zips = []
    for release in ("almalinux9", "almalinux10"):
        zipped = tmp_path / f"{release}-all.zip"
        with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for record in sorted(data_file(f"osv-almalinux/advisories/{release}").glob("*.json")):
                archive.write(record, arcname=record.name)
        zips.append(zipped)
    pypi = tmp_path / "pypi.jsonl.gz"
    pypi.write_bytes(
        gzip.compress(data_file("pypa-advisory-database/pypi_osv_all.jsonl").read_bytes(), 9)
    )
    kev = tmp_path / "kev.json.gz"
    kev.write_bytes(
        gzip.compress(data_file("cisa-kev/known_exploited_vulnerabilities.json").read_bytes(), 9)
    )
    report = import_files(db, [*zips, pypi, kev], now=NOW, refresh=False)
    assert {f.feed for f in report.files} == {"osv:AlmaLinux", "osv:PyPI", "kev"}
    assert advisory_count(db) > 4000


# ------------------------------------------------------------ the CLI, memory


def run_cli_measured(
    tmp_path: Path, db_url: str, *argv: str, env: dict[str, str] | None = None
) -> tuple[int, str, int]:
    """Run ``patchwarden ARGV`` in a subprocess; returns (exit code, stderr, peak RSS kB)."""
    environ = {
        **os.environ,
        "PATCHWARDEN_HOME": str(tmp_path / "home"),
        "PATCHWARDEN_DATABASE_URL": db_url,
        **(env or {}),
    }
    done = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, patchwarden.cli.main.__file__, *argv],
        capture_output=True,
        text=True,
        env=environ,
        timeout=300,
        check=False,
    )
    lines = done.stderr.splitlines()
    probe = [line for line in lines if line.startswith("MEMORY ")]
    assert probe, done.stderr
    peak = int(probe[-1].split()[2])
    shown = "\n".join(line for line in lines if not line.startswith("MEMORY "))
    return done.returncode, shown, peak


@pytest.mark.timeout(300)
def test_cli_refuses_bombs_with_one_line_and_bounded_memory(cli_env: str, tmp_path: Path) -> None:
    """1 GiB bombs: exit 2, one error line naming file, bound and setting; the process
    peaks far below the inflated size; the feed state of an earlier import is intact."""
    db_url = cli_env  # signed in: PATCHWARDEN_TOKEN reaches the subprocess
    good = alma_zip(tmp_path / "alma.zip", 40)
    code, err, _ = run_cli_measured(tmp_path, db_url, "feeds", "import", str(good))
    assert code == 0, err

    gz = gzip_bomb(tmp_path / "records.json.gz", 1024)
    code, err, peak = run_cli_measured(
        tmp_path,
        db_url,
        "feeds",
        "import",
        str(good),
        str(gz),
        env={
            "PATCHWARDEN_FEED_MAX_MEMBER_BYTES": str(32 * MIB),
            "PATCHWARDEN_FEED_MAX_RATIO": "1000000",
        },
    )
    assert code == 2
    error, hint = err.splitlines()
    assert error.startswith(f"error: {gz}: inflates to more than 32 MiB")
    assert "PATCHWARDEN_FEED_MAX_MEMBER_BYTES=33554432" in error
    assert "nothing was imported" in error
    assert hint.startswith("hint: ")
    assert peak < 400 * 1024, f"peak RSS {peak} kB while refusing a 1 GiB gzip bomb"

    zipped = zip_bomb(tmp_path / "all.zip", 1024)
    code, err, peak = run_cli_measured(tmp_path, db_url, "feeds", "import", str(zipped))
    assert code == 2
    (error, _hint) = err.splitlines()
    assert f"{zipped}!BOMB-1.json" in error
    assert "PATCHWARDEN_FEED_MAX_" in error
    assert peak < 400 * 1024, f"peak RSS {peak} kB while refusing a 1 GiB zip bomb"

    db = open_database(db_url)
    try:
        with db.session() as s:
            state = s.get(FeedState, "osv:AlmaLinux")
            assert state is not None
            assert state.records == 40
            assert s.scalar(select(func.count()).select_from(AdvisoryRow)) == 40
    finally:
        db.dispose()


# ------------------------------------------------------------------ downloads


class _BombServer(http.server.BaseHTTPRequestHandler):
    """Serves a gzip bomb as a gzip-encoded KEV catalog, and a bomb as EPSS file."""

    encoded: bytes = b""
    plain_gz: bytes = b""

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        if self.path.startswith("/epss/"):
            body, headers = self.plain_gz, {}
        else:
            body, headers = self.encoded, {"Content-Encoding": "gzip"}
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def bomb_server(tmp_path: Path) -> Iterator[str]:
    _BombServer.encoded = gzip_bomb(tmp_path / "enc.gz", 512).read_bytes()
    _BombServer.plain_gz = gzip_bomb(tmp_path / "epss.gz", 512).read_bytes()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BombServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_sync_refuses_bombs_in_downloads_and_imports_nothing(
    db: Database, tmp_path: Path, bomb_server: str
) -> None:
    import_files(db, [data_file("cisa-kev/known_exploited_vulnerabilities.json")], now=NOW)
    cache = tmp_path / "cache"
    report = sync(db, [KevFeed(), EpssFeed()], cache_dir=cache, now=NOW, mirror=bomb_server)
    outcomes = {o.feed: o for o in report.outcomes}
    assert outcomes["kev"].status == "failed"
    assert "kev/known_exploited_vulnerabilities.json: inflates more than 100 times" in (
        outcomes["kev"].detail
    )
    assert outcomes["epss"].status == "failed"
    assert "epss.csv.gz: inflates more than 100 times" in outcomes["epss"].detail
    assert report.imported is None
    assert not [p for p in cache.iterdir() if p.name.startswith(".download-")]
    with db.session() as s:
        assert intel_counts(s)["kev"] == 1404  # the earlier import is intact


def test_nvd_pages_are_decoded_within_the_bounds(tmp_path: Path, bomb_server: str) -> None:
    with pytest.raises(FeedError, match="PATCHWARDEN_FEED_MAX_RATIO"):
        fetch_nvd_pages(
            NvdOptions(api_url=f"{bomb_server}/rest/json/cves/2.0"),
            now=NOW,
            cache_dir=tmp_path,
            sleep=lambda _s: None,
        )


class _EncodingServer(http.server.BaseHTTPRequestHandler):
    """Serves the real KEV catalog gzip-encoded, as servers compress on the fly."""

    body: bytes = b""

    def log_message(self, format: str, *args: object) -> None:
        return

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)


def test_sync_decodes_a_real_gzip_encoded_download(db: Database, tmp_path: Path) -> None:
    catalog = data_file("cisa-kev/known_exploited_vulnerabilities.json").read_bytes()
    _EncodingServer.body = gzip.compress(catalog)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EncodingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        report = sync(db, [KevFeed()], cache_dir=tmp_path, now=NOW, mirror=base)
    finally:
        server.shutdown()
        server.server_close()
    assert [o.status for o in report.outcomes] == ["updated"], report.outcomes
    assert (tmp_path / "kev.json").read_bytes() == catalog
    with db.session() as s:
        assert intel_counts(s)["kev"] == 1404
