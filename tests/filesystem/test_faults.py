"""Tier 6: B2 failing under a mount, and a cache disk that fills up.

What a user relies on: when B2 is down, reads fail with EIO after a bounded wait instead of
hanging, while files already closed stay queued and reach B2 once it is back; uploads that B2
refuses now and then (503, 500, 429, a reset connection) are retried until every closed byte
is on B2; a full cache disk makes new writes fail with ENOSPC without losing anything already
closed; the read cache stays within ``cache_size``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from b2fs.emulator import Emulator
from filesystem.conftest import BUCKET, B2View
from filesystem.mounting import Mount, Mounter
from filesystem.waiting import sha1, wait_until

MiB = 1 << 20


def _assert_on_b2(b2: B2View, expected: dict[str, bytes]) -> None:
    assert {name: sha1(b2.read(name)) for name in expected} == {
        name: sha1(data) for name, data in expected.items()
    }


def test_outage_fails_reads_with_eio_after_the_retry_budget_and_keeps_pending_writes(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    remote = os.urandom(200_000)
    b2.upload("remote.bin", remote)
    # A short retry budget; listings trusted long enough to create files during the outage.
    mount = mounter.mount(BUCKET, options=["retry_time=2s", "dir_timeout=120", "attr_timeout=120"])
    assert os.listdir(mount.path) == ["remote.bin"]

    emulator.faults.add("download:503,api:503,upload:503")
    started = time.monotonic()
    with pytest.raises(OSError) as raised:
        (mount.path / "remote.bin").read_bytes()
    assert raised.value.errno == errno.EIO
    assert time.monotonic() - started < 20  # the budget (2 s) plus one attempt's slack
    assert b2.calls().get("b2_download_file_by_id", 0) >= 2  # it was retried first

    # Writes during the outage are accepted and kept...
    written = {"during.txt": os.urandom(5000), "synced.txt": os.urandom(7000)}
    (mount.path / "during.txt").write_bytes(written["during.txt"])
    with open(mount.path / "synced.txt", "wb") as f:
        f.write(written["synced.txt"])
        f.flush()
        with pytest.raises(OSError) as raised:
            os.fsync(f.fileno())  # fsync says B2 does not have it...
        assert raised.value.errno == errno.EIO
    # ...but both stay queued: their uploads keep failing and are tried again.
    wait_until(
        lambda: "upload of during.txt failed" in mount.log_text, what="a failed upload attempt"
    )
    assert (mount.path / "during.txt").read_bytes() == written["during.txt"]

    emulator.faults.clear()  # the outage ends: the queued files land without any help
    wait_until(lambda: set(written) <= set(b2.names()), timeout=40, what="the queued uploads")
    _assert_on_b2(b2, written)
    assert (mount.path / "remote.bin").read_bytes() == remote
    mount.unmount()


def test_upload_faults_during_a_workload_lose_no_closed_byte(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    mount = mounter.mount(BUCKET, options=["large_file_threshold=10M", "part_size=5M"])
    emulator.faults.seed(7)
    emulator.faults.add("upload:503:0.15,upload:500:0.1,upload:429@0:0.1,upload:reset:0.1")
    expected: dict[str, bytes] = {}
    for i in range(30):
        data = os.urandom(20_000 + i * 1000)
        (mount.path / f"f{i:02d}").write_bytes(data)
        expected[f"f{i:02d}"] = data
    for i in range(0, 30, 5):  # overwrites of files that may be uploading
        data = os.urandom(3000)
        (mount.path / f"f{i:02d}").write_bytes(data)
        expected[f"f{i:02d}"] = data
    large = os.urandom(23 * MiB)
    (mount.path / "large.bin").write_bytes(large)
    expected["large.bin"] = large
    mount.unmount()

    assert set(b2.names()) == set(expected)
    _assert_on_b2(b2, expected)
    assert b2.unfinished() == []
    calls = b2.calls()
    assert calls.get("b2_upload_file", 0) + calls.get("b2_upload_part", 0) > len(expected) + 5


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


def _write_until_full(path: Path) -> int:
    """Create a file and write 1 MiB at a time until the file system says no (at the create
    or at a write); returns the errno."""
    chunk = os.urandom(MiB)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except OSError as exc:
        return exc.errno
    try:
        for _ in range(1000):
            os.write(fd, chunk)
    except OSError as exc:
        return exc.errno
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    raise AssertionError("1000 MiB were written into a 64 MiB cache disk")


def test_full_cache_disk_fails_new_writes_with_enospc_and_loses_nothing_closed(
    b2: B2View, mounter: Mounter, emulator: Emulator, tmp_path: Path
) -> None:
    with tmpfs(tmp_path / "small-disk", "64m") as disk:
        mount: Mount | None = None
        try:
            mount = mounter.mount(BUCKET, cache_dir=disk / "cache", options=["cache_size=16M"])
            emulator.faults.add("upload:503")  # closed files stay in the cache for now
            closed = {f"kept{i:02d}": os.urandom(MiB) for i in range(20)}
            for name, data in closed.items():
                (mount.path / name).write_bytes(data)

            assert _write_until_full(mount.path / "huge.bin") == errno.ENOSPC
            assert _write_until_full(mount.path / "another.bin") == errno.ENOSPC
            # B2 comes back while the disk is still full: what was closed reaches B2.
            emulator.faults.clear()
            wait_until(lambda: set(closed) <= set(b2.names()), what="the closed files on B2")
            _assert_on_b2(b2, closed)
            # The program cleans up after its failed writes, and the mount carries on.
            (mount.path / "huge.bin").unlink()
            (mount.path / "another.bin").unlink(missing_ok=True)
            (mount.path / "after.txt").write_bytes(b"written once there was room again")
            mount.unmount()
            assert set(b2.names()) == {*closed, "after.txt"}
            _assert_on_b2(b2, closed)
            assert b2.unfinished() == []  # the removed file's large upload was cancelled
        finally:
            if mount is not None:
                mount.cleanup()


def _tree_size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


def test_read_cache_stays_within_cache_size(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    files = {f"f{i}": os.urandom(12 * MiB) for i in range(3)}  # 36 MiB through a 16 MiB cache
    for name, data in files.items():
        b2.upload(name, data)
    mount = mounter.mount(BUCKET, options=["cache_size=16M"])
    blocks = mount.cache_dir / "blocks"
    peak = 0
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_size(blocks))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        for name, data in files.items():
            assert sha1((mount.path / name).read_bytes()) == sha1(data)
    finally:
        stop.set()
        sampler.join()
    peak = max(peak, _tree_size(blocks))
    # Blocks up to cache_size, plus a little for the cache's own index of file ids.
    assert 8 * MiB < peak <= 16 * MiB + 256 * 1024


def test_a_slow_b2_request_does_not_stall_the_rest_of_the_mount(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    """One request waiting on B2 (here: every answer 4 s late) holds up only the program
    that needs it: other programs keep reading cached and written files, writing, and
    listing known directories meanwhile."""
    b2.upload("cold.bin", os.urandom(300_000))
    b2.upload("warm.bin", b"cached")
    mount = mounter.mount(
        BUCKET, options=["dir_timeout=600", "attr_timeout=600", "writeback_delay=600"]
    )
    assert (mount.path / "warm.bin").read_bytes() == b"cached"  # now in the block cache
    emulator.app.config.latency_ms = 4000
    downloads = b2.calls().get("b2_download_file_by_id", 0)
    slow = threading.Thread(target=lambda: (mount.path / "cold.bin").read_bytes())
    slow.start()
    try:
        wait_until(lambda: b2.calls().get("b2_download_file_by_id", 0) > downloads)
        started = time.monotonic()
        assert (mount.path / "warm.bin").read_bytes() == b"cached"
        (mount.path / "local.txt").write_bytes(b"written meanwhile")
        assert (mount.path / "local.txt").read_bytes() == b"written meanwhile"
        assert sorted(os.listdir(mount.path)) == ["cold.bin", "local.txt", "warm.bin"]
        elapsed = time.monotonic() - started
        assert slow.is_alive(), "the slow read ended first: the others waited for it"
        assert elapsed < 2.0, f"the other programs waited {elapsed:.1f} s"
    finally:
        slow.join(timeout=60)
        emulator.app.config.latency_ms = 0


def test_a_large_file_changed_while_its_metadata_copy_fails_goes_up_again_whole(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    """fsync of a large file returns once its bytes are on B2, before the copy that puts its
    final mtime on it. A change meanwhile must not let that copy (of the old bytes) land
    over the new content: the new content goes up, and carries its own final metadata."""
    options = ["large_file_threshold=10M", "part_size=5M", "retry_time=1s"]
    mount = mounter.mount(BUCKET, options=options)
    emulator.faults.add("b2_copy_file:503")
    first = os.urandom(12 * MiB)
    with open(mount.path / "big.bin", "wb", buffering=0) as f:
        f.write(first)
        os.fsync(f.fileno())
    assert b2.read("big.bin") == first
    more = os.urandom(MiB)
    with open(mount.path / "big.bin", "ab", buffering=0) as f:
        f.write(more)
        os.fchmod(f.fileno(), 0o600)  # pending: no copy needed for it
        os.fsync(f.fileno())  # not failed by the copy of the older content
    assert b2.read("big.bin") == first + more  # the new bytes, without waiting for a copy
    mtime_ms = (mount.path / "big.bin").stat().st_mtime_ns // 1_000_000
    emulator.faults.clear()
    mount.unmount()

    newest = b2.names()["big.bin"]
    assert b2.read_id(str(newest.file_id)) == first + more
    assert newest.src_last_modified_millis == mtime_ms
    assert newest.file_info.get("mode") == str(0o100600)
    assert b2.unfinished() == []


@pytest.mark.parametrize("copies_fail", [False, True], ids=["copy-works", "copy-fails"])
def test_a_large_file_renamed_right_after_fsync_leaves_nothing_under_its_old_name(
    b2: B2View, mounter: Mounter, emulator: Emulator, copies_fail: bool
) -> None:
    """The atomic-save pattern (write a temporary file, fsync, rename it over the real name)
    with a large file: fsync returns before the copy that puts the final mtime on the
    finished large file, so the rename meets that copy in flight, or failing."""
    options = ["large_file_threshold=10M", "part_size=5M", "retry_time=1s"]
    mount = mounter.mount(BUCKET, options=options)
    if copies_fail:
        emulator.faults.add("b2_copy_file:503")
    data = os.urandom(12 * MiB)
    with open(mount.path / "save.tmp", "wb", buffering=0) as f:
        f.write(data)
        os.fsync(f.fileno())
    os.rename(mount.path / "save.tmp", mount.path / "save")
    mtime_ms = (mount.path / "save").stat().st_mtime_ns // 1_000_000
    emulator.faults.clear()
    mount.unmount()

    names = b2.names()
    assert set(names) == {"save"}  # nothing left (or come back) under the temporary name
    assert b2.read("save") == data
    assert names["save"].src_last_modified_millis == mtime_ms
    assert b2.unfinished() == []
    if not copies_fail:  # the rename was a server-side copy, not a second upload
        assert b2.calls().get("b2_upload_part", 0) == 3
