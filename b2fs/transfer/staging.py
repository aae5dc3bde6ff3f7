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

Small writes that continue one another, into a file with no base, are kept in memory (up to
``PENDING_PER_FILE`` per file and a :class:`WriteBudget` across all of them) and written to
the staging file in one piece: when the run is full, before anything reads or changes the
staging file otherwise (``write_pending``), and before the file's journal row is committed
(``writing_out``: close() and fsync have the journal run the write in its own trip to its
worker thread, right before the transaction). `tar` writes in 10 KiB records, and each write
was a trip to a worker thread. A failed write of the run (a full disk) keeps it in memory:
the caller hears of the failure, and nothing acknowledged is lost. Writes of the staging
file (the run, a direct write, a truncation, a block filled from the base) take ``_io`` so
that they land in the order they were made. A new staging file is made in the same trip to a
worker thread as the first bytes written out: a new file costs no trip of its own at
create(). Closing the staging file can be handed to a trip the caller makes anyway
(``detach``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import trio

from b2fs.cache.blocks import BlockData
from b2fs.transfer.journal import JournalRow
from b2fs.transfer.prefetch import BlockFetcher

PENDING_PER_FILE = 1 << 20  # written bytes a staged file keeps in memory, at most
PENDING_WRITE_MAX = 128 << 10  # a larger write goes to the staging file at once
# The largest single pwrite into a staging file. The page cache sizes a new folio by the write
# that makes it: a 1 MiB write at a 1 MiB boundary gets one 1 MiB folio. On these machines
# (VMs that hand free memory back to their host) filling such large folios cost about 2 ms of
# CPU per MiB, ten times as much as writes of 256 KiB (docs/PERFORMANCE.md). The price where
# large folios are cheap: three more system calls per MiB, in the same worker-thread trip.
WRITE_PIECE = 256 << 10


class WriteBudget:
    """The written bytes kept in memory across every staged file, and their bound."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0


class StagedFile:
    def __init__(
        self,
        row: JournalRow,
        fetcher: BlockFetcher,
        base_size: int,
        budget: WriteBudget | None = None,
    ) -> None:
        self.row = row
        self.fetcher = fetcher
        self.base_size = base_size
        self.block_size = row.block_size
        self.filled = bytearray(row.filled)
        self.generation = 0
        self.fd = -1
        self._to_create = False  # the staging file is made with the first bytes written out
        self._budget = budget
        # Written bytes not in the staging file yet: one run starting at ``_pending_at``.
        self._pending = bytearray()
        self._pending_at = 0
        self._io = trio.Lock()  # every write of the staging file, in the order made

    @property
    def path(self) -> Path:
        return Path(self.row.staging)

    @property
    def size(self) -> int:
        return self.row.size

    async def open(self, *, create: bool) -> None:
        """Open the staging file; a new one is made later, in the same trip to a worker
        thread as the first bytes written out (``write_pending``) or by ``make``."""
        if create:
            self._to_create = True
        else:
            self.fd = await trio.to_thread.run_sync(os.open, self.row.staging, os.O_RDWR)

    async def make(self) -> None:
        """Make the new staging file now (a file created with a size)."""
        async with self._io:
            await self._write_pending_locked()

    def _made(self) -> int:
        """In a worker thread, under ``_io``: the staging file's descriptor, made if new."""
        if self._to_create:
            self.fd = _create_file(self.row.staging)
            self._to_create = False
        return self.fd

    async def close(self) -> None:
        """Done with: the content is on B2 (an upload wrote out the run kept in memory
        first) or not wanted any more (removed), so a run still kept is dropped."""
        closer = await self.detach()
        if closer.needed:
            await trio.to_thread.run_sync(closer)

    async def detach(self) -> FdCloser:
        """``close``, but the descriptor is closed by the callable returned, in a worker
        thread the caller goes to anyway (releasing an uploaded file moves or removes its
        staging file there: one trip instead of two per small file)."""
        async with self._io:
            if self._pending:
                assert self._budget is not None
                self._budget.used -= len(self._pending)
                self._pending = bytearray()
            self._to_create = False
            fd, self.fd = self.fd, -1
        return FdCloser(fd)

    # -- written bytes kept in memory ------------------------------------------------------

    def _keeps(self, offset: int, length: int) -> bool:
        """Whether a write of ``length`` bytes at ``offset`` joins the run kept in memory."""
        budget = self._budget
        return (
            budget is not None
            and length <= PENDING_WRITE_MAX
            and self.row.base_file_id is None  # (a partial block of a base must be filled)
            and (not self._pending or offset == self._pending_at + len(self._pending))
            and len(self._pending) + length <= PENDING_PER_FILE
            and budget.used + length <= budget.limit
        )

    async def write_pending(self) -> None:
        """Put the written bytes kept in memory into the staging file, made if new (close
        and fsync wait for this before the journal records the file)."""
        if self._pending or self._to_create:
            async with self._io:
                await self._write_pending_locked()

    async def _write_pending_locked(self) -> None:
        if not self._pending:
            if self._to_create:
                await trio.to_thread.run_sync(self._made)
            return
        write_out = self._write_out()
        await trio.to_thread.run_sync(write_out)
        write_out.settle()

    def _write_out(self) -> _WriteOut:
        """The kept run as it is now, for a worker thread to write out (under ``_io``). A
        copy: writes that arrive meanwhile extend the run, and stay kept until written."""
        return _WriteOut(bytes(self._pending), self._pending_at, self._made, self._drop_written)

    def _drop_written(self, length: int) -> None:
        """The first ``length`` bytes of the kept run are in the staging file now."""
        del self._pending[:length]
        self._pending_at += length
        assert self._budget is not None
        self._budget.used -= length

    @contextlib.asynccontextmanager
    async def writing_out(self) -> AsyncIterator[Callable[[], None] | None]:
        """Under the I/O lock: a callable that writes the kept run out (making a new staging
        file), for the caller to run in a worker thread it goes to anyway, or None if there
        is nothing to do. What it wrote leaves memory when the block ends; if it was not
        run, or failed, the run stays kept."""
        async with self._io:
            if not self._pending and not self._to_create:
                yield None
                return
            write_out = self._write_out()
            try:
                yield write_out
            finally:
                write_out.settle()

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
        await self.write_pending()
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
        if data and self._keeps(offset, len(data)):
            if not self._pending:
                self._pending_at = offset
            self._pending += data
            assert self._budget is not None
            self._budget.used += len(data)
            for index in range(offset // self.block_size, (end - 1) // self.block_size + 1):
                self._mark_filled(index)
        elif data:
            async with self._io:
                await self._write_pending_locked()
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
        async with self._io:
            await self._write_pending_locked()
            await self._truncate_locked(size)

    async def _truncate_locked(self, size: int) -> None:
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
        await self.write_pending()
        if end <= start:
            return
        for index in range(start // self.block_size, (end - 1) // self.block_size + 1):
            if self._from_base(index):
                async with self._io:
                    if self._from_base(index):  # (not filled by a write meanwhile)
                        await self._fill_block(index)

    async def fill_all(self) -> None:
        await self.fill_range(0, self.row.base_limit)


class _WriteOut:
    """Writes bytes of a kept run (``StagedFile._write_out``) into the staging file, made
    first if new, in a worker thread; ``settle`` then, on the trio thread, tells the staged
    file what was written, if it was."""

    def __init__(
        self, data: bytes, at: int, made: Callable[[], int], written: Callable[[int], None]
    ) -> None:
        self._data, self._at = data, at
        self._made = made  # the staging file's descriptor, made if new
        self._report = written
        self._written = False

    def __call__(self) -> None:
        fd = self._made()
        if self._data:
            _pwrite_all(fd, self._data, self._at)
        self._written = True

    def settle(self) -> None:
        if self._written and self._data:
            self._report(len(self._data))


class FdCloser:
    """Closes one file descriptor (-1: none) when called, once: later calls do nothing."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    @property
    def needed(self) -> bool:
        return self._fd >= 0

    def __call__(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _create_file(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)


def _pwrite_all(fd: int, data: BlockData, offset: int) -> None:
    """Write all of ``data`` at ``offset``, at most :data:`WRITE_PIECE` bytes per call."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view[:WRITE_PIECE], offset)
        view = view[written:]
        offset += written
