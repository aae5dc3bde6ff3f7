"""A staged file: the local, writable content of one file, kept in a staging file on disk.

The content of a staged file is defined by three things:

- the staging file, a sparse local file of the current size;
- an optional *base*: the B2 version the file was opened from, and ``base_limit``, the length
  of the prefix of the content that may still come from it (the base size, lowered by any
  truncation);
- ``filled``, one byte per block: 1 where the staging file already holds the block.

Byte ``x`` of a block that is filled, or lies at or past ``base_limit``, is read from the
staging file (zeros where nothing was written); otherwise it is byte ``x`` of the base, read
through the block cache. A write that covers only part of an unfilled block first fills that
block from the base, so writes never have to be merged with base bytes later; a write that
covers whole blocks fills nothing. Before an upload, every block below ``base_limit`` is
filled: that is when untouched ranges are downloaded, and only then.

The journal row (``row``) is the durable description; ``generation`` counts changes in memory
so an upload can tell whether what it sent is still the current content. All file I/O runs in
worker threads.
"""

from __future__ import annotations

import os
from pathlib import Path

import trio

from b2fs.cache.blocks import BlockData
from b2fs.transfer.journal import JournalRow
from b2fs.transfer.prefetch import BlockFetcher


class StagedFile:
    def __init__(self, row: JournalRow, fetcher: BlockFetcher, base_size: int) -> None:
        self.row = row
        self.fetcher = fetcher
        self.base_size = base_size
        self.block_size = row.block_size
        self.filled = bytearray(row.filled)
        self.generation = 0
        self.fd = -1

    @property
    def path(self) -> Path:
        return Path(self.row.staging)

    @property
    def size(self) -> int:
        return self.row.size

    async def open(self, *, create: bool) -> None:
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        self.fd = await trio.to_thread.run_sync(os.open, self.row.staging, flags, 0o600)

    async def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            await trio.to_thread.run_sync(os.close, fd)

    def snapshot_filled(self) -> bytes:
        """The bitmap as it should be journalled."""
        return bytes(self.filled)

    # -- which bytes come from where -------------------------------------------------------

    def _from_base(self, index: int) -> bool:
        return (
            self.row.base_file_id is not None
            and index * self.block_size < self.row.base_limit
            and not (index < len(self.filled) and self.filled[index])
        )

    def _mark_filled(self, index: int) -> None:
        if index >= len(self.filled):
            self.filled.extend(b"\0" * (index + 1 - len(self.filled)))
        self.filled[index] = 1

    @property
    def complete(self) -> bool:
        """True when the staging file alone holds the whole content."""
        if self.row.base_file_id is None:
            return True
        blocks = -(-self.row.base_limit // self.block_size)
        return all(not self._from_base(i) for i in range(blocks))

    # -- reading and writing ---------------------------------------------------------------

    async def read(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.row.size - offset))
        if size == 0:
            return b""
        pieces: list[BlockData] = []
        position = offset
        end = offset + size
        while position < end:
            index = position // self.block_size
            block_end = min((index + 1) * self.block_size, end)
            if self._from_base(index):
                base_end = min(block_end, self.row.base_limit)
                assert self.row.base_file_id is not None
                pieces.append(
                    await self.fetcher.read(
                        self.row.base_file_id, self.base_size, position, base_end - position
                    )
                )
                if base_end < block_end:
                    pieces.append(await self._pread(base_end, block_end - base_end))
            else:
                pieces.append(await self._pread(position, block_end - position))
            position = block_end
        return b"".join(pieces)

    async def _pread(self, offset: int, size: int) -> bytes:
        data = await trio.to_thread.run_sync(os.pread, self.fd, size, offset)
        # Past the staging file's end (a hole at the end), the content is zeros.
        return data + b"\0" * (size - len(data))

    async def write(self, offset: int, data: bytes) -> int:
        end = offset + len(data)
        if data:
            first = offset // self.block_size
            last = (end - 1) // self.block_size
            for index in (first, last):
                block_start = index * self.block_size
                covers_whole = offset <= block_start and end >= min(
                    block_start + self.block_size, max(self.row.size, end)
                )
                if self._from_base(index) and not covers_whole:
                    await self._fill_block(index)
            for index in range(first, last + 1):
                self._mark_filled(index)
            await trio.to_thread.run_sync(_pwrite_all, self.fd, data, offset)
        if end > self.row.size:
            self.row.size = end
        self.generation += 1
        return len(data)

    async def truncate(self, size: int) -> None:
        if size < self.row.size:
            last = (size - 1) // self.block_size if size else -1
            # The block that `size` cuts must keep its head: fill it from the base first, so
            # that the head stays and a later growth reads zeros after `size`.
            if size % self.block_size and self._from_base(last):
                await self._fill_block(last)
            self.row.base_limit = min(self.row.base_limit, size)
            del self.filled[last + 1 :]
        await trio.to_thread.run_sync(os.ftruncate, self.fd, size)
        self.row.size = size
        self.generation += 1

    async def _fill_block(self, index: int) -> None:
        """Copy block ``index`` from the base into the staging file."""
        assert self.row.base_file_id is not None
        start = index * self.block_size
        end = min(start + self.block_size, self.row.base_limit)
        data = await self.fetcher.read(self.row.base_file_id, self.base_size, start, end - start)
        await trio.to_thread.run_sync(_pwrite_all, self.fd, data, start)
        self._mark_filled(index)

    async def fill_range(self, start: int, end: int) -> None:
        """Make the staging file hold bytes [start, end) (downloading base blocks as needed)."""
        if end <= start:
            return
        for index in range(start // self.block_size, (end - 1) // self.block_size + 1):
            if self._from_base(index):
                await self._fill_block(index)

    async def fill_all(self) -> None:
        await self.fill_range(0, self.row.base_limit)


def _pwrite_all(fd: int, data: BlockData, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view = view[written:]
        offset += written
