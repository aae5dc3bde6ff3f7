"""Upload sources: where the bytes of an upload come from, re-readable for every retry.

Design
------
An :class:`UploadSource` knows its exact ``size`` up front (B2 needs ``Content-Length``; it
refuses chunked bodies) and can be opened any number of times: each upload attempt streams it
from the start through an :class:`UploadBody`. Two sources exist: :class:`BytesSource` (data in
memory) and :class:`FileSource` (a file path with an optional offset and length: a staging file
or one part of a large file).

:class:`UploadBody` is the async iterator handed to httpx. It yields chunks of about 1 MiB;
reading a chunk from disk and hashing it happen together in one ``trio.to_thread`` call, so
neither the disk nor SHA1 blocks the event loop (hashlib releases the GIL on large buffers).
With ``append_sha1`` it appends the 40 hex digits of the SHA1 after the data, which is what
``X-Bz-Content-Sha1: hex_digits_at_end`` means; its ``length`` then includes those 40 bytes.
A file that turns out shorter than promised raises :class:`B2SourceError` (a file that grew is
read only up to the promised size).

A :class:`FileSource` may carry a ``progress`` callback: each attempt calls it with 0 first
and then with the bytes of the file read so far (never counting an appended SHA1), just
before they go to the HTTP layer (so it runs ahead of the network by at most one chunk);
the client's own upload paths report the 0 in ``B2Client._upload_file_range``. It is called
from a worker thread, or from the event loop for a small upload (``posting.py``): it must
only store the number (an assignment is atomic under the GIL).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import BinaryIO

import trio

from b2fs.b2.errors import B2InvalidInput, B2SourceError

__all__ = ["DEFAULT_CHUNK_SIZE", "BytesSource", "FileSource", "UploadBody", "UploadSource"]

DEFAULT_CHUNK_SIZE = 1024 * 1024
# Below this, hashing on the event loop is cheaper than a thread hop.
_INLINE_HASH_LIMIT = 64 * 1024


class UploadSource(ABC):
    """Bytes to upload, of a known ``size``, readable from the start any number of times."""

    size: int

    @abstractmethod
    async def _open(self) -> _Reader:
        """A fresh reader positioned at the start of the source."""


class _Reader(ABC):
    @abstractmethod
    def read_and_hash(self, n: int, hasher: hashlib._Hash | None) -> bytes:
        """Read up to ``n`` bytes (blocking) and feed them to ``hasher``."""

    @property
    def blocking(self) -> bool:
        return True

    def close(self) -> None:
        return None


class BytesSource(UploadSource):
    """An upload from memory."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._data = bytes(data)
        self.size = len(self._data)

    def __repr__(self) -> str:
        return f"BytesSource(size={self.size})"

    async def _open(self) -> _Reader:
        return _BytesReader(self._data)


class _BytesReader(_Reader):
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)
        self._pos = 0

    @property
    def blocking(self) -> bool:
        return False

    def read_and_hash(self, n: int, hasher: hashlib._Hash | None) -> bytes:
        chunk = self._view[self._pos : self._pos + n]
        self._pos += len(chunk)
        if hasher is not None:
            hasher.update(chunk)
        return bytes(chunk)


class FileSource(UploadSource):
    """An upload of ``length`` bytes of the file at ``path`` starting at ``offset``
    (``length=None``: to the end of the file, measured now). ``progress``: see the module
    docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int = 0,
        length: int | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ):
        self.path = os.fspath(path)
        self.progress = progress
        if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
            raise B2InvalidInput(f"offset must be a non-negative integer, not {offset!r}")
        if length is None:
            try:
                file_size = os.stat(self.path).st_size
            except OSError as exc:
                raise B2InvalidInput(
                    f"cannot read upload source {self.path!r}: {exc.strerror}"
                ) from None
            if offset > file_size:
                raise B2InvalidInput(
                    f"offset {offset} is beyond the end of {self.path!r} ({file_size} bytes)"
                )
            length = file_size - offset
        elif isinstance(length, bool) or not isinstance(length, int) or length < 0:
            raise B2InvalidInput(f"length must be a non-negative integer, not {length!r}")
        self.offset = offset
        self.size = length

    def __repr__(self) -> str:
        return f"FileSource({self.path!r}, offset={self.offset}, length={self.size})"

    async def _open(self) -> _Reader:
        return await trio.to_thread.run_sync(
            _FileReader, self.path, self.offset, self.size, self.progress
        )


class _FileReader(_Reader):
    def __init__(
        self, path: str, offset: int, length: int, progress: Callable[[int], None] | None = None
    ) -> None:
        self._path = path
        self._progress = progress
        self._done = 0
        self._file: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        try:
            self._file.seek(offset)
        except BaseException:
            self._file.close()
            raise
        self._left = length
        if progress is not None:
            progress(0)

    def read_and_hash(self, n: int, hasher: hashlib._Hash | None) -> bytes:
        chunk = self._file.read(min(n, self._left))
        self._left -= len(chunk)
        if hasher is not None:
            hasher.update(chunk)
        if self._progress is not None:
            self._done += len(chunk)
            self._progress(self._done)
        return chunk

    def close(self) -> None:
        self._file.close()


class UploadBody:
    """One attempt's request body: the source's bytes (plus the SHA1 hex when
    ``append_sha1``), as an async iterator of ~1 MiB chunks. Call :meth:`aclose` when done."""

    def __init__(
        self,
        source: UploadSource,
        *,
        append_sha1: bool,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        endpoint: str = "",
    ) -> None:
        self._source = source
        self._append = append_sha1
        self._chunk_size = chunk_size
        self._endpoint = endpoint
        self._hasher = hashlib.sha1() if append_sha1 else None
        self._reader: _Reader | None = None
        self._left = source.size
        self._finished = False
        self._closed = False
        self.length = source.size + (40 if append_sha1 else 0)
        self.sha1_hex: str | None = None
        self.sent = 0  # bytes handed to the HTTP layer so far

    def __aiter__(self) -> UploadBody:
        return self

    async def __anext__(self) -> bytes:
        if self._finished or self._closed:
            raise StopAsyncIteration
        if self._left == 0:
            self._finished = True
            if self._hasher is not None:
                self.sha1_hex = self._hasher.hexdigest()
                self.sent += 40
                return self.sha1_hex.encode("ascii")
            raise StopAsyncIteration
        if self._reader is None:
            self._reader = await self._source._open()
        reader = self._reader
        n = min(self._chunk_size, self._left)
        if reader.blocking or (n > _INLINE_HASH_LIMIT and self._hasher is not None):
            chunk = await trio.to_thread.run_sync(reader.read_and_hash, n, self._hasher)
        else:
            chunk = reader.read_and_hash(n, self._hasher)
        if not chunk:
            raise B2SourceError(
                f"the upload source ended {self._left} bytes before its declared size "
                f"of {self._source.size} (was the file truncated?)",
                self._endpoint,
            )
        self._left -= len(chunk)
        self.sent += len(chunk)
        return chunk

    async def aclose(self) -> None:
        self._closed = True
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.close()
