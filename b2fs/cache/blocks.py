"""The on-disk read cache: fixed-size blocks of immutable B2 file versions.

A B2 fileId names one exact content forever, so a block keyed by (fileId, block number) can
never be stale: no invalidation, and the cache is reused as-is after a remount.

Layout: ``<dir>/<block_size>/<first 2 hex of sha1(fileId)>/<sha1(fileId)>.<index>``. The block
size is part of the path, so a mount with another block size never misreads old blocks (the
others are removed at start). A block is written to a temporary name and renamed into place, so a
crash never leaves a torn block visible. Every block but a file's last is exactly block_size.

Bounded by ``capacity`` bytes with least-recently-used eviction, at every moment: a block
being written counts before it is written, an evicted one until its file is removed. The order
is kept in memory and rebuilt from file modification times at start. A block that cannot be
written (a full cache disk) is simply not cached. All file I/O runs in worker threads; the
in-memory index is only touched from the trio thread.

The most recently stored blocks also stay in memory (``hot_bytes``, an LRU of its own), so
that the reader a prefetch works for gets its block without a disk read (on these machines
a MiB written to the page cache in one piece costs ~2 ms of CPU; reading it back is cheap but
a thread hop each time).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import logging
import mmap
import os
import queue
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import trio
from cachetools import LRUCache

log = logging.getLogger(__name__)

BlockKey = tuple[str, int]  # (fileId, block index)
# A block's bytes: ``bytes``, or a read-only view of an :class:`AlignedBlock`'s memory, which
# readers slice without copying (a FUSE read reply is sent straight from it).
BlockData = bytes | memoryview


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    stored_bytes: int = 0
    evicted_bytes: int = 0


@functools.lru_cache(maxsize=1024)
def _digest(file_id: str) -> str:
    return hashlib.sha1(file_id.encode()).hexdigest()


class AlignedBlock:
    """A block being downloaded, assembled in page-aligned memory (an anonymous mmap).

    The cache writes it to its file with O_DIRECT as it is, and keeps ``view`` (read-only) as
    the hot copy, so the downloaded bytes are copied once in user space (from the socket's
    buffer into the block) instead of three times (into a block, out into ``bytes``, into an
    aligned buffer for the O_DIRECT write)."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.memory = mmap.mmap(-1, max(_round_up(length), _ALIGN))
        self.filled = 0

    def free(self, limit: int) -> memoryview:
        """Writable view of the next (at most ``limit``) bytes to fill, to receive in place."""
        with memoryview(self.memory) as whole:
            return whole[self.filled : min(self.length, self.filled + limit)]

    def add(self, data: memoryview) -> int:
        """Append what fits of ``data``; returns how many bytes were taken. Bytes received
        in place (``data`` a view of :meth:`free`) are only counted, not copied."""
        take = min(len(data), self.length - self.filled)
        if data.obj is not self.memory:
            self.memory[self.filled : self.filled + take] = data[:take]
        self.filled += take
        return take

    @property
    def complete(self) -> bool:
        return self.filled == self.length

    @property
    def view(self) -> memoryview:
        """The block's bytes, read-only, without a copy."""
        with memoryview(self.memory) as whole:
            return whole[: self.length].toreadonly()


class BlockCache:
    def __init__(
        self, directory: Path, capacity: int, block_size: int, *, hot_bytes: int = 32 << 20
    ) -> None:
        self.root = directory
        self.directory = directory / str(block_size)
        self.capacity = capacity
        self.block_size = block_size
        self.stats = CacheStats()
        self._lru: OrderedDict[BlockKey, int] = OrderedDict()  # key -> length, oldest first
        self._used = 0
        self._tmp_counter = 0
        self._named: set[str] = set()  # fileIds already in the digest index
        self._store_failing = False  # the last store failed (warned once until one works)
        self._last_write_error: OSError | None = None
        self._thread_lock = threading.Lock()  # _named and _tmp_counter, shared with threads
        self._made_dirs: set[Path] = set()  # subdirectories known to exist (one mkdir each)
        # The most recently stored blocks also stay in memory: a reader waiting for a block
        # being fetched, or re-reading what it just read, gets it without a disk read.
        self._hot: LRUCache[BlockKey, BlockData] = LRUCache(maxsize=hot_bytes, getsizeof=len)

    @property
    def used_bytes(self) -> int:
        return self._used

    async def open(self) -> None:
        """Create the directory, drop other block sizes and torn writes, index what is there."""
        entries = await trio.to_thread.run_sync(self._scan)
        for key, length in entries:
            self._lru[key] = length
            self._used += length
            self._named.add(key[0])
        log.debug("block cache: %d blocks, %d bytes reused", len(self._lru), self._used)
        await self._evict()

    def _scan(self) -> list[tuple[BlockKey, int]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        for other in self.root.iterdir():
            if other != self.directory and other.is_dir() and other.name.isdigit():
                shutil.rmtree(other, ignore_errors=True)
        index_path = self.directory / "index"
        names = self._read_index(index_path)
        found: list[tuple[float, BlockKey, int]] = []
        for sub in self.directory.iterdir():
            if not sub.is_dir():
                continue
            for path in sub.iterdir():
                if path.name.startswith("tmp."):
                    path.unlink(missing_ok=True)
                    continue
                digest, _, index = path.name.partition(".")
                file_id = names.get(digest)
                if file_id is None or not index.isdigit():
                    path.unlink(missing_ok=True)
                    continue
                st = path.stat()
                found.append((st.st_mtime, (file_id, int(index)), st.st_size))
        found.sort()
        return [(key, length) for _, key, length in found]

    @staticmethod
    def _read_index(path: Path) -> dict[str, str]:
        """The fileIds behind the digests in file names (one 'digest fileId' line each)."""
        names: dict[str, str] = {}
        with contextlib.suppress(FileNotFoundError), path.open() as f:
            for line in f:
                digest, _, file_id = line.rstrip("\n").partition(" ")
                if file_id:
                    names[digest] = file_id
        return names

    def _path(self, key: BlockKey) -> Path:
        digest = _digest(key[0])
        return self.directory / digest[:2] / f"{digest}.{key[1]}"

    def contains(self, file_id: str, index: int) -> bool:
        return (file_id, index) in self._lru

    async def read(
        self, file_id: str, index: int, offset: int = 0, length: int = -1
    ) -> BlockData | None:
        """Bytes of a cached block (from ``offset``, at most ``length``), or None if not cached."""
        key = (file_id, index)
        if key not in self._lru:
            self.stats.misses += 1
            return None
        self._lru.move_to_end(key)
        if length < 0:
            length = self._lru[key] - offset
        hot = self._hot.get(key)
        if hot is not None:
            self.stats.hits += 1
            return hot[offset : offset + length]
        path = self._path(key)
        try:
            data = await trio.to_thread.run_sync(_pread, path, offset, length)
        except FileNotFoundError:
            # Removed behind our back (someone cleaned the cache directory): a miss.
            self._forget(key)
            self.stats.misses += 1
            return None
        self.stats.hits += 1
        return data

    async def store(self, file_id: str, index: int, data: bytes) -> None:
        """Add a whole block (the last block of a file may be short)."""
        key = (file_id, index)
        if key in self._lru or len(data) > self.capacity:
            return
        self._hot[key] = data
        self._tmp_counter += 1
        tmp_name = f"tmp.{os.getpid()}.{self._tmp_counter}"

        def put(path: Path, new_file_id: str | None) -> bool:
            self._write(path, tmp_name, new_file_id, data)
            return True

        await self._admit(key, len(data), put)

    async def adopt_file(
        self,
        file_id: str,
        index: int,
        source: Path,
        length: int,
        first: Callable[[], None] | None = None,
    ) -> bool:
        """Add a whole block that a file holds already, moving the file in rather than
        copying it (the staging file of an uploaded one-block file: creating and deleting a
        file per small file made ext4's inode allocator the largest CPU cost of copying many
        small files). False if it was not moved: the caller still owns ``source``. ``first``
        is called in the worker thread before the move, if the cache gets that far (the
        caller's own work for that file, done in the same trip)."""
        key = (file_id, index)
        if key in self._lru or length > self.capacity:
            return False

        def put(path: Path, new_file_id: str | None) -> bool:
            if first is not None:
                first()
            if os.stat(source).st_size != length:
                return False  # holes at its end, say: not the block as it is
            self._make_parent(path)
            if new_file_id is not None:
                self._remember_name(new_file_id)
            os.replace(source, path)
            return True

        return await self._admit(key, length, put)

    async def _admit(
        self, key: BlockKey, length: int, put: Callable[[Path, str | None], bool]
    ) -> bool:
        """Make room for a block, have ``put(path, new_file_id)`` create its file (in a worker
        thread; False: it declined), and index it; False if the file was not made."""
        file_id = key[0]
        # Counted before anything is awaited, so that concurrent stores make room for each
        # other too (see _evict).
        self._used += length
        new_name = False
        try:
            await self._evict()
            new_name = file_id not in self._named
            self._named.add(file_id)
            made = await trio.to_thread.run_sync(
                put, self._path(key), file_id if new_name else None
            )
        except OSError as exc:
            # A cache is optional: a full or failing cache disk only means this block is not
            # kept (the caller has its bytes anyway).
            self._used -= length
            if new_name:
                self._named.discard(file_id)
            if not self._store_failing:
                log.warning("block cache: cannot store blocks (%s); reading without caching", exc)
            self._store_failing = True
            return False
        except BaseException:
            self._used -= length
            raise
        if not made:
            self._used -= length
            if new_name:
                self._named.discard(file_id)
            return False
        self._store_failing = False
        if key in self._lru:
            self._used -= length  # stored meanwhile by another task: one copy on disk
        else:
            self._lru[key] = length
            self.stats.stored_bytes += length
        return True

    # -- blocks written by download threads (see transfer/prefetch.py) ------------------------

    async def reserve(self, nbytes: int) -> None:
        """Count ``nbytes`` that download threads are about to write, evicting to make room."""
        self._used += nbytes
        await self._evict()

    def unreserve(self, nbytes: int) -> None:
        """Give back reserved bytes that were not committed (a download that failed)."""
        self._used -= nbytes

    def write_block_file(self, file_id: str, index: int, block: AlignedBlock) -> bool:
        """Write a block's file, from any thread; False if it could not be written (the
        caller then commits it as not stored). Its bytes must have been reserved."""
        key = (file_id, index)
        with self._thread_lock:
            self._tmp_counter += 1
            tmp_name = f"tmp.{os.getpid()}.{threading.get_ident()}.{self._tmp_counter}"
            new_name = file_id not in self._named
            self._named.add(file_id)
        try:
            self._write(self._path(key), tmp_name, file_id if new_name else None, block)
        except OSError as exc:
            if new_name:
                with self._thread_lock:
                    self._named.discard(file_id)
            self._last_write_error = exc
            return False
        return True

    def commit(self, file_id: str, index: int, data: BlockData, *, stored: bool) -> None:
        """Index a block a download thread wrote (on the trio thread); its bytes were
        reserved. A block not stored, or already there, gives its reservation back."""
        key = (file_id, index)
        if not stored:
            self._used -= len(data)
            if not self._store_failing:
                log.warning(
                    "block cache: cannot store blocks (%s); reading without caching",
                    self._last_write_error,
                )
            self._store_failing = True
            return
        self._store_failing = False
        if key in self._lru:
            self._used -= len(data)
            return
        self._lru[key] = len(data)
        self._hot[key] = data
        self.stats.stored_bytes += len(data)

    def _write(
        self, path: Path, tmp_name: str, new_file_id: str | None, data: bytes | AlignedBlock
    ) -> None:
        self._make_parent(path)
        tmp = path.parent / tmp_name
        try:
            _write_block(tmp, data)
            if new_file_id is not None:
                self._remember_name(new_file_id)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _make_parent(self, path: Path) -> None:
        """In a worker thread: make a block's subdirectory, once (a mkdir that fails with
        EEXIST for every small file stored is a system call and an exception each)."""
        parent = path.parent
        if parent not in self._made_dirs:
            parent.mkdir(exist_ok=True)
            self._made_dirs.add(parent)

    def _remember_name(self, file_id: str) -> None:
        # Appending a short line is atomic enough: a torn last line is skipped when read.
        digest = _digest(file_id)
        with (self.directory / "index").open("a") as f:
            f.write(f"{digest} {file_id}\n")

    async def _evict(self) -> None:
        """Remove least recently used blocks until ``_used`` fits the capacity.

        ``_used`` counts every block on disk or being written, and a victim's bytes only once
        its file is gone: the directory never holds more than ``capacity``. (Concurrent
        evictions may then remove a little more than strictly needed.)"""
        victims: list[Path] = []
        freed = 0
        while self._lru and self._used - freed > self.capacity:
            key, length = self._lru.popitem(last=False)
            self._hot.pop(key, None)
            freed += length
            self.stats.evicted_bytes += length
            victims.append(self._path(key))
        if victims:
            try:
                await trio.to_thread.run_sync(_unlink_all, victims)
            finally:
                self._used -= freed

    def _forget(self, key: BlockKey) -> None:
        self._hot.pop(key, None)
        length = self._lru.pop(key, None)
        if length is not None:
            self._used -= length

    async def compact_index(self) -> None:
        """Rewrite the digest index with only the fileIds still cached (at unmount)."""
        file_ids = {file_id for file_id, _ in self._lru}
        self._named = set(file_ids)
        await trio.to_thread.run_sync(self._rewrite_index, file_ids)

    def _rewrite_index(self, file_ids: set[str]) -> None:
        tmp = self.directory / "index.tmp"
        with tmp.open("w") as f:
            for file_id in sorted(file_ids):
                f.write(f"{_digest(file_id)} {file_id}\n")
        os.replace(tmp, self.directory / "index")


_ALIGN = 4096
_direct = {"works": hasattr(os, "O_DIRECT")}
_idle_buffers: queue.SimpleQueue[mmap.mmap] = queue.SimpleQueue()
IDLE_BUFFERS = 8


def _round_up(length: int) -> int:
    return -(-length // _ALIGN) * _ALIGN


def _write_block(path: Path, data: bytes | AlignedBlock) -> None:
    """Write a new block file, bypassing the page cache when the filesystem allows.

    On these machines a block written to the page cache in one piece costs about 2 ms of CPU
    per MiB (481 MB per CPU-second: a 1 MiB write makes a 1 MiB folio, and those are the
    costly ones, see ``transfer.staging.WRITE_PIECE``), which made the cache the largest CPU
    cost of a cold read; an O_DIRECT write from a reused aligned buffer measured 3,047 MB per
    CPU-second, and leaves the page cache alone. The block is padded to the
    alignment and truncated back. An :class:`AlignedBlock` is written from its own memory
    (zero past the block: a new mapping starts zeroed); ``bytes`` are copied into an aligned
    buffer first (pooled, a few idle ones kept, not kept per thread). Filesystems without
    O_DIRECT (tmpfs) get a normal write."""
    if _direct["works"]:
        if isinstance(data, AlignedBlock):
            if _write_direct(path, data.memory, data.length):
                return
        else:
            size = _round_up(len(data))
            try:
                buffer = _idle_buffers.get_nowait()
            except queue.Empty:
                buffer = mmap.mmap(-1, max(size, _ALIGN))
            if len(buffer) < size:
                buffer = mmap.mmap(-1, size)
            try:
                buffer[: len(data)] = data
                buffer[len(data) : size] = bytes(size - len(data))
                if _write_direct(path, buffer, len(data)):
                    return
            finally:
                if _idle_buffers.qsize() < IDLE_BUFFERS:
                    _idle_buffers.put(buffer)
    with path.open("wb") as f:
        f.write(data.view if isinstance(data, AlignedBlock) else data)


def _write_direct(path: Path, buffer: mmap.mmap, length: int) -> bool:
    """The O_DIRECT write of ``buffer[:length]`` (zero-padded to the alignment in ``buffer``);
    False when the filesystem refuses O_DIRECT (then never again)."""
    size = _round_up(length)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        _direct["works"] = False
        return False
    try:
        with memoryview(buffer) as view:
            written = os.write(fd, view[:size])
        if written != size:
            raise OSError(errno.EIO, f"short write to the block cache ({written} bytes)")
        if size != length:
            os.ftruncate(fd, length)
    finally:
        os.close(fd)
    return True


def _pread(path: Path, offset: int, length: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _unlink_all(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)
