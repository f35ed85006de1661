"""Bounded decompression of feed data: gzip files, zip members, HTTP content encodings.

A few kilobytes of deflate can inflate to gigabytes (a "decompression bomb"), so feed
data is never inflated whole and checked afterwards. It is read in chunks and counted
as it comes; reading stops at the first chunk that crosses a bound:

* ``member_bytes``: what one file, zip member or download may inflate to;
* ``total_bytes``: what all of them together may inflate to in one import or sync;
* ``ratio``: how many times its compressed size one member may inflate to, judged once
  it has passed ``RATIO_GRACE`` (small files of repetitive JSON legitimately compress
  40 times; they are harmless, a bomb is not small).

Crossing a bound raises ``FeedError`` naming the file or member, the bound and the
setting that raises it; callers parse everything before writing anything, so such an
error leaves the stored feeds as they were. Zip archives are also checked against
their declared sizes before a single member is inflated.

The defaults were measured against the real feed data in ``../shared/data`` (see
docs/architecture.md, "Decompression bounds").
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from patchwarden.core.errors import FeedError

MIB = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
RATIO_GRACE = MIB
_CHUNK = 1 << 16
_REDOWNLOAD = "the file may be truncated or corrupt; download it again"
_BOMB = "refused as a likely decompression bomb; nothing was imported"


@dataclass(frozen=True, slots=True)
class InflateLimits:
    """The bounds on decompressed feed data (``PATCHWARDEN_FEED_MAX_*`` settings)."""

    member_bytes: int = 256 * MIB
    total_bytes: int = 4096 * MIB
    ratio: int = 100


DEFAULT_LIMITS = InflateLimits()

#: The setting that raises each bound, named in every refusal.
SETTINGS = {
    "member_bytes": "PATCHWARDEN_FEED_MAX_MEMBER_BYTES",
    "total_bytes": "PATCHWARDEN_FEED_MAX_TOTAL_BYTES",
    "ratio": "PATCHWARDEN_FEED_MAX_RATIO",
}


def size_text(count: int) -> str:
    """A byte count as people read it: ``256 MiB``, ``1.06 MiB``, ``4 GiB``, ``900 bytes``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1024)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


class InflateBudget:
    """Decompressed bytes of one import or sync, counted against ``limits``."""

    def __init__(self, limits: InflateLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.total = 0

    def member(self, source: str, compressed: int | None = None) -> MemberCounter:
        """A counter for one member; ``compressed`` is its size when known up front."""
        return MemberCounter(self, source, compressed)

    def gunzip(self, data: bytes, source: str) -> bytes:
        """``data`` decompressed when it is gzip (all members of it), else unchanged."""
        if not data.startswith(GZIP_MAGIC):
            return data
        inflater = GzipInflater(self.member(source))
        out = io.BytesIO()
        for start in range(0, len(data), _CHUNK):
            for piece in inflater.feed(data[start : start + _CHUNK]):
                out.write(piece)
        inflater.close()
        return out.getvalue()

    def zip_members(self, archive: zipfile.ZipFile, source: str) -> list[zipfile.ZipInfo]:
        """The archive's ``.json`` members, refused when their declared sizes or their
        compression method already cross a bound (before any of them is inflated)."""
        members = [
            info
            for info in archive.infolist()
            if not info.is_dir() and info.filename.endswith(".json")
        ]
        declared = 0
        for info in members:
            where = f"{source}!{info.filename}"
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # zipfile inflates bzip2 and LZMA reads without an output bound.
                raise FeedError(
                    f"zip member uses compression method {info.compress_type}; feed archives "
                    "use deflate (8) or none (0)",
                    source=where,
                    hint="recompress the archive with deflate",
                )
            self.member(where, info.compress_size).check(info.file_size)
            declared += info.file_size
        if self.total + declared > self.limits.total_bytes:
            raise self.total_error(source)
        return members

    def read_zip_member(
        self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, source: str
    ) -> bytes:
        """One member's content, read in chunks within the bounds (``source`` names it).

        zipfile never returns more than the member's declared size (a header that
        understates it fails the CRC check), and ``zip_members`` checked those sizes;
        counting the chunks keeps the total exact and the bound independent of that.
        """
        counter = self.member(source, info.compress_size)
        out = io.BytesIO()
        try:
            with archive.open(info) as handle:
                while chunk := handle.read(_CHUNK):
                    counter.add(len(chunk))
                    out.write(chunk)
        except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError) as exc:
            raise FeedError(
                f"corrupt zip member ({exc})",
                source=source,
                hint="the download may be truncated; fetch the archive again",
            ) from exc
        return out.getvalue()

    def total_error(self, source: str) -> FeedError:
        """The refusal of data that crosses ``total_bytes``."""
        limit = self.limits.total_bytes
        setting = SETTINGS["total_bytes"]
        return FeedError(
            f"feed data inflates to more than {size_text(limit)} in total, the limit of one "
            f"import or sync ({setting}={limit}); {_BOMB}",
            source=source,
            hint=f"if the data is genuine, raise {setting} or import fewer files at once",
        )


class MemberCounter:
    """Counts one member's inflated bytes and the budget's total, raising at a bound."""

    def __init__(self, budget: InflateBudget, source: str, compressed: int | None) -> None:
        self.budget = budget
        self.source = source
        self.compressed = compressed
        self.inflated = 0

    def add(self, count: int, consumed: int | None = None) -> None:
        """Count ``count`` more inflated bytes; ``consumed`` compressed bytes so far."""
        self.inflated += count
        self.budget.total += count
        self.check(self.inflated, consumed)
        if self.budget.total > self.budget.limits.total_bytes:
            raise self.budget.total_error(self.source)

    def check(self, inflated: int, consumed: int | None = None) -> None:
        """Raise when ``inflated`` bytes cross a member bound; the ratio is judged
        against ``consumed`` compressed bytes, else the member's compressed size."""
        limits = self.budget.limits
        compressed = consumed if consumed is not None else self.compressed
        if inflated > limits.member_bytes:
            setting = SETTINGS["member_bytes"]
            raise FeedError(
                f"inflates to more than {size_text(limits.member_bytes)}, the limit per file "
                f"or archive member ({setting}={limits.member_bytes}); {_BOMB}",
                source=self.source,
                hint=f"if the file is genuine, raise {setting}",
            )
        judged = compressed is not None and inflated > RATIO_GRACE
        if judged and inflated > limits.ratio * max(compressed or 0, 1):
            setting = SETTINGS["ratio"]
            raise FeedError(
                f"inflates more than {limits.ratio} times its compressed size "
                f"({size_text(max(compressed or 0, 1))} to over {size_text(inflated)}; "
                f"{setting}={limits.ratio}); {_BOMB}",
                source=self.source,
                hint=f"if the file is genuine, raise {setting}",
            )


class GzipInflater:
    """Inflates a gzip stream fed in pieces, each piece's output in bounded chunks.

    Several gzip members one after the other are one stream (as ``gzip`` writes them);
    zero padding may follow the last one.
    """

    def __init__(self, counter: MemberCounter) -> None:
        self._counter = counter
        self._decompressor = zlib.decompressobj(wbits=31)
        self._consumed = 0
        self._padding = False

    def feed(self, data: bytes) -> Iterator[bytes]:
        """Inflate the next compressed bytes; raises ``FeedError`` at a bound."""
        self._consumed += len(data)
        pending = data
        while pending:
            if self._decompressor.eof and not self._padding:
                if pending[:1] == b"\0":
                    self._padding = True
                else:
                    self._decompressor = zlib.decompressobj(wbits=31)  # the next member
            if self._padding:
                if pending.strip(b"\0"):
                    raise self._corrupt("unexpected bytes after the stream")
                return
            decompressor = self._decompressor
            try:
                chunk = decompressor.decompress(pending, _CHUNK)
            except zlib.error as exc:
                raise self._corrupt(str(exc)) from exc
            pending = decompressor.unused_data if decompressor.eof else decompressor.unconsumed_tail
            self._counter.add(len(chunk), self._consumed - len(pending))
            if chunk:
                yield chunk

    def close(self) -> None:
        """Raise ``FeedError`` when the stream ended inside a member."""
        if self._consumed and not (self._padding or self._decompressor.eof):
            raise self._corrupt("the stream is truncated")

    def _corrupt(self, detail: str) -> FeedError:
        return FeedError(
            f"corrupt gzip data: {detail}", source=self._counter.source, hint=_REDOWNLOAD
        )
