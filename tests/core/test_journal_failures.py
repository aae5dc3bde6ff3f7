"""Tier 3: the write-back journal failing to write (a full cache disk), seen from the core.

A change that could not be journalled fails with ENOSPC and is journalled by the next flush,
so close() never returns for data a restart would not upload (a new file is journalled at its
first close); a failed create leaves nothing behind; a journal that cannot record a finished
upload neither loses it nor stops the mount; a new file gets one row however many flushes ask
for it at once.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from b2fs.fs.inodes import ROOT_INODE
from b2fs.transfer import staging
from b2fs.transfer.journal import Journal, JournalRow
from core.conftest import Core


def _disk_full(*_: object) -> None:
    raise OSError(errno.ENOSPC, "the cache disk is full (test)")


async def _raise_disk_full(*args: object) -> None:
    _disk_full(*args)


async def _fails_while_the_journal_cannot_insert(
    journal: Journal, step: Callable[[], Awaitable[object]]
) -> None:
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(journal, "insert", _raise_disk_full)
        with pytest.raises(OSError) as raised:
            await step()
        assert raised.value.errno == errno.ENOSPC


async def _closed_uploaded_and_forgotten(core: Core, fh: int, path: str, content: bytes) -> None:
    await core.fs.release(fh)
    await core.fs.drain()
    assert await core.read_file(path) == content
    assert await core.fs.writeback.journal.rows() == []


async def test_a_change_that_could_not_be_journalled_is_journalled_by_the_next_flush(
    core: Core,
) -> None:
    fs, journal = core.fs, core.fs.writeback.journal
    fh, _ = await fs.create(ROOT_INODE, b"f", 0o644, os.O_RDWR, 0, 0)
    await fs.write(fh, 0, b"v1")
    await fs.fsync(fh)  # on B2 and clean, still open
    assert await journal.rows() == []

    await _fails_while_the_journal_cannot_insert(journal, lambda: fs.write(fh, 2, b"v2"))
    await fs.write(fh, 2, b"v2")  # there is room again
    await fs.flush(fh)
    assert [(r.name, r.state, r.size) for r in await journal.rows()] == [("f", "pending", 4)]
    await _closed_uploaded_and_forgotten(core, fh, "/f", b"v1v2")


async def test_a_new_file_is_journalled_at_its_first_close_and_a_failure_there_is_reported(
    core: Core,
) -> None:
    """A new file's row is written when it is first closed, not when it is created (until
    then a restart has nothing to upload: a file never closed is dropped anyway)."""
    fs, journal = core.fs, core.fs.writeback.journal
    fh, _ = await fs.create(ROOT_INODE, b"new", 0o644, os.O_WRONLY, 0, 0)
    await fs.write(fh, 0, b"content")
    assert await journal.rows() == []

    await _fails_while_the_journal_cannot_insert(journal, lambda: fs.flush(fh))
    await fs.flush(fh)  # there is room again: close() returns with the file journalled
    assert [(r.name, r.state, r.size) for r in await journal.rows()] == [("new", "pending", 7)]
    await _closed_uploaded_and_forgotten(core, fh, "/new", b"content")


async def test_a_file_removed_before_its_first_close_never_touches_the_journal(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs, journal = core.fs, core.fs.writeback.journal
    changes: list[str] = []

    def recorder(change: str) -> object:
        async def record(*_: object) -> int:
            changes.append(change)
            return 1

        return record

    for change in ("insert", "update", "delete"):
        monkeypatch.setattr(journal, change, recorder(change))
    fh, _ = await fs.create(ROOT_INODE, b"scratch", 0o644, os.O_RDWR, 0, 0)
    await fs.write(fh, 0, b"temporary")
    await fs.unlink(ROOT_INODE, b"scratch")
    await fs.release(fh)
    await fs.drain()
    assert changes == []
    assert core.calls("b2_upload_file") == 0


async def test_a_staging_file_that_cannot_be_made_fails_the_close_and_journals_nothing(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new file's staging file is made with its first bytes written out (at its first
    close, for a small file): that close reports the failure; nothing is journalled."""
    fs, writeback = core.fs, core.fs.writeback
    real = staging._create_file
    monkeypatch.setattr(staging, "_create_file", _disk_full)
    fh, _ = await fs.create(ROOT_INODE, b"g", 0o644, os.O_WRONLY, 0, 0)
    await fs.write(fh, 0, b"kept in memory")
    with pytest.raises(OSError) as raised:
        await fs.flush(fh)
    assert raised.value.errno == errno.ENOSPC
    assert list(writeback.staging_dir.iterdir()) == []
    assert await writeback.journal.rows() == []
    monkeypatch.setattr(staging, "_create_file", real)
    await fs.flush(fh)  # there is room again
    await _closed_uploaded_and_forgotten(core, fh, "/g", b"kept in memory")


async def test_a_finished_upload_the_journal_cannot_record_is_recorded_later(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = core.fs.writeback.journal
    real_delete = journal.delete
    failures = 0

    async def delete_once_full(row_id: int) -> None:
        nonlocal failures
        if failures == 0:
            failures += 1
            _disk_full(row_id)
        await real_delete(row_id)

    monkeypatch.setattr(journal, "delete", delete_once_full)
    await core.write_file("/h", b"data")
    await core.fs.drain()  # the upload is done, though its row could not be deleted at once
    assert failures == 1
    rows: list[JournalRow] = await journal.rows()
    with trio.fail_after(10):
        while rows:
            await trio.sleep(0.05)
            rows = await journal.rows()
    assert await core.read_file("/h") == b"data"


async def test_a_new_files_row_is_written_once_when_two_flushes_ask_for_it_at_once(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() and fsync() (or a large upload starting) at the same moment: the second waits
    for the first one's row rather than insert another, which would outlive the upload and
    send the file again at the next mount."""
    fs, journal = core.fs, core.fs.writeback.journal
    real_insert = journal.insert
    inserts = 0

    async def insert_once_the_other_flush_waits(
        row: JournalRow, first: Callable[[], None] | None = None
    ) -> int:
        nonlocal inserts
        inserts += 1
        await trio.testing.wait_all_tasks_blocked()  # the other flush has come meanwhile
        return await real_insert(row, first)

    monkeypatch.setattr(journal, "insert", insert_once_the_other_flush_waits)
    fh, _ = await fs.create(ROOT_INODE, b"both", 0o644, os.O_WRONLY, 0, 0)
    await fs.write(fh, 0, b"closed and synced")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.flush, fh)
        nursery.start_soon(fs.fsync, fh)
    assert inserts == 1
    await _closed_uploaded_and_forgotten(core, fh, "/both", b"closed and synced")
