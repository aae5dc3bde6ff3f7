"""Tier 3: small writes that continue one another are kept in memory, then written in one piece.

What a user relies on: `tar` writes in 10 KiB records, and each write was a trip to a worker
thread; now a run of small writes reaches the staging file in one write, before close()
returns, in the same trip to a worker thread that makes a new staging file. Every byte a
write acknowledged is read back, in the order the writes were made, survives a full disk,
and the memory this takes stays within its budget.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from b2fs.fs.inodes import ROOT_INODE
from b2fs.transfer import staging
from core.conftest import Core

RECORD = 10 * 1024


@contextlib.contextmanager
def counting_trips(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """The functions sent to worker threads (``trio.to_thread.run_sync``) meanwhile."""
    trips: list[object] = []
    real_run_sync = trio.to_thread.run_sync

    async def counted(fn: object, *args: object, **kwargs: object) -> object:
        trips.append(fn)
        return await real_run_sync(fn, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as patch:
        patch.setattr(trio.to_thread, "run_sync", counted)
        yield trips


@pytest.fixture
def staging_writes(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """(offset, length) of every write into a staging file."""
    writes: list[tuple[int, int]] = []
    real = staging._pwrite_all

    def counted(fd: int, data: staging.BlockData, offset: int) -> None:
        writes.append((offset, len(data)))
        real(fd, data, offset)

    monkeypatch.setattr(staging, "_pwrite_all", counted)
    return writes


async def test_a_run_of_small_writes_reaches_the_staging_file_in_one_write_before_close(
    core: Core, staging_writes: list[tuple[int, int]]
) -> None:
    fs = core.fs
    records = [os.urandom(RECORD) for _ in range(10)]
    fh, _ = await fs.create(ROOT_INODE, b"archive.py", 0o644, os.O_WRONLY, 0, 0)
    for i, record in enumerate(records):
        assert await fs.write(fh, i * RECORD, record) == RECORD
    assert staging_writes == []
    assert list(fs.writeback.staging_dir.iterdir()) == []  # made with the first bytes out
    await fs.flush(fh)  # close() returns with the bytes in the staging file and journalled
    assert staging_writes == [(0, 10 * RECORD)]
    staged = fs.writeback.by_name[(core.bucket.id, "archive.py")]
    assert staged.file.path.read_bytes() == b"".join(records)
    assert fs.writeback.write_budget.used == 0
    await fs.release(fh)
    await fs.drain()
    assert await core.read_file("/archive.py") == b"".join(records)


async def test_what_reads_or_changes_the_file_sees_every_write_in_order(
    core: Core, staging_writes: list[tuple[int, int]]
) -> None:
    fs = core.fs
    fh, _ = await fs.create(ROOT_INODE, b"f", 0o644, os.O_RDWR, 0, 0)
    await fs.write(fh, 0, b"a" * 100)
    await fs.write(fh, 100, b"b" * 100)
    assert await fs.read(fh, 50, 100) == b"a" * 50 + b"b" * 50  # a read writes the run first
    await fs.write(fh, 200, b"c" * 100)
    await fs.write(fh, 150, b"d" * 100)  # goes back: the run is written first, then this
    await fs.write(fh, 250, b"e" * 10)
    ino = await core.ino("/f")
    await fs.setattr(ino, size=255)  # a truncation writes the run first too
    assert staging_writes == [(0, 200), (200, 100), (150, 100), (250, 10)]
    await fs.flush(fh)
    await fs.release(fh)
    await fs.drain()
    assert await core.read_file("/f") == b"a" * 100 + b"b" * 50 + b"d" * 100 + b"e" * 5


async def test_small_writes_kept_in_memory_stay_within_the_budget(
    core: Core, staging_writes: list[tuple[int, int]]
) -> None:
    fs = core.fs
    budget = fs.writeback.write_budget
    budget.limit = 2 * RECORD
    handles = []
    for name in (b"one", b"two"):
        fh, _ = await fs.create(ROOT_INODE, name, 0o644, os.O_WRONLY, 0, 0)
        handles.append(fh)
    most = 0
    for i in range(3):
        for fh in handles:
            await fs.write(fh, i * RECORD, bytes([65 + i]) * RECORD)
            assert budget.used <= budget.limit
            most = max(most, budget.used)
    assert most == budget.limit  # writes were kept up to the budget, and not beyond
    assert len(staging_writes) == 5  # the rest went to disk (each file's run first)
    for fh in handles:
        await fs.flush(fh)
        await fs.release(fh)
    assert budget.used == 0
    await fs.drain()
    for name in ("one", "two"):
        assert await core.read_file(f"/{name}") == b"A" * RECORD + b"B" * RECORD + b"C" * RECORD


async def test_a_large_write_reaches_the_staging_file_in_pieces_of_at_most_write_piece(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 1 MiB write at a 1 MiB boundary would make 1 MiB page-cache folios, which cost ten
    times as much to fill on these machines (staging.WRITE_PIECE): it goes in pieces."""
    fs = core.fs
    calls: list[tuple[int, int]] = []
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append((offset, len(data)))
        return real_pwrite(fd, data, offset)

    content = os.urandom((2 << 20) + 100)
    fh, _ = await fs.create(ROOT_INODE, b"big", 0o644, os.O_WRONLY, 0, 0)
    monkeypatch.setattr(os, "pwrite", pwrite)
    assert await fs.write(fh, 0, content[: 1 << 20]) == 1 << 20
    assert await fs.write(fh, 1 << 20, content[1 << 20 :]) == len(content) - (1 << 20)
    monkeypatch.setattr(os, "pwrite", real_pwrite)
    assert max(length for _, length in calls) == staging.WRITE_PIECE <= 256 << 10
    position = 0
    for offset, length in calls:  # in order, each piece where the last one ended
        assert offset == position
        position += length
    assert position == len(content)
    staged = fs.writeback.by_name[(core.bucket.id, "big")]
    assert staged.file.path.read_bytes() == content
    await fs.flush(fh)
    await fs.release(fh)
    await fs.drain()
    assert await core.read_file("/big") == content


async def test_a_run_that_cannot_be_written_stays_in_memory_and_close_reports_it(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = core.fs
    real = staging._pwrite_all

    def disk_full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "the cache disk is full (test)")

    fh, _ = await fs.create(ROOT_INODE, b"kept", 0o644, os.O_WRONLY, 0, 0)
    await fs.write(fh, 0, b"acknowledged")
    monkeypatch.setattr(staging, "_pwrite_all", disk_full)
    with pytest.raises(OSError) as raised:
        await fs.flush(fh)
    assert raised.value.errno == errno.ENOSPC
    assert await fs.writeback.journal.rows() == []  # not journalled without its bytes
    monkeypatch.setattr(staging, "_pwrite_all", real)
    await fs.flush(fh)  # there is room again
    await fs.release(fh)
    await fs.drain()
    assert await core.read_file("/kept") == b"acknowledged"


async def test_an_uploaded_small_files_staging_file_is_closed_and_moved_in_one_trip(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Releasing an uploaded file of one block closes its staging file and moves it into
    the block cache as that block in one trip to a worker thread (two before: the close
    had its own; a trip costs more CPU than what it runs, once per file copied in)."""
    fs = core.fs
    data = os.urandom(3 * RECORD)
    fh, _ = await fs.create(ROOT_INODE, b"small", 0o644, os.O_RDWR, 0, 0)
    await fs.write(fh, 0, data)
    await fs.fsync(fh)  # on B2 now; the open handle keeps the entry
    entry = fs.writeback.by_name[(core.bucket.id, "small")]
    staging_path, fd = entry.file.path, entry.file.fd
    assert os.readlink(f"/proc/self/fd/{fd}") == str(staging_path)
    with counting_trips(monkeypatch) as trips:
        await fs.release(fh)
    assert len(trips) == 1
    assert not staging_path.exists()
    uploaded = entry.uploaded
    assert uploaded is not None and uploaded.file_id
    assert fs.fetcher.cache.contains(uploaded.file_id, 0)
    with pytest.raises(OSError):  # the staging file's descriptor is closed
        assert os.readlink(f"/proc/self/fd/{fd}") != str(staging_path)
    assert await core.read_file("/small") == data


async def test_closing_a_new_small_file_writes_it_out_and_journals_it_in_one_trip(
    core: Core, monkeypatch: pytest.MonkeyPatch, staging_writes: list[tuple[int, int]]
) -> None:
    """close() of a new small file makes its staging file, writes the bytes kept in memory
    and commits its journal row in one trip to a worker thread (two before: the bytes had
    their own, and close() waited for both, once per file `cp` or `tar` writes)."""
    fs = core.fs
    fh, _ = await fs.create(ROOT_INODE, b"new", 0o644, os.O_WRONLY, 0, 0)
    await fs.write(fh, 0, b"kept until close")
    with counting_trips(monkeypatch) as trips:
        await fs.flush(fh)
    assert len(trips) == 1
    assert staging_writes == [(0, 16)]
    staged = fs.writeback.by_name[(core.bucket.id, "new")]
    assert staged.file.path.read_bytes() == b"kept until close"
    assert [row.name for row in await fs.writeback.journal.rows()] == ["new"]
    await fs.release(fh)
    await fs.drain()
    assert await core.read_file("/new") == b"kept until close"


async def test_drain_returns_once_uploaded_files_are_released(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unmount (drain) waits for what follows an upload too: the journal row deleted and
    the staging file moved into the block cache. It returned once B2 had the file, and the
    staging file was then found as a stray at the next start."""
    fs = core.fs
    cache = fs.fetcher.cache
    real_adopt = cache.adopt_file
    moving = trio.Event()
    may_move = trio.Event()

    async def held_adopt(*args: object, **kwargs: object) -> bool:
        moving.set()
        await may_move.wait()
        return await real_adopt(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(cache, "adopt_file", held_adopt)
    await core.write_file("/released", b"closed, uploaded, then released")
    drained = trio.Event()

    async def drain() -> None:
        await fs.drain()
        drained.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drain)
        await moving.wait()  # uploaded; its release is under way
        await trio.testing.wait_all_tasks_blocked()
        assert not drained.is_set()
        may_move.set()
    assert list(fs.writeback.staging_dir.iterdir()) == []
    assert await fs.writeback.journal.rows() == []
    assert await core.read_file("/released") == b"closed, uploaded, then released"
