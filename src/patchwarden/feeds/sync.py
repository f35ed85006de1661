"""Downloading feeds: official URLs by default, or a mirror (URL or directory).

Each ``FeedSource`` names the files it needs. A sync downloads them with conditional
requests (``If-None-Match`` / ``If-Modified-Since`` from the last sync), verifies every
download by parsing it completely, and only then imports everything in one
transaction — a failed or corrupt download leaves the stored data untouched.

Mirror layout (``--source``): the same relative paths under one base, for example
``<base>/osv/PyPI/all.zip``, ``<base>/kev/known_exploited_vulnerabilities.json``,
``<base>/epss/epss_scores-current.csv.gz``, ``<base>/debian/json``,
``<base>/alpine/v3.20/main.json``. A directory or ``file://`` URL works the same.

Decompression is bounded (``feeds.inflate``): a download the server compresses
(``Content-Encoding``) is counted as it is decoded, and the files are inflated within
the same budget when they are parsed.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote, urlencode

import httpx
import orjson

from patchwarden.core.errors import FeedError
from patchwarden.feeds.formats.detect import parse_path
from patchwarden.feeds.importer import ImportReport, import_parsed
from patchwarden.feeds.inflate import DEFAULT_LIMITS, GzipInflater, InflateBudget, InflateLimits
from patchwarden.feeds.parsed import ParsedFeed
from patchwarden.store.db import Database
from patchwarden.store.models import FeedState

OSV_BASE = "https://osv-vulnerabilities.storage.googleapis.com"
KEV_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
EPSS_URL = "https://epss.cyentia.com/epss_scores-current.csv.gz"
DEBIAN_TRACKER_URL = "https://security-tracker.debian.org/tracker/data/json"
ALPINE_SECDB_BASE = "https://secdb.alpinelinux.org"
NVD_API_URL = "https://services.nvd.nist.gov/rest/json/cves/2.0"

Progress = Callable[[str, int, int | None], None]


@dataclass(frozen=True, slots=True)
class Download:
    """One file a feed needs: where it lives officially and under a mirror base."""

    official_url: str
    mirror_path: str
    kind: str
    cache_name: str


class FeedSource(Protocol):
    """A vulnerability feed that can be synced."""

    @property
    def name(self) -> str:
        """The feed-state name (``osv:PyPI``, ``kev``, …)."""
        ...

    def downloads(self) -> list[Download]:
        """The files to fetch."""
        ...


@dataclass(frozen=True, slots=True)
class OsvFeed:
    """OSV's per-ecosystem ``all.zip``."""

    ecosystem: str

    @property
    def name(self) -> str:
        return f"osv:{self.ecosystem}"

    def downloads(self) -> list[Download]:
        folder = quote(self.ecosystem, safe="")
        return [
            Download(
                f"{OSV_BASE}/{folder}/all.zip",
                f"osv/{folder}/all.zip",
                "osv",
                f"osv-{self.ecosystem.replace(' ', '_').replace(':', '_')}.zip",
            )
        ]


@dataclass(frozen=True, slots=True)
class KevFeed:
    """CISA's Known Exploited Vulnerabilities catalog."""

    name: str = "kev"

    def downloads(self) -> list[Download]:
        return [Download(KEV_URL, "kev/known_exploited_vulnerabilities.json", "kev", "kev.json")]


@dataclass(frozen=True, slots=True)
class EpssFeed:
    """FIRST's daily EPSS scores (gzip CSV)."""

    name: str = "epss"

    def downloads(self) -> list[Download]:
        return [Download(EPSS_URL, "epss/epss_scores-current.csv.gz", "epss", "epss.csv.gz")]


@dataclass(frozen=True, slots=True)
class DebianTrackerFeed:
    """The Debian Security Tracker's JSON export."""

    name: str = "debian-tracker"

    def downloads(self) -> list[Download]:
        return [Download(DEBIAN_TRACKER_URL, "debian/json", "debian-tracker", "debian.json")]


@dataclass(frozen=True, slots=True)
class AlpineSecdbFeed:
    """Alpine's secdb for one release and repository."""

    release: str
    repo: str = "main"

    @property
    def name(self) -> str:
        return f"alpine-secdb:{self.release}/{self.repo}"

    def downloads(self) -> list[Download]:
        path = f"{self.release}/{self.repo}.json"
        return [
            Download(
                f"{ALPINE_SECDB_BASE}/{path}",
                f"alpine/{path}",
                "alpine-secdb",
                f"alpine-{self.release}-{self.repo}.json",
            )
        ]


@dataclass
class SyncOutcome:
    """What happened to one feed during a sync."""

    feed: str
    status: str  # "updated", "not-modified", "failed"
    detail: str = ""
    bytes: int = 0


@dataclass
class SyncReport:
    """The outcome of a whole sync."""

    outcomes: list[SyncOutcome] = field(default_factory=list)
    imported: ImportReport | None = None


def _is_remote(base: str) -> bool:
    return base.startswith(("http://", "https://"))


def _local_path(base: str) -> Path:
    return Path(base.removeprefix("file://"))


#: Compressed bodies are decoded here, within the bounds, never by httpx (which inflates
#: each network chunk whole): only gzip is asked for.
_REQUEST_HEADERS = {"Accept-Encoding": "gzip"}


def _receive(
    response: httpx.Response,
    out: BinaryIO,
    source: str,
    budget: InflateBudget,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Write ``response``'s body to ``out``, decoding a gzip ``Content-Encoding`` within
    ``budget``'s bounds; ``progress`` gets the bytes received so far."""
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    inflater = None
    if encoding in ("gzip", "x-gzip"):
        inflater = GzipInflater(budget.member(source))
    elif encoding not in ("", "identity"):
        raise FeedError(
            f"the server sent an unsupported Content-Encoding {encoding!r}",
            source=source,
            hint="the mirror must serve files plain or gzip-encoded",
        )
    for raw in response.iter_raw(1 << 16):
        if inflater is None:
            out.write(raw)
        else:
            for piece in inflater.feed(raw):
                out.write(piece)
        if progress is not None:
            progress(response.num_bytes_downloaded)
    if inflater is not None:
        inflater.close()


def _fetch(
    client: httpx.Client,
    url: str,
    target: Path,
    *,
    state: FeedState | None,
    label: str,
    progress: Progress | None,
    budget: InflateBudget,
    headers: dict[str, str] | None = None,
) -> tuple[bool, str, str, int]:
    """GET ``url`` into ``target``; returns (modified, etag, last_modified, bytes).

    A body the server compressed is decoded within ``budget``'s bounds.
    """
    request_headers = {**_REQUEST_HEADERS, **(headers or {})}
    if state is not None and target.exists():
        if state.etag:
            request_headers["If-None-Match"] = state.etag
        if state.last_modified_header:
            request_headers["If-Modified-Since"] = state.last_modified_header
    try:
        with client.stream("GET", url, headers=request_headers) as response:
            if response.status_code == 304:
                return False, state.etag if state else "", "", 0
            if response.status_code != 200:
                raise FeedError(
                    f"download failed with HTTP {response.status_code}",
                    source=url,
                    hint="check the URL or mirror (--source) and try again",
                )
            total_header = response.headers.get("Content-Length")
            total = int(total_header) if total_header and total_header.isdigit() else None
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=".download-")
            try:
                with os.fdopen(fd, "wb") as out:
                    _receive(
                        response,
                        out,
                        url,
                        budget,
                        None if progress is None else lambda n: progress(label, n, total),
                    )
            except BaseException:
                os.unlink(tmp_name)
                raise
            # Content-Length counts the bytes on the wire, before any decoding.
            received = response.num_bytes_downloaded
            if total is not None and received != total:
                os.unlink(tmp_name)
                raise FeedError(
                    f"truncated download: got {received} of {total} bytes",
                    source=url,
                    hint="the connection dropped; run the sync again",
                )
            os.replace(tmp_name, target)
            return (
                True,
                response.headers.get("ETag", ""),
                response.headers.get("Last-Modified", ""),
                received,
            )
    except httpx.HTTPError as exc:
        raise FeedError(
            f"download failed: {exc}",
            source=url,
            hint="check network access or use a mirror with --source",
        ) from exc


def sync(
    database: Database,
    sources: Sequence[FeedSource],
    *,
    cache_dir: Path,
    now: datetime,
    mirror: str | None = None,
    progress: Progress | None = None,
    timeout: float = 60.0,
    force: bool = False,
    limits: InflateLimits = DEFAULT_LIMITS,
) -> SyncReport:
    """Download (conditionally), verify and import ``sources``; see the module doc.

    Everything the sync decompresses counts against one budget of ``limits``.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    report = SyncReport()
    budget = InflateBudget(limits)
    parsed: list[ParsedFeed] = []
    names: list[str] = []
    state_updates: dict[str, tuple[str, str, str]] = {}
    with database.session() as session:
        states = {s.name: s for s in session.query(FeedState).all()}
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for source in sources:
            state = None if force else states.get(source.name)
            for item in source.downloads():
                target = cache_dir / item.cache_name
                try:
                    if mirror is not None and not _is_remote(mirror):
                        origin = _local_path(mirror) / item.mirror_path
                        if not origin.is_file():
                            raise FeedError(
                                "file missing from the mirror",
                                source=str(origin),
                                hint="mirror layout is described in README (feeds sync)",
                            )
                        shutil.copyfile(origin, target)
                        modified, etag, last_mod = True, "", ""
                        size = target.stat().st_size
                    else:
                        url = (
                            f"{mirror.rstrip('/')}/{item.mirror_path}"
                            if mirror is not None
                            else item.official_url
                        )
                        modified, etag, last_mod, size = _fetch(
                            client,
                            url,
                            target,
                            state=state,
                            label=source.name,
                            progress=progress,
                            budget=budget,
                        )
                    if not modified:
                        report.outcomes.append(SyncOutcome(source.name, "not-modified"))
                        state_updates[source.name] = (
                            state.etag if state else "",
                            state.last_modified_header if state else "",
                            state.content_sha256 if state else "",
                        )
                        continue
                    digest = hashlib.sha256(target.read_bytes()).hexdigest()
                    feed = parse_path(target, item.kind, now=now, budget=budget)
                    parsed.append(feed)
                    names.append(source.name)
                    state_updates[source.name] = (etag, last_mod, digest)
                    report.outcomes.append(SyncOutcome(source.name, "updated", bytes=size))
                except FeedError as exc:
                    report.outcomes.append(SyncOutcome(source.name, "failed", str(exc)))
    if any(o.status == "failed" for o in report.outcomes):
        return report  # nothing imported: all-or-nothing
    report.imported = import_parsed(database, parsed, now=now, names=names)
    with database.session() as session:
        for name, (etag, last_mod, digest) in state_updates.items():
            state = session.get(FeedState, name)
            if state is None:
                state = FeedState(name=name, kind=name.split(":", 1)[0])
                session.add(state)
            state.etag, state.last_modified_header = etag, last_mod
            if digest:
                state.content_sha256 = digest
            state.last_sync = now
    return report


# ------------------------------------------------------------------------------ NVD


@dataclass(frozen=True, slots=True)
class NvdOptions:
    """How to page through the NVD CVE API 2.0."""

    api_url: str = NVD_API_URL
    api_key: str = ""
    page_size: int = 2000
    since: datetime | None = None  # incremental window start (lastModStartDate)


def fetch_nvd_pages(
    options: NvdOptions,
    *,
    now: datetime,
    cache_dir: Path,
    progress: Progress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    limits: InflateLimits = DEFAULT_LIMITS,
) -> list[Path]:
    """Download NVD pages (respecting the public rate limits) into ``cache_dir``.

    Without an API key NVD allows 5 requests per rolling 30 s, with one 50; the pause
    between requests keeps under that. Incremental windows are capped at 120 days as
    the API requires; a longer gap is split into several windows. Compressed pages
    are decoded within one budget of ``limits``.
    """
    pause = 0.6 if options.api_key else 6.0
    headers = {**_REQUEST_HEADERS, **({"apiKey": options.api_key} if options.api_key else {})}
    budget = InflateBudget(limits)
    windows: list[tuple[datetime, datetime] | None] = [None]
    if options.since is not None:
        windows = []
        start = options.since
        while start < now:
            end = min(start + timedelta(days=120), now)
            windows.append((start, end))
            start = end
    pages: list[Path] = []
    first = True
    with httpx.Client(timeout=60.0, headers=headers) as client:
        for window in windows:
            start_index = 0
            while True:
                params: dict[str, str | int] = {
                    "startIndex": start_index,
                    "resultsPerPage": options.page_size,
                }
                if window is not None:
                    params["lastModStartDate"] = window[0].astimezone(UTC).isoformat()
                    params["lastModEndDate"] = window[1].astimezone(UTC).isoformat()
                if not first:
                    sleep(pause)
                first = False
                url = f"{options.api_url}?{urlencode(params)}"
                content = io.BytesIO()
                try:
                    with client.stream("GET", url) as response:
                        if response.status_code != 200:
                            raise FeedError(
                                f"NVD answered HTTP {response.status_code}",
                                source=url,
                                hint="NVD rate-limits clients without an API key; retry "
                                "later or set PATCHWARDEN_NVD_API_KEY",
                            )
                        _receive(response, content, url, budget)
                except httpx.HTTPError as exc:
                    raise FeedError(f"NVD request failed: {exc}", source=url) from exc
                target = cache_dir / f"nvd-page-{len(pages):05d}.json"
                target.write_bytes(content.getvalue())
                pages.append(target)
                try:
                    body = orjson.loads(content.getvalue())
                    total = int(body.get("totalResults", 0))
                    got = len(body.get("vulnerabilities", []))
                except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
                    raise FeedError("NVD page is not valid JSON", source=url) from exc
                if progress is not None:
                    progress("nvd", start_index + got, total)
                start_index += got
                if got == 0 or start_index >= total:
                    break
    return pages
