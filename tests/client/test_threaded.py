"""The threaded bulk-data path (downloads and file uploads), against the emulator over HTTP."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import trio

from b2fs.b2 import B2Client, Bucket, FileSource
from b2fs.b2.errors import (
    B2ChecksumMismatch,
    B2NotFound,
    B2RangeNotSatisfiable,
    B2SourceError,
)
from b2fs.emulator import Emulator

from .conftest import calls, connect_to


class Collector:
    """A sink: records the bytes and the threads it was called from."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.threads: set[int] = set()

    def __call__(self, view: memoryview) -> None:
        self.threads.add(threading.get_ident())
        self.data += view


async def test_ranges_arrive_in_a_worker_thread(client: B2Client, bucket: Bucket) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    version = await client.upload_file(bucket.bucket_id, "f", data)
    assert version.file_id is not None
    for offset, length in [(0, len(data)), (5, 100), (1 << 20, 2 << 20), (len(data) - 1, 1)]:
        sink = Collector()
        await client.download_range_threaded(version.file_id, sink, offset=offset, length=length)
        assert bytes(sink.data) == data[offset : offset + length]
        assert threading.get_ident() not in sink.threads
    past_end = Collector()
    with pytest.raises(B2RangeNotSatisfiable):
        await client.download_range_threaded(
            version.file_id, past_end, offset=len(data) + 10, length=5
        )


async def test_resets_resume_after_the_bytes_received(
    emulator: Emulator, client: B2Client, bucket: Bucket
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    version = await client.upload_file(bucket.bucket_id, "f", data)
    assert version.file_id is not None
    emulator.faults.script("download", "reset", count=2)
    emulator.faults.script("download", "503", count=1)
    sink = Collector()
    await client.download_range_threaded(version.file_id, sink, offset=0, length=len(data))
    assert bytes(sink.data) == data  # every byte exactly once, in order
    assert calls(emulator, "b2_download_file_by_id") == 4


class InPlace:
    """A sink that receives in place (``into``) into its own memory, in pieces of at most
    ``piece`` bytes, and records whether any bytes came from elsewhere."""

    def __init__(self, size: int, piece: int) -> None:
        self.memory = bytearray(size)
        self.piece = piece
        self.filled = 0
        self.copied = 0  # bytes handed over in a view of some other memory

    def into(self, limit: int) -> memoryview:
        return memoryview(self.memory)[self.filled : self.filled + min(limit, self.piece)]

    def __call__(self, view: memoryview) -> None:
        if view.obj is not self.memory:
            self.copied += len(view)
            self.memory[self.filled : self.filled + len(view)] = view
        self.filled += len(view)


async def test_bytes_received_in_place_land_once_across_resets(
    emulator: Emulator, client: B2Client, bucket: Bucket
) -> None:
    data = os.urandom(4 * 1024 * 1024 + 5)
    version = await client.upload_file(bucket.bucket_id, "f", data)
    assert version.file_id is not None
    emulator.faults.script("download", "reset", count=2)
    sink = InPlace(len(data) - 7, piece=300_000)
    await client.download_range_threaded(
        version.file_id, sink, offset=7, length=len(data) - 7, into=sink.into
    )
    assert sink.filled == len(data) - 7
    assert bytes(sink.memory) == data[7:]  # every byte once, in order, where it belongs
    assert sink.copied == 0  # none went through an intermediate buffer
    assert calls(emulator, "b2_download_file_by_id") == 3


async def test_an_expired_token_is_renewed_once(
    emulator: Emulator, client: B2Client, bucket: Bucket
) -> None:
    version = await client.upload_file(bucket.bucket_id, "f", b"payload")
    assert version.file_id is not None
    before = calls(emulator, "b2_authorize_account")
    emulator.expire_tokens()
    sink = Collector()
    await client.download_range_threaded(version.file_id, sink, offset=0, length=7)
    assert bytes(sink.data) == b"payload"
    assert calls(emulator, "b2_authorize_account") == before + 1


async def test_errors_are_typed_and_hold_no_secret(
    emulator: Emulator, client: B2Client, bucket: Bucket, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    version = await client.upload_file(bucket.bucket_id, "f", b"x")
    assert version.file_id is not None
    await client.delete_file_version(version.file_id, "f")
    with pytest.raises(B2NotFound) as raised:
        await client.download_range_threaded(version.file_id, Collector(), offset=0, length=1)
    text = str(raised.value) + repr(raised.value) + caplog.text
    for secret in emulator.secrets():
        assert secret not in text


async def test_a_whole_file_is_checked_against_its_sha1(
    client: B2Client, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = b"the right bytes" * 1000
    version = await client.upload_file(bucket.bucket_id, "f", data)
    assert version.file_id is not None

    real_sha1 = hashlib.sha1

    class Wrong:
        def __init__(self) -> None:
            self.real = real_sha1()

        def update(self, view: memoryview) -> None:
            self.real.update(bytes(view) + b"!")  # as if a byte were corrupted on the way

        def hexdigest(self) -> str:
            return self.real.hexdigest()

    monkeypatch.setattr("b2fs.b2.threaded.hashlib.sha1", Wrong)
    with pytest.raises(B2ChecksumMismatch):
        await client.download_range_threaded(
            version.file_id, Collector(), offset=0, length=len(data)
        )


async def test_file_uploads_go_from_a_thread_and_survive_faults(
    emulator: Emulator, client: B2Client, bucket: Bucket, tmp_path: Path
) -> None:
    data = os.urandom(6 * 1024 * 1024 + 5)
    path = tmp_path / "staging"
    path.write_bytes(data)
    emulator.faults.script("upload", "reset", count=1)
    emulator.faults.script("upload", "503", count=1)
    version = await client.upload_file(bucket.bucket_id, "f", FileSource(path))
    assert version.sha1 == hashlib.sha1(data).hexdigest()
    assert calls(emulator, "b2_get_upload_url") == 3  # a fresh URL after each failure
    started = await client.start_large_file(bucket.bucket_id, "large")
    assert started.file_id is not None
    emulator.faults.script("upload", "reset", count=1)
    part = await client.upload_part(started.file_id, 1, FileSource(path, 0, 5_000_000))
    assert part.content_sha1 == hashlib.sha1(data[:5_000_000]).hexdigest()
    assert await client.download_bytes_by_id(version.file_id or "") == data


@pytest.mark.parametrize("size", [16 * 1024, 512 * 1024, 3 * 1024 * 1024])
async def test_each_upload_attempt_reports_its_progress_from_zero(
    emulator: Emulator, client: B2Client, bucket: Bucket, tmp_path: Path, size: int
) -> None:
    """`b2fs status` shows how much of the file an upload has sent: a retry starts again at
    0, and the count ends at the file's size (the SHA1 appended to the body is not the
    file's), whether the body goes from the event loop (16 KiB), from a worker thread in one
    send (512 KiB) or streamed (3 MiB)."""
    path = tmp_path / "staging"
    path.write_bytes(os.urandom(size))
    reported: list[int] = []
    emulator.faults.script("upload", "reset", count=1)
    emulator.faults.script("upload", "503", count=1)
    await client.upload_file(bucket.bucket_id, "f", FileSource(path, progress=reported.append))
    attempts = calls(emulator, "b2_upload_file")
    assert attempts == 3
    assert reported[0] == 0 and reported[-1] == size
    assert reported.count(0) == attempts  # every attempt begins at nothing sent


async def test_a_file_shorter_than_declared_is_not_retried(
    emulator: Emulator, client: B2Client, bucket: Bucket, tmp_path: Path
) -> None:
    path = tmp_path / "staging"
    path.write_bytes(b"x" * 10_000)
    source = FileSource(path)
    path.write_bytes(b"x" * 100)
    with pytest.raises(B2SourceError, match="ended 9900 bytes before"):
        await client.upload_file(bucket.bucket_id, "f", source)
    assert calls(emulator, "b2_upload_file") <= 1


async def upload_then_cancel(
    client: B2Client,
    bucket: Bucket,
    source: FileSource,
    when: trio.Event,
    cancelled: list[bool] | None = None,
) -> None:
    """Upload ``source`` as "f" and cancel the upload once ``when`` is set (flagging
    ``cancelled`` first)."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:

            async def upload() -> None:
                await client.upload_file(bucket.bucket_id, "f", source)

            nursery.start_soon(upload)
            await when.wait()
            if cancelled is not None:
                cancelled[0] = True
            nursery.cancel_scope.cancel()


async def test_a_cancelled_upload_stops_reading_its_source(
    emulator_factory: Any, tmp_path: Path
) -> None:
    slow = emulator_factory(bandwidth_mbps=8)  # 1 MB/s: the upload lasts seconds
    async with await connect_to(slow) as client:
        bucket = await client.create_bucket("slow-bucket")
        path = tmp_path / "staging"
        path.write_bytes(os.urandom(6_000_000))
        started = trio.Event()
        read_after_cancel: list[int] = []
        cancelled = [False]

        def progress(sent: int) -> None:
            if cancelled[0]:
                read_after_cancel.append(sent)
            if sent:
                trio.from_thread.run_sync(started.set)

        await upload_then_cancel(
            client, bucket, FileSource(path, progress=progress), started, cancelled
        )
        # The thread stopped at once: at most the chunk being read when it was told.
        assert len(read_after_cancel) <= 1
        assert [v async for v in client.list_file_names(bucket.bucket_id)] == []


async def test_an_upload_cancelled_once_its_body_is_sent_is_cut_short(
    emulator_factory: Any, tmp_path: Path
) -> None:
    """The thread has handed the whole body to the kernel (so it no longer checks between
    chunks) and waits for B2's answer while B2 still receives: a cancellation shuts the
    connection down, so that B2 stores nothing (before, the upload completed while the
    cancellation waited for the thread: a file "not yet on B2" landed after all)."""
    slow = emulator_factory(bandwidth_mbps=8)  # 1 MB/s: B2 takes seconds to receive it
    async with await connect_to(slow) as client:
        bucket = await client.create_bucket("slow-bucket")
        path = tmp_path / "staging"
        size = 1_500_000  # fits in the loopback socket buffers
        path.write_bytes(os.urandom(size))
        sent_all = trio.Event()

        def progress(sent: int) -> None:
            if sent >= size:
                trio.from_thread.run_sync(sent_all.set)

        await upload_then_cancel(client, bucket, FileSource(path, progress=progress), sent_all)
        assert [v async for v in client.list_file_names(bucket.bucket_id)] == []
        assert calls(slow, "b2_upload_file") <= 1
