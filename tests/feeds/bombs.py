"""Real decompression bombs, built in milliseconds for the tests.

Deflate with a full flush after each MiB of zeros resets its state, so every MiB
compresses to the same bytes: repeating them gives a valid stream of any size without
compressing it (1 GiB of zeros takes about 1 MB). gzip and zip containers are written
around such streams by hand, with correct CRCs and sizes.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

MIB = 1 << 20


def zeros_deflate(mib: int) -> tuple[bytes, int]:
    """A raw deflate stream of ``mib`` MiB of zero bytes, and its CRC-32."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zero = bytes(MIB)
    block = compressor.compress(zero) + compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mib):
        crc = zlib.crc32(zero, crc)
    return block * mib + compressor.flush(), crc


def gzip_bomb(path: Path, mib: int) -> Path:
    """A valid gzip file of ``mib`` MiB of zeros."""
    stream, crc = zeros_deflate(mib)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    path.write_bytes(header + stream + struct.pack("<II", crc, (mib * MIB) & 0xFFFFFFFF))
    return path


def zip_bomb(
    path: Path, mib: int, *, name: str = "BOMB-1.json", declared: int | None = None
) -> Path:
    """A zip with one deflated member of ``mib`` MiB of zeros.

    ``declared`` overrides the size the headers give (a lying header).
    """
    stream, crc = zeros_deflate(mib)
    size = mib * MIB if declared is None else declared
    encoded = name.encode()
    local = struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(stream), size, len(encoded), 0
    )
    central = struct.pack(
        "<IHHHHHHIIIHHHHHII",
        0x02014B50,
        20,
        20,
        0,
        8,
        0,
        0,
        crc,
        len(stream),
        size,
        len(encoded),
        0,
        0,
        0,
        0,
        0,
        0,
    )
    directory_offset = len(local) + len(encoded) + len(stream)
    directory = central + encoded
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(directory), directory_offset, 0)
    path.write_bytes(local + encoded + stream + directory + end)
    return path
