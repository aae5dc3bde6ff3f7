"""Tier 3: the filesystem core's rules, checked by counting what it asks of B2."""

from __future__ import annotations

import errno
import logging
import os
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from b2fs.b2.errors import B2ServiceUnavailable
from b2fs.fs.errors import FsError
from b2fs.fs.inodes import ROOT_INODE
from b2fs.objectstore import INFO_GID, INFO_MODE, INFO_MTIME, INFO_UID, RemoteFile
from b2fs.transfer.writeback import Entry, WriteBack
from core.conftest import Core, make_core


class InFlight:
    """Counts how many calls of one method are under way at once (the most, while ``when``)."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        target: object,
        name: str,
        when: Callable[[], bool] = lambda: True,
    ) -> None:
        self.now = self.most = 0
        original = getattr(target, name)

        async def counted(*args: object, **kwargs: object) -> object:
            self.now += 1
            if when():
                self.most = max(self.most, self.now)
            try:
                return await original(*args, **kwargs)
            finally:
                self.now -= 1

        monkeypatch.setattr(target, name, counted)


async def test_lookup_counts_and_forget(core: Core) -> None:
    await core.upload("a", b"1")
    first = await core.fs.lookup(ROOT_INODE, b"a")
    second = await core.fs.lookup(ROOT_INODE, b"a")
    assert first.ino == second.ino
    inode = core.fs.inode(first.ino)
    assert inode.lookups == 2
    core.fs.forget(first.ino, 2)
    assert inode.lookups == 0
    # Still in the tree (the listing keeps it) until it is removed.
    assert core.fs.inodes.get(first.ino) is inode
    await core.fs.unlink(ROOT_INODE, b"a")
    assert core.fs.inodes.get(first.ino) is None


async def test_negative_and_positive_lookups_come_from_one_listing(core: Core) -> None:
    for i in range(5):
        await core.upload(f"f{i}", b"x")
    before = core.calls("b2_list_file_names")
    for i in range(5):
        await core.fs.lookup(ROOT_INODE, f"f{i}".encode())
    for name in (b"missing", b"other"):
        with pytest.raises(FsError) as raised:
            await core.fs.lookup(ROOT_INODE, name)
        assert raised.value.errno == errno.ENOENT
    assert core.calls("b2_list_file_names") - before == 1


async def test_a_directory_of_more_than_a_thousand_names_is_listed_in_one_call(
    core: Core,
) -> None:
    """Listings ask for B2's largest page (10,000 names; B2 answers 100 when not told, and
    bills per 1,000): a folder of 1,001 names costs one list call, attributes included."""
    for i in range(1001):
        await core.upload(f"big/f{i:04d}", b"x")
    big = await core.ino("big")  # lists the root
    before = core.calls("b2_list_file_names")
    fh = await core.fs.opendir(big)
    entries = await core.fs.readdir(fh, 0)
    await core.fs.releasedir(fh)
    assert len(entries) == 1001 and all(attrs.size == 1 for _, attrs, _ in entries)
    assert core.calls("b2_list_file_names") - before == 1


async def test_listing_expires_after_dir_timeout(core: Core) -> None:
    with pytest.raises(FsError):
        await core.fs.lookup(ROOT_INODE, b"later")
    await core.upload("later", b"1")  # behind the mount's back
    with pytest.raises(FsError):
        await core.fs.lookup(ROOT_INODE, b"later")  # still the cached listing
    core.fs.root.listed_at -= core.fs.options.dir_timeout
    assert (await core.fs.lookup(ROOT_INODE, b"later")).size == 1


async def test_readdir_offsets_stay_valid_while_the_directory_changes(core: Core) -> None:
    for i in range(10):
        await core.upload(f"n{i}", b"x")
    fh = await core.fs.opendir(ROOT_INODE)
    first = await core.fs.readdir(fh, 0)
    names = [name for name, _, _ in first[:4]]
    await core.fs.unlink(ROOT_INODE, b"n5")
    await core.write_file("/n0a", b"new")
    rest = await core.fs.readdir(fh, first[3][2])
    names += [name for name, _, _ in rest]
    assert names == [f"n{i}".encode() for i in range(10)]  # none skipped or repeated
    await core.fs.releasedir(fh)


async def test_readdir_in_batches_gives_every_name_once_and_makes_only_the_batch(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kernel takes a few dozen entries per call: a call makes the attributes of its
    batch only, not of every name after its offset (quadratic in a big directory)."""
    for i in range(25):
        await core.upload(f"b{i:02d}", b"x")
    made = [0]
    attributes = core.fs.attributes

    def counted(inode: object) -> object:
        made[0] += 1
        return attributes(inode)  # type: ignore[arg-type]

    monkeypatch.setattr(core.fs, "attributes", counted)
    fh = await core.fs.opendir(ROOT_INODE)
    names, start, calls = [], 0, 0
    while batch := await core.fs.readdir(fh, start, 10):
        assert len(batch) <= 10
        names += [name for name, _, _ in batch]
        start, calls = batch[-1][2], calls + 1
    await core.fs.releasedir(fh)
    assert names == [f"b{i:02d}".encode() for i in range(25)]
    assert calls == 3 and made[0] == 25


async def test_a_stale_listing_does_not_bring_back_a_removed_name(core: Core) -> None:
    await core.upload("victim", b"1")
    await core.fs.lookup(ROOT_INODE, b"victim")
    core.fs.root.listed_at -= core.fs.options.dir_timeout

    async def unlink_during_listing() -> None:
        await core.fs.unlink(ROOT_INODE, b"victim")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(core.fs.lister.refresh, core.fs.root)
        nursery.start_soon(unlink_during_listing)
    with pytest.raises(FsError):
        await core.fs.lookup(ROOT_INODE, b"victim")


async def test_written_file_is_visible_before_its_upload(core: Core) -> None:
    core.fs.writeback.settings = core.fs.writeback.settings.__class__(
        **{**core.fs.writeback.settings.__dict__, "delay": 3600.0}
    )
    await core.write_file("/local", b"not on B2 yet")
    assert core.calls("b2_upload_file") == 0
    core.fs.root.listed_at -= core.fs.options.dir_timeout  # a fresh listing keeps it
    assert (await core.fs.lookup(ROOT_INODE, b"local")).size == 13
    assert await core.read_file("/local") == b"not on B2 yet"
    await core.fs.drain()  # unmount does not wait for the delay
    assert core.calls("b2_upload_file") == 1


async def test_sequential_reads_grow_the_prefetch_window_and_a_seek_resets_it(core: Core) -> None:
    block = core.fs.cache.block_size
    await core.upload("big", bytes(40 * block))
    fh, _ = await core.fs.open(await core.ino("big"), 0)
    handle = core.fs.handles.files[fh]
    windows = []
    for index in range(6):
        await core.fs.read(fh, index * block, block)
        windows.append(handle.readahead.window_blocks)
    # 1, then one block per download slot (16) at the second block in a row, doubling
    assert windows == [1, 16, 32, 64, 128, 128]
    await core.fs.read(fh, 30 * block + 17, 100)  # a seek
    assert handle.readahead.window_blocks == 0
    await core.fs.release(fh)


async def test_a_moving_window_is_topped_up_in_full_runs_not_a_block_per_read(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the window is under way, each read moves its end on by one block: that block is
    fetched with the next ones in one request of max_request_blocks, not on its own (each
    request costs a round trip; a block per read made the cold read of workload 1 up to a
    quarter slower, with twice the requests)."""
    fetcher = core.fs.fetcher
    block = fetcher.block_size
    requests: list[tuple[int, int]] = []  # (first block, last block) of each download

    async def never_done(file_id: str, start: int, end: int, *_: object) -> None:
        requests.append((start // block, (end - 1) // block))
        await trio.sleep_forever()

    monkeypatch.setattr(fetcher.store, "read_range", never_done)
    monkeypatch.setattr(fetcher, "slots", trio.CapacityLimiter(1000))
    size = 1000 * block
    async with trio.open_nursery() as nursery:
        monkeypatch.setattr(fetcher, "_nursery", nursery)
        fetcher.prefetch("a-file-id", size, 0, 128)
        await trio.testing.wait_all_tasks_blocked()
        window = len(requests)
        assert max(last for _, last in requests) == 128
        for reader in range(1, 33):  # the reader moves on 32 blocks, one read each
            fetcher.prefetch("a-file-id", size, reader, 128)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    runs = sorted(requests[window:])
    assert runs == [(129 + k * 8, 136 + k * 8) for k in range(4)]


async def test_the_kernel_keeps_its_cached_pages_while_the_file_id_is_unchanged(
    core: Core,
) -> None:
    """keep_cache (issue 7): a second open of an unchanged B2 version lets the kernel keep
    the pages it read (the warm read of workload 2); a new version uploaded by another
    client drops them. (Writes through this mount pass through those pages, so they keep
    them: Filesystem.write.)"""
    await core.upload("doc", b"first")
    ino = await core.ino("doc")

    async def opened_keeping() -> bool:
        fh, keep = await core.fs.open(ino, os.O_RDONLY)
        await core.fs.release(fh)
        return keep

    assert [await opened_keeping(), await opened_keeping()] == [False, True]
    await core.upload("doc", b"second, from another client")
    core.fs.root.listed_at -= core.fs.options.dir_timeout
    await core.fs.lookup(ROOT_INODE, b"doc")
    assert await opened_keeping() is False
    assert await opened_keeping() is True


async def test_random_reads_fetch_only_the_blocks_they_touch(core: Core) -> None:
    block = core.fs.cache.block_size
    await core.upload("big", bytes(64 * block))
    fh, _ = await core.fs.open(await core.ino("big"), 0)
    stats = core.fs.fetcher.stats
    before = stats.bytes_downloaded
    offsets = [37, 11, 50, 3, 22, 60, 45]
    for index in offsets:
        await core.fs.read(fh, index * block + 100, 4096)
    assert stats.bytes_downloaded - before == len(offsets) * block
    assert stats.prefetch_requests == 0
    await core.fs.release(fh)


async def test_concurrent_readers_of_a_block_share_one_download(core: Core) -> None:
    block = core.fs.cache.block_size
    await core.upload("shared", bytes(range(256)) * (block // 256))
    fh, _ = await core.fs.open(await core.ino("shared"), 0)
    before = core.calls("b2_download_file_by_id")
    results: list[bytes] = []

    async def reader(offset: int) -> None:
        results.append(await core.fs.read(fh, offset, 10))

    async with trio.open_nursery() as nursery:
        for offset in range(0, 2000, 100):
            nursery.start_soon(reader, offset)
    assert core.calls("b2_download_file_by_id") - before == 1
    assert len(results) == 20
    await core.fs.release(fh)


async def test_a_success_after_an_outage_retries_the_waiting_uploads_at_once(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Backoffs far longer than the test: only the retry a success triggers can land it.
    monkeypatch.setattr("b2fs.transfer.writeback.RETRY_DELAYS", (3600.0,))
    core.emulator.faults.script("b2_upload_file", "503", count=2)  # both client attempts
    await core.write_file("/first", b"waited out the outage")
    while core.fs.writeback.pending[0].failure is None:
        await core.fs.writeback.pending[0].progress.wait()
    await core.write_file("/second", b"B2 is back")
    with trio.fail_after(30):
        await core.fs.drain()
    assert await core.client.download_bytes_by_name("core-bucket", "first") == (
        b"waited out the outage"
    )


async def test_while_b2_fails_uploads_one_probes_at_a_time_and_all_go_when_it_answers(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An outage with files queued: once an upload has failed for a passing reason (503
    after the client's own retries), the other files wait without calling B2 while one at
    a time probes; an fsync does not wait (it hears of the failure); the first success lets
    every file go."""
    gate = core.fs.writeback.gate
    uploads = InFlight(monkeypatch, core.fs.store, "upload_file", when=lambda: gate.down)
    core.emulator.faults.add("upload:503")
    await core.write_file("/first", b"first")
    with trio.fail_after(30):
        while not gate.down:
            await gate.wait_changed()
        calls_when_down = core.calls("b2_upload_file")
        for number in range(20):
            await core.write_file(f"/held{number:02d}", f"held {number}".encode())
        while gate.probes_failed < 2:
            await gate.wait_changed()
    probes = gate.probes_failed + 1  # the one under way or next may have called B2 already
    assert uploads.most == 1
    assert core.calls("b2_upload_file") - calls_when_down <= 2 * probes  # 2 client tries each

    fh, _ = await core.fs.create(ROOT_INODE, b"synced", 0o644, 0o1, 0, 0)
    await core.fs.write(fh, 0, b"synced")
    with trio.fail_after(30), pytest.raises(B2ServiceUnavailable):  # EIO through fuse_ops
        await core.fs.fsync(fh)
    await core.fs.release(fh)

    core.emulator.faults.clear()
    with trio.fail_after(60):
        await core.fs.drain()
    assert not gate.down
    names = {v.file_name async for v in core.client.list_file_names(core.bucket.id)}
    assert names == {"first", "synced"} | {f"held{number:02d}" for number in range(20)}


async def test_a_probe_that_falls_back_from_a_large_upload_to_one_piece_goes_through(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file promoted to a large upload while B2 was failing, then cut below two parts: its
    attempt, the gate's probe, sends it in one piece instead, passing the gate a second
    time, which must not wait for the probe it is itself (every held upload would wait)."""
    monkeypatch.setattr("b2fs.transfer.writeback.RETRY_DELAYS", (3600.0,))
    gate = core.fs.writeback.gate
    core.emulator.faults.script("b2_upload_file", "503", count=2)  # both client tries
    await core.write_file("/trigger", b"fails once")
    with trio.fail_after(30):
        while not gate.down:
            await gate.wait_changed()
    fh, attrs = await core.fs.create(ROOT_INODE, b"big", 0o644, 0o1, 0, 0)
    block = os.urandom(1 << 20)
    for index in range(16):  # a sequential writer at the threshold: promoted
        await core.fs.write(fh, index << 20, block)
    await trio.testing.wait_all_tasks_blocked()  # its attempt went large, then to the gate
    (big,) = [e for e in core.fs.writeback.pending if e.row.name == "big"]
    assert big.attempt_large and big.attempt is not None
    await core.fs.setattr(attrs.ino, size=1000)
    await core.fs.flush(fh)
    await core.fs.release(fh)
    with trio.fail_after(30):
        await core.fs.drain()
    assert await core.client.download_bytes_by_name("core-bucket", "big") == block[:1000]
    assert not gate.down


async def test_the_pending_and_failing_uploads_are_kept_right_through_every_change(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write-back layer keeps which entries are pending and failing as they change (so
    that nothing per upload looks at every entry): after each step, its views must equal
    what every entry's own state says."""
    writeback = core.fs.writeback

    def assert_kept_right() -> None:
        pending = [e for e in writeback.entries.values() if e.dirty and not e.discarded]
        assert set(writeback.pending) == set(pending)
        assert set(writeback.failing) == {e for e in pending if e.failure is not None}

    def entry(name: str) -> Entry:
        (found,) = [e for e in writeback.entries.values() if e.row.name == name]
        return found

    monkeypatch.setattr("b2fs.transfer.writeback.RETRY_DELAYS", (3600.0,))
    core.emulator.faults.script("b2_upload_file", "503", count=6)  # two client tries each
    for name in ("kept", "removed", "reopened"):
        await core.write_file(f"/{name}", name.encode())
        assert_kept_right()
    with trio.fail_after(30):
        for failing in writeback.pending:
            while failing.failure is None:
                await failing.progress.wait()
    assert len(writeback.failing) == 3
    assert_kept_right()
    await core.fs.unlink(ROOT_INODE, b"removed")  # discarded: neither pending nor failing
    assert_kept_right()
    assert len(writeback.failing) == 2
    fh, _ = await core.fs.open(await core.ino("/reopened"), os.O_WRONLY)  # a writer holds it
    await core.write_file("/fine", b"B2 is back")  # its success retries the idle failed ones
    assert_kept_right()
    kept = entry("kept")
    with trio.fail_after(30):
        while kept.dirty:
            await kept.progress.wait()
    assert writeback.failing == [entry("reopened")]  # held by a writer: not retried yet
    assert_kept_right()
    await core.fs.write(fh, 0, b"changed while held")
    await core.fs.flush(fh)
    await core.fs.release(fh)
    with trio.fail_after(30):
        await core.fs.drain()
    assert_kept_right()
    assert writeback.pending == [] and writeback.failing == []
    assert await core.read_file("/reopened") == b"changed while held"
    assert await core.client.download_bytes_by_name("core-bucket", "kept") == b"kept"


async def test_resuming_many_pending_files_costs_a_fixed_number_of_b2_calls(
    core: Core, tmp_path: Path
) -> None:
    """After a kill with files waiting, the next mount waits for the journal to be resumed: one
    call per file (a listing of its unfinished large files) made that take minutes for
    thousands. One listing per bucket must do, and still cancel a large upload an earlier
    attempt started without recording it, while leaving other names' alone."""
    await core.upload("based", b"b" * 1000)
    directory = tmp_path / "restarted"
    async with trio.open_nursery() as first:
        fs = await make_core(core.emulator, directory, first, core.client, writeback_delay=3600)
        for number in range(30):
            fh, _ = await fs.create(ROOT_INODE, f"f{number:02d}".encode(), 0o644, 0o1, 0, 0)
            await fs.write(fh, 0, f"file {number}".encode())
            await fs.flush(fh)
            await fs.release(fh)
        fh, _ = await fs.open((await fs.lookup(ROOT_INODE, b"based")).ino, os.O_WRONLY)
        await fs.write(fh, 0, b"B" * 10)  # staged over a base version on B2
        await fs.flush(fh)
        await fs.release(fh)
        first.cancel_scope.cancel()  # the daemon is gone: its journal lists 31 pending files
    await fs.writeback.journal.close()
    await core.client.start_large_file(core.bucket.id, "f07")  # started, never recorded
    await core.client.start_large_file(core.bucket.id, "elsewhere")  # another client's

    before = core.emulator.stats.calls()
    async with trio.open_nursery() as second:
        fs = await make_core(core.emulator, directory, second, core.client)
        made = Counter(core.emulator.stats.calls()) - Counter(before)
        assert made["b2_list_unfinished_large_files"] == 1
        assert made["b2_get_file_info"] == 1  # the base's size
        assert made["b2_cancel_large_file"] == 1
        with trio.fail_after(30):
            await fs.drain()
        second.cancel_scope.cancel()
    await fs.writeback.journal.close()
    unfinished = [
        v.file_name async for v in core.client.list_unfinished_large_files(core.bucket.id)
    ]
    assert unfinished == ["elsewhere"]
    for number in range(30):
        name = f"f{number:02d}"
        assert await core.client.download_bytes_by_name("core-bucket", name) == (
            f"file {number}".encode()
        )
    assert await core.client.download_bytes_by_name("core-bucket", "based") == b"B" * 10 + (
        b"b" * 990
    )


async def test_small_files_go_up_from_the_write_back_queue_several_at_once(
    core: Core, tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closed files queue for upload; up to ``upload_concurrency`` of them are sent at once
    (issue 7's small-file mechanism), one upload call each."""
    fs = await make_core(
        core.emulator, tmp_path / "queue", nursery, core.client, upload_concurrency=4
    )
    uploads = InFlight(monkeypatch, fs.store, "upload_file")
    core.emulator.config.latency_ms = 20  # long enough for the queue to overlap
    before = core.calls("b2_upload_file")
    for number in range(24):
        fh, _ = await fs.create(ROOT_INODE, f"q{number:02d}".encode(), 0o644, 0o1, 0, 0)
        await fs.write(fh, 0, f"queued {number}".encode())
        await fs.flush(fh)
        await fs.release(fh)
    with trio.fail_after(60):
        await fs.drain()
    assert 1 < uploads.most <= 4
    assert core.calls("b2_upload_file") - before == 24
    for number in range(24):
        name = f"q{number:02d}"
        assert await core.client.download_bytes_by_name("core-bucket", name) == (
            f"queued {number}".encode()
        )


async def test_a_directory_rename_moves_its_files_several_at_once(
    core: Core, tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B2 has no rename: each file below is copied server-side, then its old name removed.
    They go ``upload_concurrency`` at a time, not one after the other; every file ends up
    under the new name only, with its content, and a pending one is uploaded there."""
    fs = await make_core(
        core.emulator, tmp_path / "renaming", nursery, core.client, upload_concurrency=4
    )
    contents = {f"old/sub{n % 3}/f{n:02d}": f"content {n}".encode() for n in range(20)}
    for name, data in contents.items():
        await core.upload(name, data)
    fh, _ = await fs.create((await fs.lookup(ROOT_INODE, b"old")).ino, b"pending", 0o644, 0o1, 0, 0)
    await fs.write(fh, 0, b"not on B2 yet")
    await fs.flush(fh)
    await fs.release(fh)
    copies = InFlight(monkeypatch, fs.store, "copy_file")
    await fs.rename(ROOT_INODE, b"old", ROOT_INODE, b"new", 0)
    assert 1 < copies.most <= 4
    await fs.drain()
    names = {v.file_name async for v in core.client.list_file_names(core.bucket.id)}
    assert names == {"new/" + name[len("old/") :] for name in contents} | {"new/pending"}
    for name, data in contents.items():
        new_name = "new/" + name[len("old/") :]
        assert await core.client.download_bytes_by_name("core-bucket", new_name) == data
    assert await core.client.download_bytes_by_name("core-bucket", "new/pending") == (
        b"not on B2 yet"
    )


async def walk(core: Core, ino: int) -> list[str]:
    """A recursive readdir, as ls -R or find does: every name below ``ino``."""
    fh = await core.fs.opendir(ino)
    entries = await core.fs.readdir(fh, 0)
    await core.fs.releasedir(fh)
    found = []
    for name, attrs, _ in entries:
        found.append(name.decode())
        if attrs.mode & 0o040000:
            found += [f"{name.decode()}/{sub}" for sub in await walk(core, attrs.ino)]
    return found


async def upload_tree(core: Core, top: str, *, folders: int, files: int) -> list[str]:
    """Upload top/dNN/fNN for each folder and file; returns the paths a walk should find."""
    expected = []
    for d in range(folders):
        for f in range(files):
            await core.upload(f"{top}/d{d:02d}/f{f:02d}", b"x")
            expected.append(f"d{d:02d}/f{f:02d}")
        expected.append(f"d{d:02d}")
    return expected


async def test_a_recursive_walk_lists_the_subtree_at_once(core: Core) -> None:
    expected = await upload_tree(core, "tree", folders=12, files=15)
    await core.upload("tree/d03/deeper/leaf", b"y")
    expected += ["d03/deeper", "d03/deeper/leaf"]
    tree = await core.ino("tree")
    before = core.calls("b2_list_file_names")
    assert sorted(await walk(core, tree)) == sorted(expected)
    # tree itself, then its whole subtree in one listing once the walk shows itself
    assert core.calls("b2_list_file_names") - before == 2


async def test_a_recursive_walk_of_a_big_subtree_lists_ranges_at_once(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the probe, the names below come in ranges cut at the subfolders, listed
    together (``list_concurrency`` at most): every file is shown once, in at most one call
    per folder plus the pages."""
    monkeypatch.setattr("b2fs.fs.subtree.PROBE", 20)
    monkeypatch.setattr("b2fs.fs.subtree._RANGE", 10)
    expected = await upload_tree(core, "walk", folders=30, files=8)
    pages = InFlight(monkeypatch, core.fs.lister.store, "list_names_page")
    walk_top = await core.ino("walk")
    before = core.calls("b2_list_file_names")
    assert sorted(await walk(core, walk_top)) == sorted(expected)
    calls = core.calls("b2_list_file_names") - before
    assert 1 < pages.most <= core.fs.options.list_concurrency
    assert calls <= 1 + 30 + 2  # walk/ itself, then at most folders + pages


async def test_a_recursive_walk_reads_folders_whose_names_are_in_while_later_ones_come(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ls -lR reads folders in name order: the folders the probe and the first ranges
    brought are read (from that one listing, no call of their own) while a later range is
    still on its way, and that range's folders wait for it rather than list themselves."""
    monkeypatch.setattr("b2fs.fs.subtree.PROBE", 20)
    monkeypatch.setattr("b2fs.fs.subtree._RANGE", 10)
    expected = await upload_tree(core, "walk", folders=30, files=8)
    store = core.fs.lister.store
    original = store.list_names_page
    held = "walk/d20/"
    release = trio.Event()
    holding = trio.Event()

    async def slow_late_range(
        bucket_id: str, prefix: str, start: str | None, count: int
    ) -> tuple[list[RemoteFile], str | None]:
        if start is not None and start >= held:
            holding.set()
            await release.wait()
        return await original(bucket_id, prefix, start, count)

    monkeypatch.setattr(store, "list_names_page", slow_late_range)
    top = await core.ino("walk")
    before = core.calls("b2_list_file_names")
    fh = await core.fs.opendir(top)
    folders = [(n.decode(), a.ino) for n, a, _ in await core.fs.readdir(fh, 0)]
    await core.fs.releasedir(fh)
    found: list[str] = []
    with trio.fail_after(30):  # a guard: before this change the first read waited for all
        for name, ino in folders:
            if name == "d20":
                await holding.wait()
                assert core.fs.lister.walks  # the listing is still under way ...
                # ... a folder of the held range that was listed on its own meanwhile (a
                # lookup in it) is read at once ...
                d25 = dict(folders)["d25"]
                await core.fs.lookup(d25, b"f00")
                assert sorted(await walk(core, d25)) == [f"f{f:02d}" for f in range(8)]
                release.set()  # ... and every folder before the held range was read
            found += [name] + [f"{name}/{sub}" for sub in await walk(core, ino)]
    assert sorted(found) == sorted(expected)
    # walk/ itself, the probe and one page per range: no folder listed on its own but d25
    assert core.calls("b2_list_file_names") - before <= 3 + core.fs.options.list_concurrency


async def test_a_recursive_walk_whose_ranges_fail_lists_the_rest_folder_by_folder(
    core: Core, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The subtree listing runs in the background: when B2 fails its ranges, the failure
    neither reaches the mount's nursery nor leaves a readdir waiting; it is logged as loud as
    the errno table says (a warning for B2's 503); the folders it did not bring are listed
    on their own, and the walk still shows every name once."""
    monkeypatch.setattr("b2fs.fs.subtree.PROBE", 20)
    monkeypatch.setattr("b2fs.fs.subtree._RANGE", 10)
    expected = await upload_tree(core, "fail", folders=12, files=8)
    store = core.fs.lister.store
    original = store.list_names_page
    refused = 0

    async def refuse_ranges(
        bucket_id: str, prefix: str, start: str | None, count: int
    ) -> tuple[list[RemoteFile], str | None]:
        nonlocal refused
        if start is not None:
            refused += 1
            raise B2ServiceUnavailable(503, "service_unavailable", "busy", "b2_list_file_names")
        return await original(bucket_id, prefix, start, count)

    monkeypatch.setattr(store, "list_names_page", refuse_ranges)
    top = await core.ino("fail")
    before = core.calls("b2_list_file_names")
    counted_before = core.fs.lister.list_calls
    with trio.fail_after(30):  # a guard against a readdir left waiting on the failed walk
        assert sorted(await walk(core, top)) == sorted(expected)
    assert refused > 0
    assert not core.fs.lister.walks
    failed = [r for r in caplog.records if "listing the subtree" in r.getMessage()]
    assert [r.levelno for r in failed] == [logging.WARNING], failed
    # fail/ itself, the probe (2 folders and part of a third), then each other folder alone
    assert core.calls("b2_list_file_names") - before == 1 + 1 + 10
    # The mount's own count (status) has them all, the refused ones of the failed walk too.
    assert core.fs.lister.list_calls - counted_before == 1 + 1 + 10 + refused


async def test_a_subtree_too_big_for_one_listing_falls_back_to_folders(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("b2fs.fs.dirlist.SUBTREE_PAGE", 10)
    monkeypatch.setattr("b2fs.fs.dirlist.SUBTREE_PAGES", 2)
    for d in range(5):
        for f in range(8):
            await core.upload(f"big/d{d}/f{f}", b"x")
    found = await walk(core, await core.ino("big"))
    assert len(found) == 5 + 40
    # Folders the partial listing covered were applied; the rest were listed one by one.
    assert core.fs.inode(await core.ino("big")).subtree_too_big


async def test_a_copy_above_the_copy_limit_is_assembled_from_parts(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    from b2fs.transfer.copy import server_copy

    monkeypatch.setattr("b2fs.transfer.copy.MAX_COPY", 5_000_000)  # B2's is 5 GB
    data = bytes(range(256)) * 48_000  # 12.3 MB: three parts
    await core.upload("big", data)
    (source,) = [v async for v in core.store.list_names(core.bucket.id, "big", None)]
    before = core.calls("b2_copy_part")
    copied = await server_copy(
        core.store, source, core.bucket.id, "copy", info={"src_last_modified_millis": "7"}
    )
    assert core.calls("b2_copy_part") - before == 3
    assert copied.info["src_last_modified_millis"] == "7"
    assert await core.client.download_bytes_by_name("core-bucket", "copy") == data


async def test_removing_a_name_never_shows_an_older_version_or_brings_the_name_back(
    core: Core, tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the model (with unlink=delete, a file unlinked while open came back in a
    listing as its last handle closed). B2 shows a name as its newest version: after every
    single deletion, what a listing shows must still be the current content (before unlink
    returns) or nothing (after it returned)."""
    fs = await make_core(
        core.emulator, tmp_path / "deleting", nursery, core.client, unlink="delete"
    )
    for name in ("open", "closed"):
        await core.upload(name, b"old")
        await core.upload(name, b"current")
    seen: list[tuple[str, bytes]] = []  # (name, content) a listing showed after a deletion
    delete_version = fs.store.delete_version

    async def delete_then_look(name: str, file_id: str) -> None:
        await delete_version(name, file_id)
        async for remote in core.store.list_names(core.bucket.id, "", None):
            data = await core.client.download_bytes_by_name("core-bucket", remote.name)
            seen.append((remote.name, data))

    monkeypatch.setattr(fs.store, "delete_version", delete_then_look)
    fh, _ = await fs.open((await fs.lookup(ROOT_INODE, b"open")).ino, os.O_RDONLY)
    await fs.unlink(ROOT_INODE, b"open")  # hidden at once; its versions go at the last close
    await fs.unlink(ROOT_INODE, b"closed")  # its versions go now
    assert await fs.read(fh, 0, 100) == b"current"
    await fs.release(fh)

    assert [v async for v in core.store.list_versions(core.bucket.id, "", None)] == []
    assert {name for name, _ in seen} <= {"closed"}, "an unlinked-while-open name came back"
    assert all(data == b"current" for _, data in seen), "an older version showed"
    assert seen, "the deletions of 'closed' were not observed"


async def test_a_listing_taken_before_an_upload_landed_keeps_what_it_missed(
    core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the model (with dir_timeout=0, a new folder and its file vanished for a
    moment): B2 answers a listing, then an upload of this mount lands and its staged entry
    is let go, then the listing's answer is merged. What the listing missed landed after it
    was taken, so it stays."""
    core.fs.writeback.settings = core.fs.writeback.settings.__class__(
        **{**core.fs.writeback.settings.__dict__, "delay": 3600.0}
    )
    await core.fs.mkdir(ROOT_INODE, b"new", 0o755)
    await core.write_file("/new/f", b"in a new folder")
    await core.write_file("/c", b"at the top")
    answered, merge = trio.Event(), trio.Event()
    released: set[str] = set()
    all_released = trio.Event()
    list_names = core.fs.store.list_names

    async def listed_early(
        bucket_id: str, prefix: str, delimiter: str | None
    ) -> AsyncIterator[RemoteFile]:
        rows = [row async for row in list_names(bucket_id, prefix, delimiter)]
        answered.set()
        await merge.wait()  # the answer travels while the uploads land
        for row in rows:
            yield row

    def release(entry: Entry) -> None:
        fs_released(entry)
        released.add(entry.row.name)
        if {"new/f", "c"} <= released:
            all_released.set()

    fs_released = core.fs.released
    monkeypatch.setattr(core.fs.store, "list_names", listed_early)
    monkeypatch.setattr(core.fs, "released", release)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(core.fs.lister.refresh, core.fs.root)
        await answered.wait()
        await core.fs.drain()  # the uploads go now (the listing above predates them)
        await all_released.wait()
        merge.set()
    assert not core.fs.writeback.by_name
    assert (await core.fs.lookup(ROOT_INODE, b"c")).size == 10
    new = await core.fs.lookup(ROOT_INODE, b"new")
    assert (await core.fs.lookup(new.ino, b"f")).size == 15


async def test_a_file_over_the_simple_upload_limit_always_goes_as_a_large_file(
    core: Core, tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B2 refuses simple uploads over 5 GB: such a file goes up in parts even when
    large_file_threshold (at most 5 GB itself) is above its size. Scaled down: the limit
    lowered to 11 MB, the threshold at 20 MiB, a 12 MB file."""
    monkeypatch.setattr("b2fs.transfer.writeback.B2_MAX_SIMPLE_UPLOAD", 11_000_000)
    fs = await make_core(
        core.emulator,
        tmp_path / "parts",
        nursery,
        core.client,
        large_file_threshold=20 << 20,
        part_size=5_000_000,
    )
    data = os.urandom(12_000_000)
    fh, _ = await fs.create(ROOT_INODE, b"over", 0o644, os.O_WRONLY, 0, 0)
    for offset in range(0, len(data), 1 << 20):
        await fs.write(fh, offset, data[offset : offset + (1 << 20)])
    await fs.flush(fh)
    await fs.release(fh)
    await fs.drain()
    assert core.calls("b2_upload_file") == 0
    assert core.calls("b2_start_large_file") == 1
    assert core.calls("b2_upload_part") == 3  # 5 + 5 + 2 MB
    assert await core.client.download_bytes_by_name("core-bucket", "over") == data


async def test_unlinking_a_pending_file_renamed_over_a_b2_file_removes_the_old_one_too(
    core: Core,
) -> None:
    """Found by the model: a new file, not uploaded yet, renamed over a file B2 has, then
    unlinked: the old file came back, since nothing had replaced it on B2 yet."""
    await core.upload("a", b"old content on B2")
    await core.fs.lookup(ROOT_INODE, b"a")
    fh, _ = await core.fs.create(ROOT_INODE, b"c", 0o644, os.O_RDWR, 0, 0)  # held open
    await core.fs.rename(ROOT_INODE, b"c", ROOT_INODE, b"a", 0)
    await core.fs.unlink(ROOT_INODE, b"a")
    await core.fs.release(fh)
    await core.fs.drain()
    core.fs.root.listed_at = float("-inf")  # a fresh listing
    with pytest.raises(FsError) as raised:
        await core.fs.lookup(ROOT_INODE, b"a")
    assert raised.value.errno == errno.ENOENT
    assert [v.name async for v in core.store.list_names(core.bucket.id, "", None)] == []
    assert core.calls("b2_upload_file") == 1  # only the test's own upload of the old file


async def test_an_uploaded_one_block_file_is_moved_into_the_block_cache(
    core: Core, tmp_path: Path
) -> None:
    """Reading back a small file just written costs no download, and keeping it cost no copy:
    its staging file became its cache block (one file created per small file, none deleted)."""
    data = os.urandom(3000)
    fh, _ = await core.fs.create(ROOT_INODE, b"small", 0o644, os.O_RDWR, 0, 0)
    await core.fs.write(fh, 0, data)
    await core.fs.fsync(fh)
    staging = Path(core.fs.writeback.by_name[(core.bucket.id, "small")].row.staging)
    staged_inode = staging.stat().st_ino
    await core.fs.release(fh)
    assert not staging.exists()
    [block] = (tmp_path / "blocks").rglob("*.0")
    assert block.stat().st_ino == staged_inode  # moved, not copied
    assert block.read_bytes() == data
    before = core.calls("b2_download_file_by_id")
    assert await core.read_file("small") == data
    assert core.calls("b2_download_file_by_id") == before


async def test_times_owner_and_mode_set_after_close_go_with_the_waiting_upload(
    core: Core, tmp_path: Path, nursery: trio.Nursery, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tar` and `rsync` set a file's times, owner and mode right after closing it: the
    upload waiting out its delay takes them along, one upload with the final metadata, and
    is neither cut off nor started again by each (three attempts more per file, before)."""
    fs = await make_core(
        core.emulator, tmp_path / "meta", nursery, core.client, writeback_delay=3600
    )
    attempts = 0
    real_attempt = WriteBack._attempt

    async def counted(self: WriteBack, entry: Entry) -> None:
        nonlocal attempts
        attempts += 1
        await real_attempt(self, entry)

    monkeypatch.setattr(WriteBack, "_attempt", counted)
    before = core.calls("b2_upload_file")
    fh, _ = await fs.create(ROOT_INODE, b"extracted.py", 0o600, os.O_WRONLY, 0, 0)
    await fs.write(fh, 0, b"print('hello')\n")
    await fs.flush(fh)
    await fs.release(fh)
    await trio.testing.wait_all_tasks_blocked()  # the upload waits out its delay
    ino = (await fs.lookup(ROOT_INODE, b"extracted.py")).ino
    await fs.setattr(ino, mtime_ns=1_234_567_000_000)
    await fs.setattr(ino, uid=1000, gid=1000)
    await fs.setattr(ino, mode=0o755)
    with trio.fail_after(60):
        await fs.drain()
    assert attempts == 1
    assert core.calls("b2_upload_file") - before == 1
    [info] = [v.file_info async for v in core.client.list_file_names(core.bucket.id)]
    assert info[INFO_MTIME] == "1234567"
    assert (info[INFO_UID], info[INFO_GID]) == ("1000", "1000")
    assert int(info[INFO_MODE]) & 0o777 == 0o755
