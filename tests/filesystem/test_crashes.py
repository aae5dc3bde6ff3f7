"""Tier 6: the mount daemon killed with kill -9, then mounted again with the same cache directory.

What a user relies on: a file whose close() returned is on B2 after the next mount, whatever
happened to the daemon meanwhile; a large upload that was under way resumes from the parts B2
already holds; nothing half-written replaces a good version; no unfinished large file is left
billing.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal

from b2fs.emulator import Emulator
from filesystem.conftest import BUCKET, B2View
from filesystem.mounting import Mounter
from filesystem.waiting import list_parts, sha1, wait_until

MiB = 1 << 20
# Large files from 10 MiB, in 5 MiB parts (B2's minimum is 5 MB): a 33 MiB file has 7 parts.
LARGE = ["large_file_threshold=10M", "part_size=5M"]


def test_kill_9_with_pending_uploads_resumes_them_at_the_next_mount(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    mount = mounter.mount(BUCKET, options=LARGE)
    closed: dict[str, bytes] = {}

    # A large file written sequentially: its first parts leave while it is written...
    large = os.urandom(33 * MiB)
    with open(mount.path / "large.bin", "wb", buffering=0) as f:
        f.write(large[: 16 * MiB])
        unfinished = wait_until(b2.unfinished, what="the large upload to start")
        large_id = unfinished[0].file_id
        wait_until(lambda: len(list_parts(emulator, large_id)) == 3, what="parts 1-3 on B2")
        # ...then B2 stops taking uploads: the rest stays pending.
        emulator.faults.add("upload:503")
        f.write(large[16 * MiB :])
    closed["large.bin"] = large

    # Many small files (one empty), closed while uploads fail.
    rng = random.Random(4)
    (mount.path / "small").mkdir()
    for i in range(40):
        data = os.urandom(rng.randrange(0, 100_000) if i else 0)
        (mount.path / "small" / f"f{i:02d}").write_bytes(data)
        closed[f"small/f{i:02d}"] = data

    assert b2.names() == {}  # nothing closed has reached B2 yet
    assert len(list_parts(emulator, large_id)) == 3
    mount.kill()

    emulator.faults.clear()
    emulator.stats.reset()
    mount = mounter.remount(mount, options=LARGE)
    # The files are there at once, read from the staged copies while they upload.
    for name in ("small/f01", "small/f39"):
        assert (mount.path / name).read_bytes() == closed[name]
    mount.unmount()

    on_b2 = b2.names()
    assert set(on_b2) == set(closed)
    assert {name: sha1(b2.read(name)) for name in closed} == {
        name: sha1(data) for name, data in closed.items()
    }
    # The large file resumed: only the 4 parts B2 did not have were sent again.
    assert b2.calls().get("b2_upload_part", 0) == 4
    assert b2.calls().get("b2_start_large_file", 0) == 0
    assert b2.unfinished() == []
    assert "resuming the upload of large.bin" in mount.log_text


def test_a_file_being_written_at_the_kill_is_not_uploaded_over_a_good_version(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    good_doc = os.urandom(300_000)
    good_video = os.urandom(2 * MiB)
    b2.upload("doc.txt", good_doc)
    b2.upload("video.bin", good_video)
    mount = mounter.mount(BUCKET, options=LARGE)

    # A random write into an existing file, and a large rewrite whose parts already leave:
    # neither is ever closed.
    doc = open(mount.path / "doc.txt", "r+b", buffering=0)  # noqa: SIM115 (held across the kill)
    video = open(mount.path / "video.bin", "wb", buffering=0)  # noqa: SIM115
    try:
        doc.write(b"half-written garbage")
        for _ in range(16):
            video.write(os.urandom(MiB))
        unfinished = wait_until(b2.unfinished, what="the rewrite's large upload to start")
        wait_until(lambda: list_parts(emulator, unfinished[0].file_id), what="a part on B2")
        mount.kill()
    finally:
        for f in (doc, video):
            with contextlib.suppress(OSError):
                f.close()

    mount = mounter.remount(mount, options=LARGE)
    assert (mount.path / "doc.txt").read_bytes() == good_doc
    assert (mount.path / "video.bin").read_bytes() == good_video
    mount.unmount()

    versions = [(v.file_name, str(v.action), v.content_sha1) for v in b2.versions()]
    assert versions == [
        ("doc.txt", "upload", sha1(good_doc)),
        ("video.bin", "upload", sha1(good_video)),
    ]
    assert b2.unfinished() == []  # the abandoned large upload was cancelled
    assert "never closed" in mount.log_text


def test_fsync_of_a_large_file_returns_with_its_bytes_on_b2_and_its_metadata_follows(
    b2: B2View, mounter: Mounter, emulator: Emulator
) -> None:
    """A large file's metadata is fixed after its bytes by a server-side copy (B2 fixes a large
    file's info when it starts). fsync waits for the bytes only; the copy is journalled, so
    a daemon killed before it is done copies (never re-uploads) at the next mount."""
    mount = mounter.mount(BUCKET, options=LARGE)
    emulator.faults.add("b2_copy_file:503")  # the metadata copy cannot happen yet
    data = os.urandom(12 * MiB)
    with open(mount.path / "big.bin", "wb", buffering=0) as f:
        f.write(data)
        os.fsync(f.fileno())  # returns (no EIO) although every copy fails
    mtime_ms = (mount.path / "big.bin").stat().st_mtime_ns // 1_000_000
    assert b2.read("big.bin") == data  # the bytes are on B2 when fsync returns
    [finished] = b2.versions()
    assert finished.src_last_modified_millis != mtime_ms  # still the info it started with
    mount.kill()

    emulator.faults.clear()
    emulator.stats.reset()
    mount = mounter.remount(mount, options=LARGE)
    mount.unmount()
    [fixed] = b2.versions()  # the copy replaced the finished file
    assert b2.read_id(str(fixed.file_id)) == data
    assert fixed.src_last_modified_millis == mtime_ms
    calls = b2.calls()
    assert calls.get("b2_copy_file") == 1
    assert calls.get("b2_upload_part", 0) == 0  # the bytes were not sent again
    assert calls.get("b2_start_large_file", 0) == 0
    assert b2.unfinished() == []


def test_a_dead_mount_is_cleared_while_the_kernel_still_caches_its_attributes(
    b2: B2View, mounter: Mounter
) -> None:
    """After kill -9 (systemd restarts the service at once), the kernel may still answer
    stat of the mount point from its attribute cache: the new mount must see the dead
    mount all the same, clear it and mount."""
    mount = mounter.mount(BUCKET, options=["attr_timeout=1h"])
    os.stat(mount.path)  # the kernel now holds the root's attributes for an hour
    pid = mount.daemon_pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    mount._wait_daemon_exit()  # the daemon is gone; its mount stays, dead
    b2.upload("after.txt", b"new daemon")
    mount = mounter.remount(mount, options=["attr_timeout=1h"])
    assert (mount.path / "after.txt").read_bytes() == b"new daemon"  # the new daemon answers
