"""Download responses: parsing their headers, streaming their bodies, checking SHA1.

Design
------
:func:`parse_download_headers` turns the headers of a download answer (B2-API.md §8.2) into a
:class:`~b2fs.b2.models.DownloadInfo`: ids and the decoded name, sizes, ``Content-Range``,
the decoded ``X-Bz-Info-*`` values and the standard headers B2 derives from ``b2-*`` info.

:class:`DownloadStream` is what ``B2Client.download_file_by_id/by_name`` yield: ``info`` and
the body as raw chunks (never content-decoded: B2 serves the stored bytes, and a file stored
with ``b2-content-encoding: gzip`` must not be unzipped on the way). It always yields exactly
the range that was asked for, even when a server answers a ranged request with the whole file
(200): the bytes before the range are skipped and the rest is cut. When the body *is* the
whole file and is read to the end, its SHA1 is checked against ``X-Bz-Content-Sha1``
(``unverified:`` stripped; ``none`` means use ``large_file_sha1`` when there is one) and a
difference raises :class:`B2ChecksumMismatch`. Hashing runs in a worker thread per ~1 MiB.

:class:`DownloadSink` s collect bytes for the resuming download helpers of the client.
"""

from __future__ import annotations

import hashlib
import os
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from types import MappingProxyType
from typing import BinaryIO, cast

import httpx
import trio

from b2fs.b2 import encoding
from b2fs.b2.errors import B2ChecksumMismatch, B2UnexpectedResponse
from b2fs.b2.models import ContentRange, DownloadInfo
from b2fs.b2.stats import ClientStats

__all__ = [
    "BytesSink",
    "CallbackSink",
    "DownloadSink",
    "DownloadStream",
    "FileSink",
    "Sha1Accumulator",
    "parse_download_headers",
]

HASH_BATCH = 1024 * 1024
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_PASSED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)


def parse_content_range(value: str | None) -> ContentRange | None:
    if not value:
        return None
    match = _CONTENT_RANGE.fullmatch(value.strip())
    if not match:
        return None
    start, end, total = (int(g) for g in match.groups())
    return ContentRange(start, end, total)


def parse_download_headers(headers: httpx.Headers, endpoint: str) -> DownloadInfo:
    def bad(what: str) -> B2UnexpectedResponse:
        return B2UnexpectedResponse(
            200, "unexpected_response", f"download response {what}", endpoint
        )

    file_id = headers.get("x-bz-file-id")
    raw_name = headers.get("x-bz-file-name")
    length_text = headers.get("content-length")
    if not file_id:
        raise bad("has no X-Bz-File-Id header")
    if raw_name is None:
        raise bad("has no X-Bz-File-Name header")
    if length_text is None or not length_text.strip().isdigit():
        raise bad("has no valid Content-Length header")
    try:
        file_name = encoding.decode(raw_name)
    except UnicodeDecodeError:
        raise bad("has a file name that is not UTF-8") from None
    content_length = int(length_text)
    content_range = parse_content_range(headers.get("content-range"))
    if headers.get("content-range") and content_range is None:
        raise bad("has an unreadable Content-Range header")
    info: dict[str, str] = {}
    for key, value in headers.multi_items():
        lower = key.lower()
        if lower.startswith("x-bz-info-"):
            try:
                info[lower[len("x-bz-info-") :]] = encoding.decode(value)
            except UnicodeDecodeError:
                raise bad(f"has a {key} header that is not UTF-8") from None
    passed = {name: headers[name] for name in _PASSED_HEADERS if name in headers}
    timestamp_text = headers.get("x-bz-upload-timestamp")
    return DownloadInfo(
        file_id=file_id,
        file_name=file_name,
        content_length=content_length,
        size=content_range.total if content_range else content_length,
        content_type=headers.get("content-type"),
        content_sha1=headers.get("x-bz-content-sha1"),
        upload_timestamp=int(timestamp_text)
        if timestamp_text and timestamp_text.isdigit()
        else None,
        file_info=MappingProxyType(info),
        content_range=content_range,
        headers=MappingProxyType(passed),
    )


class Sha1Accumulator:
    """SHA1 of a byte stream, hashed in a worker thread per ~1 MiB batch."""

    def __init__(self) -> None:
        self._hasher = hashlib.sha1()
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def update(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        if self._pending_size >= HASH_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending:
            return
        data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
        self._pending.clear()
        self._pending_size = 0
        await trio.to_thread.run_sync(self._hasher.update, data)

    async def hexdigest(self) -> str:
        await self._flush()
        return self._hasher.hexdigest()


class DownloadStream:
    """An open download: :attr:`info` and the body (see the module docstring)."""

    def __init__(
        self,
        response: httpx.Response,
        info: DownloadInfo,
        *,
        endpoint: str,
        stats: ClientStats,
        skip: int = 0,
        limit: int | None = None,
        verify_sha1: bool = True,
    ) -> None:
        self.info = info
        self.status = response.status_code
        self._response = response
        self._endpoint = endpoint
        self._stats = stats
        self._skip = skip
        self._limit = limit
        whole = info.content_range is None or (
            info.content_range.start == 0 and info.content_range.end + 1 == info.size
        )
        self._expected_sha1 = (
            info.sha1 if verify_sha1 and whole and not skip and limit is None else None
        )
        self._iterator: AsyncGenerator[bytes, None] | None = None

    def __repr__(self) -> str:
        return f"<DownloadStream {self.status} file_id={self.info.file_id!r}>"

    @property
    def verifies_sha1(self) -> bool:
        """Whether reading the body to its end checks it against B2's SHA1."""
        return self._expected_sha1 is not None

    def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body's chunks (as they arrive). Iterate once."""
        if self._iterator is not None:
            raise RuntimeError("the download body was already read")
        self._iterator = self._chunks()
        return self._iterator

    async def aclose(self) -> None:
        """Finish the body iterator (the client does this when the download is left)."""
        iterator, self._iterator = self._iterator, None
        if iterator is not None:
            await iterator.aclose()

    async def read(self) -> bytes:
        """The whole (requested part of the) body."""
        parts = [chunk async for chunk in self.iter_bytes()]
        return b"".join(parts)

    async def _chunks(self) -> AsyncGenerator[bytes, None]:
        hasher = Sha1Accumulator() if self._expected_sha1 is not None else None
        skip = self._skip
        left = self._limit
        raw = cast(AsyncGenerator[bytes, None], self._response.aiter_raw())
        async with aclosing(raw):
            async for chunk in raw:
                self._stats.bytes_downloaded += len(chunk)
                if skip:
                    if len(chunk) <= skip:
                        skip -= len(chunk)
                        continue
                    chunk = chunk[skip:]
                    skip = 0
                if left is not None and len(chunk) > left:
                    chunk = chunk[:left]
                if hasher is not None:
                    await hasher.update(chunk)
                if chunk:
                    yield chunk
                if left is not None:
                    left -= len(chunk)
                    if left <= 0:
                        break
        if hasher is not None and self._expected_sha1 is not None:
            actual = await hasher.hexdigest()
            if actual != self._expected_sha1:
                raise B2ChecksumMismatch(
                    f"downloaded data of {self.info.file_name!r} has SHA1 {actual}, "
                    f"B2 says {self._expected_sha1}",
                    self._endpoint,
                )


class DownloadSink(ABC):
    """Where a resuming download puts its bytes, in order."""

    received = 0

    @abstractmethod
    async def write(self, chunk: bytes) -> None: ...

    async def aclose(self) -> None:
        return None


class BytesSink(DownloadSink):
    def __init__(self) -> None:
        self.buffer = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.buffer += chunk
        self.received += len(chunk)


class CallbackSink(DownloadSink):
    """Hands every chunk to an async callable, in order, as it arrives."""

    def __init__(self, consume: Callable[[bytes], Awaitable[None]]) -> None:
        self._consume = consume

    async def write(self, chunk: bytes) -> None:
        self.received += len(chunk)
        await self._consume(chunk)


class FileSink(DownloadSink):
    """Writes to a new file at ``path`` (truncated), batching ~1 MiB per thread hop."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._file: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_size = 0

    async def write(self, chunk: bytes) -> None:
        if self._file is None:
            self._file = await trio.to_thread.run_sync(open, self.path, "wb")
        self._pending.append(chunk)
        self._pending_size += len(chunk)
        self.received += len(chunk)
        if self._pending_size >= HASH_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        if self._file is None or not self._pending:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_size = 0
        await trio.to_thread.run_sync(self._file.write, data)

    async def aclose(self) -> None:
        try:
            if self._file is None:
                self._file = await trio.to_thread.run_sync(open, self.path, "wb")
            await self._flush()
        finally:
            if self._file is not None:
                file, self._file = self._file, None
                await trio.to_thread.run_sync(file.close)
