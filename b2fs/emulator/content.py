"""Reading stored content: the byte segments of a version, and copying a byte range.

A small file is one blob; a finished large file is its parts in order. Both are described as
a list of ``(path, length)`` segments so that downloads and copies treat them alike.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from .blobs import BlobWriter
from .models import FileVersion
from .store import Store

Segment = tuple[str, int]
CHUNK = 1 << 20


def segments(store: Store, f: FileVersion) -> list[Segment]:
    if f.large:
        return [(store.blobs.path(p.blob), p.length) for p in store.list_parts(f.file_id)]
    if f.blob is None:
        return []
    return [(store.blobs.path(f.blob), f.length)]


def ranges(segs: list[Segment], start: int, end: int) -> Iterator[tuple[str, int, int]]:
    """(path, offset, count) pieces covering bytes [start, end] inclusive."""
    pos = 0
    for path, length in segs:
        lo, hi = max(start, pos), min(end + 1, pos + length)
        if lo < hi:
            yield path, lo - pos, hi - lo
        pos += length
        if pos > end:
            break


def copy_range(segs: list[Segment], start: int, end: int, writer: BlobWriter) -> None:
    """Append bytes [start, end] of the segments to ``writer`` (hashing as it goes)."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    for path, offset, count in ranges(segs, start, end):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.lseek(fd, offset, os.SEEK_SET)
            left = count
            while left:
                n = os.readv(fd, [view[: min(left, CHUNK)]])
                if n <= 0:
                    raise OSError("stored content is shorter than its metadata")
                writer.write(view[:n])
                left -= n
        finally:
            os.close(fd)
