"""Downloads against the emulator: whole files, ranges (206, clipped, 416), streams, SHA1
checks, files on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from b2fs.b2 import (
    B2Client,
    B2InvalidInput,
    B2NotFound,
    B2RangeNotSatisfiable,
    Bucket,
    ContentRange,
    FileVersion,
)

if TYPE_CHECKING:
    from b2fs.emulator import Emulator

DATA = bytes((i * 7) % 256 for i in range(3 * 1024 * 1024 + 17))


@pytest.fixture
async def stored(client: B2Client, bucket: Bucket) -> FileVersion:
    return await client.upload_file(
        bucket.bucket_id,
        "data/blob.bin",
        DATA,
        content_type="application/octet-stream",
        file_info={"b2-cache-control": "max-age=600", "origin": "test suite"},
    )


async def test_whole_file_stream_with_headers(client: B2Client, stored: FileVersion) -> None:
    async with client.download_file_by_id(stored.file_id or "") as download:
        info = download.info
        assert download.status == 200 and download.verifies_sha1
        assert (info.file_id, info.file_name) == (stored.file_id, "data/blob.bin")
        assert info.content_length == info.size == len(DATA)
        assert info.content_range is None
        assert info.sha1 == hashlib.sha1(DATA).hexdigest()
        assert info.file_info["origin"] == "test suite"
        assert info.headers.get("cache-control") == "max-age=600"
        assert info.upload_timestamp == stored.upload_timestamp
        received = bytearray()
        async for chunk in download.iter_bytes():
            received += chunk
    assert received == DATA
    assert client.stats.bytes_downloaded >= len(DATA)


async def test_ranges(client: B2Client, stored: FileVersion) -> None:
    file_id = stored.file_id or ""
    async with client.download_file_by_id(file_id, offset=5, length=4) as download:
        assert download.status == 206
        assert download.info.content_range == ContentRange(5, 8, len(DATA))
        assert download.info.size == len(DATA) and not download.verifies_sha1
        assert await download.read() == DATA[5:9]
    # A range running past the end is clipped.
    tail = await client.download_bytes_by_id(file_id, offset=len(DATA) - 10, length=100)
    assert tail == DATA[-10:]
    assert await client.download_bytes_by_id(file_id, offset=len(DATA) - 3) == DATA[-3:]
    middle = await client.download_bytes_by_id(file_id, offset=1_000_000, length=1_500_000)
    assert middle == DATA[1_000_000:2_500_000]
    # A range starting past the end is refused by B2.
    with pytest.raises(B2RangeNotSatisfiable) as caught:
        await client.download_bytes_by_id(file_id, offset=len(DATA) + 1, length=10)
    assert caught.value.status == 416
    with pytest.raises(B2RangeNotSatisfiable):
        async with client.download_file_by_id(file_id, offset=len(DATA)):
            pass


async def test_by_name(client: B2Client, bucket: Bucket, stored: FileVersion) -> None:
    assert await client.download_bytes_by_name(bucket.bucket_name, "data/blob.bin") == DATA
    part = await client.download_bytes_by_name(
        bucket.bucket_name, "data/blob.bin", offset=100, length=50
    )
    assert part == DATA[100:150]
    with pytest.raises(B2NotFound):
        await client.download_bytes_by_name(bucket.bucket_name, "data/missing")
    with pytest.raises(B2NotFound):
        async with client.download_file_by_name("no-such-bucket-here", "x"):
            pass


async def test_to_file(client: B2Client, stored: FileVersion, tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    info = await client.download_to_file_by_id(stored.file_id or "", target)
    assert info is not None and info.size == len(DATA)
    assert target.read_bytes() == DATA
    target2 = tmp_path / "part.bin"
    await client.download_to_file_by_id(stored.file_id or "", target2, offset=10, length=20)
    assert target2.read_bytes() == DATA[10:30]


async def test_empty_file(client: B2Client, bucket: Bucket) -> None:
    empty = await client.upload_file(bucket.bucket_id, "empty", b"")
    assert await client.download_bytes_by_id(empty.file_id or "") == b""
    assert await client.download_bytes_by_id(empty.file_id or "", length=4096) == b""
    async with client.download_file_by_id(empty.file_id or "") as download:
        assert download.info.size == 0 and await download.read() == b""


async def test_content_sha1_takes_precedence_over_large_file_sha1(
    client: B2Client, bucket: Bucket
) -> None:
    # large_file_sha1 only stands in for B2's "none"; a real contentSha1 is what is checked.
    wrong = "0" * 40
    fv = await client.upload_file(
        bucket.bucket_id, "liar", b"content", file_info={"large_file_sha1": wrong}
    )
    assert fv.sha1 == hashlib.sha1(b"content").hexdigest()  # contentSha1 wins over the info
    assert await client.download_bytes_by_id(fv.file_id or "") == b"content"


async def test_download_refusals(client: B2Client) -> None:
    with pytest.raises(B2InvalidInput, match="at least one byte"):
        async with client.download_file_by_id("id", length=0):
            pass
    assert await client.download_bytes_by_id("id", length=0) == b""
    with pytest.raises(B2InvalidInput):
        await client.download_bytes_by_name("bucket", "bad\x00name")


async def test_download_into_a_callback(
    client: B2Client, stored: FileVersion, emulator: Emulator
) -> None:
    received = bytearray()

    async def consume(chunk: bytes) -> None:
        received.extend(chunk)

    emulator.faults.script("download", "reset", 1)
    info = await client.download_into_by_id(
        stored.file_id or "", consume, offset=7, length=2_000_000
    )
    assert info is not None and bytes(received) == DATA[7:2_000_007]
