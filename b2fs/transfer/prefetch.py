"""Reading B2 versions through the block cache: demand fetches, sharing, and sequential prefetch.

``BlockFetcher.read`` returns bytes of one immutable version (a fileId). Blocks already in the
cache are read from disk; missing ones are fetched with ranged downloads of whole blocks. A
download runs in a worker thread (the client's ``download_range_threaded``): the thread cuts
the stream into blocks and writes each block's file itself, and only hands the finished block
to the trio thread, which indexes it and wakes its readers; the bytes never cross the event
loop chunk by chunk. The cache reserves a run's bytes before it starts, so it stays within its
bound while files are being written from threads.

Every block being fetched has an entry in ``_inflight``, so concurrent readers of the same
block wait for one download instead of starting another.

``Readahead`` is a per-handle detector: while reads stay sequential, the prefetch window
starts at one block and doubles each time the reader enters a new block (jumping to one block
per download slot at the second block in a row), up to the configured maximum; any seek
resets it to zero, so random reads fetch only the blocks they touch. The window is fetched
as parallel ranged downloads of a few blocks each, started in the mount's nursery. Prefetch
never queues: it takes a download slot only when one is free
(``acquire_nowait``), so it cannot delay demand reads, and a window it could not start is
tried again on the next read or when a prefetch of the same file ends (so the slots stay
busy while the reader waits). Memory is bounded by slots x one block (downloads are streamed
into block-sized buffers that go straight to the cache).

Invariant: a block key is in ``_inflight`` exactly while one task is downloading it; that
task stores it in the cache (or fails) before removing the key and setting the event.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio
from cachetools import LRUCache

from b2fs.cache.blocks import AlignedBlock, BlockCache, BlockData
from b2fs.objectstore import ObjectStore

log = logging.getLogger(__name__)


@dataclass
class FetchStats:
    requests: int = 0
    bytes_downloaded: int = 0
    prefetch_requests: int = 0


@dataclass
class Readahead:
    """Sequential-access detector of one open handle (positions in bytes)."""

    max_blocks: int
    # Once a second block in a row is read sequentially, the window jumps to at least this
    # many blocks (the download slots): one block per connection at once, instead of a
    # doubling that would take several round trips to fill the link.
    burst: int = 0
    next_offset: int = 0
    window_blocks: int = 0
    last_block: int = -1
    streak: int = 0  # sequential blocks in a row
    # How far (in bytes) a read may land from where the previous one ended and still count as
    # sequential: the kernel's own readahead sends a few requests at once, slightly reordered.
    slack: int = field(default=512 * 1024)

    def on_read(self, offset: int, size: int, block_size: int) -> int:
        """Record a read; returns the number of blocks to prefetch after it."""
        sequential = abs(offset - self.next_offset) <= self.slack and (
            offset > 0 or self.next_offset == 0
        )
        block = (offset + size - 1) // block_size if size else offset // block_size
        if not sequential:
            self.window_blocks = 0
            self.streak = 0
        elif block != self.last_block:
            self.streak += 1
            grown = max(1, self.window_blocks * 2)
            if self.streak >= 2:
                grown = max(grown, self.burst)
            self.window_blocks = min(grown, self.max_blocks)
        self.last_block = block
        self.next_offset = max(self.next_offset, offset + size) if sequential else offset + size
        return self.window_blocks


class BlockFetcher:
    def __init__(
        self,
        store: ObjectStore,
        cache: BlockCache,
        *,
        concurrency: int,
        max_request_blocks: int = 8,
    ) -> None:
        self.store = store
        self.cache = cache
        self.block_size = cache.block_size
        self.slots = trio.CapacityLimiter(concurrency)
        self.max_request_blocks = max_request_blocks
        self.stats = FetchStats()
        self._inflight: dict[tuple[str, int], trio.Event] = {}
        self._nursery: trio.Nursery | None = None
        # The latest window asked for, per file: a prefetch that ends starts the next run
        # itself, so the download slots stay busy while the reader waits for a block.
        self._windows: LRUCache[str, tuple[int, int, int]] = LRUCache(maxsize=64)
        # Per file, blocks (first, last) of the latest window found cached or being fetched.
        self._covered: LRUCache[str, tuple[int, int]] = LRUCache(maxsize=64)

    def attach(self, nursery: trio.Nursery) -> None:
        """Give the fetcher the long-lived nursery its prefetch tasks run in."""
        self._nursery = nursery

    def block_range(self, offset: int, size: int) -> range:
        first = offset // self.block_size
        last = (offset + size - 1) // self.block_size
        return range(first, last + 1)

    async def read(self, file_id: str, file_size: int, offset: int, size: int) -> BlockData:
        """Bytes [offset, offset+size) of the version, clipped at its end: a read within one
        block is a slice of it (no copy)."""
        size = max(0, min(size, file_size - offset))
        if size == 0:
            return b""
        pieces: list[BlockData] = []
        for index in self.block_range(offset, size):
            start = index * self.block_size
            lo = max(offset, start) - start
            hi = min(offset + size, start + self.block_size) - start
            pieces.append(await self.read_block(file_id, file_size, index, lo, hi - lo))
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    async def read_block(
        self, file_id: str, file_size: int, index: int, offset: int, length: int
    ) -> BlockData:
        """Part of one block, fetching it if it is not cached."""
        for _ in range(3):
            data = await self.cache.read(file_id, index, offset, length)
            if data is not None:
                return data
            fetched = await self._fetch_or_wait(file_id, file_size, index)
            if fetched is not None:
                return fetched[offset : offset + length]
        # The cache is too small to keep a block between store and read: fetch directly.
        return await self._download_direct(file_id, file_size, index, offset, length)

    async def _fetch_or_wait(self, file_id: str, file_size: int, index: int) -> BlockData | None:
        """Fetch the block (returning its bytes) or wait for the task already fetching it."""
        event = self._inflight.get((file_id, index))
        if event is not None:
            await event.wait()
            return None
        async with self.slots:
            if self.cache.contains(file_id, index) or (file_id, index) in self._inflight:
                return None
            blocks = await self._fetch_run(file_id, file_size, index, index)
        return blocks.get(index)

    async def _download_direct(
        self, file_id: str, file_size: int, index: int, offset: int, length: int
    ) -> bytes:
        start = index * self.block_size + offset
        end = min(start + length, file_size)
        received = bytearray()
        async with self.slots:
            await self.store.read_range(file_id, start, end, received.extend)
        self._count(end - start)
        return bytes(received)

    def _count(self, nbytes: int) -> None:
        self.stats.requests += 1
        self.stats.bytes_downloaded += nbytes

    async def _fetch_run(
        self,
        file_id: str,
        file_size: int,
        first: int,
        last: int,
        events: dict[int, trio.Event] | None = None,
    ) -> dict[int, BlockData]:
        """Download blocks first..last (the caller holds a download slot) into the cache.

        The blocks are in ``_inflight`` for the duration (``events`` when the caller has
        already claimed them). Returns the first block's bytes (what a demand read waits
        for); the others are only in the cache, so a long run holds one block in memory."""
        if events is None:
            events = self._claim(file_id, first, last)
        start = first * self.block_size
        end = min((last + 1) * self.block_size, file_size)
        got: dict[int, BlockData] = {}
        committed = [0]
        assembly = _BlockAssembly(first, last, file_size, self.block_size)

        def arrived(index: int, data: BlockData, stored: bool) -> None:  # on the trio thread
            self.cache.commit(file_id, index, data, stored=stored)
            committed[0] += len(data)
            if index == first:
                got[index] = data
            self._release(file_id, index, events)

        def sink(view: memoryview) -> None:  # in the download's worker thread
            for index, block in assembly.add(view):
                stored = self.cache.write_block_file(file_id, index, block)
                trio.from_thread.run_sync(arrived, index, block.view, stored)

        await self.cache.reserve(end - start)
        try:
            await self.store.read_range(file_id, start, end, sink, assembly.free)
            self._count(end - start)
        finally:
            self.cache.unreserve(end - start - committed[0])
            for remaining in list(events):
                self._release(file_id, remaining, events)
        return got

    def _claim(self, file_id: str, first: int, last: int) -> dict[int, trio.Event]:
        events = {index: trio.Event() for index in range(first, last + 1)}
        for index, event in events.items():
            self._inflight[(file_id, index)] = event
        return events

    def _release(self, file_id: str, index: int, events: dict[int, trio.Event]) -> None:
        event = events.pop(index, None)
        if event is not None:
            del self._inflight[(file_id, index)]
            event.set()

    def prefetch(self, file_id: str, file_size: int, after_block: int, count: int) -> None:
        """Start background downloads of up to ``count`` blocks after ``after_block``.

        A reader calls this on every read, with a window that mostly overlaps the last one:
        the part already scanned (each block cached or being fetched, ``_covered``) is not
        scanned again. A block of it evicted since, or whose prefetch failed, is fetched by
        the read that needs it (a failed prefetch also forgets the file's scan)."""
        if self._nursery is None or count <= 0 or file_size <= 0:
            return
        self._windows[file_id] = (file_size, after_block, count)
        last_block = (file_size - 1) // self.block_size
        first = after_block + 1
        last = min(after_block + count, last_block)
        start = first
        covered = self._covered.get(file_id)
        if covered is not None and covered[0] <= first <= covered[1] + 1:
            start = covered[1] + 1
        scanned_to = self._schedule(file_id, file_size, after_block, start, last)
        self._covered[file_id] = (first, max(first - 1, scanned_to))

    def _schedule(
        self, file_id: str, file_size: int, after_block: int, index: int, last: int
    ) -> int:
        """Start prefetches of the missing blocks from ``index`` to ``last`` while download
        slots are free; returns the last block up to which every block is now cached or
        being fetched."""
        assert self._nursery is not None
        slots = int(self.slots.total_tokens)
        file_last = (file_size - 1) // self.block_size
        while index <= last:
            if self._present(file_id, index):
                index += 1
                continue
            wanted = self._run_length(index - after_block, slots)
            run_end = index
            while (
                run_end + 1 <= last
                and run_end + 1 - index < wanted
                and not self._present(file_id, run_end + 1)
            ):
                run_end += 1
            if run_end - index + 1 < wanted and run_end == last < file_last:
                # Only the window's end cuts this run short: wait until the reader moves the
                # end on, rather than top the window up a block per read (each request costs
                # a round trip: short ones made the link up to a quarter slower).
                break
            slot = object()
            try:
                self.slots.acquire_on_behalf_of_nowait(slot)
            except trio.WouldBlock:
                break
            # Claim the blocks now, so the next read does not schedule them again.
            events = self._claim(file_id, index, run_end)
            self._nursery.start_soon(
                self._prefetch_task, slot, file_id, file_size, index, run_end, events
            )
            index = run_end + 1
        return index - 1

    def _run_length(self, distance: int, slots: int) -> int:
        """Blocks per request for a run starting ``distance`` blocks ahead of the reader.

        Near the reader, one block per request: the reader waits for the head of a run, which
        arrives at one connection's speed, so the blocks it needs next each come on their own
        connection. Farther out, longer runs (fewer requests: each costs a round trip)."""
        return max(1, min(self.max_request_blocks, distance // 4))

    def _present(self, file_id: str, index: int) -> bool:
        return self.cache.contains(file_id, index) or (file_id, index) in self._inflight

    async def _prefetch_task(
        self,
        slot: object,
        file_id: str,
        file_size: int,
        first: int,
        last: int,
        events: dict[int, trio.Event],
    ) -> None:
        self.stats.prefetch_requests += 1
        try:
            await self._fetch_run(file_id, file_size, first, last, events)
        except Exception as exc:  # a failed prefetch is not an error: the read will retry
            log.debug("prefetch of %s blocks %d-%d failed: %s", file_id, first, last, exc)
            self._windows.pop(file_id, None)
            self._covered.pop(file_id, None)
        finally:
            self.slots.release_on_behalf_of(slot)
        window = self._windows.get(file_id)
        if window is not None:
            self.prefetch(file_id, *window)


class _BlockAssembly:
    """Cuts the byte stream of a ranged download into whole blocks (in its worker thread)."""

    def __init__(self, first: int, last: int, file_size: int, block_size: int) -> None:
        self.index = first
        self.last = last
        self.file_size = file_size
        self.block_size = block_size
        self.block = AlignedBlock(self._length())

    def _length(self) -> int:
        return (
            min((self.index + 1) * self.block_size, self.file_size) - self.index * self.block_size
        )

    def free(self, limit: int) -> memoryview:
        """Where the next bytes go (see ``ObjectStore.read_range``): the current block."""
        return self.block.free(limit)

    def add(self, view: memoryview) -> list[tuple[int, AlignedBlock]]:
        """Take bytes; returns the blocks they completed, as (index, block)."""
        done = []
        while view and self.index <= self.last:
            view = view[self.block.add(view) :]
            if self.block.complete:
                done.append((self.index, self.block))
                self.index += 1
                if self.index <= self.last:
                    self.block = AlignedBlock(self._length())
        return done
