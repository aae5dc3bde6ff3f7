"""Large files against the emulator: start, parts from a staging file in parallel, list parts
and unfinished files (paging), finish, cancel, copy_part."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import trio

from b2fs.b2 import (
    B2Client,
    B2InvalidInput,
    Bucket,
    FileAction,
    FileSource,
    Part,
)

from .conftest import calls

PART = 5_000_000  # the emulator's absoluteMinimumPartSize

if TYPE_CHECKING:
    from b2fs.emulator import Emulator


@pytest.fixture
def staging(tmp_path: Path) -> tuple[Path, bytes]:
    data = hashlib.sha256(b"seed").digest() * ((2 * PART + 123_456) // 32 + 1)
    data = data[: 2 * PART + 123_456]
    path = tmp_path / "staging.bin"
    path.write_bytes(data)
    return path, data


async def test_three_parts_in_parallel(
    client: B2Client,
    bucket: Bucket,
    staging: tuple[Path, bytes],
    emulator: Emulator,
) -> None:
    path, data = staging
    assert client.account.absolute_minimum_part_size == PART
    started = await client.start_large_file(
        bucket.bucket_id,
        "big/file.bin",
        content_type="application/octet-stream",
        src_last_modified_millis=42,
        large_file_sha1=hashlib.sha1(data).hexdigest(),
    )
    assert started.action is FileAction.START and started.file_id
    large_id = started.file_id
    ranges = [(1, 0, PART), (2, PART, PART), (3, 2 * PART, len(data) - 2 * PART)]
    parts: dict[int, Part] = {}

    async def send(number: int, offset: int, length: int) -> None:
        parts[number] = await client.upload_part(
            large_id, number, FileSource(path, offset=offset, length=length)
        )

    async with trio.open_nursery() as nursery:
        for number, offset, length in ranges:
            nursery.start_soon(send, number, offset, length)
    for number, offset, length in ranges:
        assert (
            parts[number].content_sha1 == hashlib.sha1(data[offset : offset + length]).hexdigest()
        )
        assert parts[number].content_length == length
    assert calls(emulator, "b2_get_upload_part_url") == 3  # one URL per concurrent upload

    listed = [p async for p in client.list_parts(large_id, page_size=1)]
    assert [p.part_number for p in listed] == [1, 2, 3]
    assert [p.content_sha1 for p in listed] == [parts[n].content_sha1 for n in (1, 2, 3)]
    items, cursor = await client.list_parts_page(large_id, max_part_count=2)
    assert [p.part_number for p in items] == [1, 2] and cursor == 3

    unfinished = [f async for f in client.list_unfinished_large_files(bucket.bucket_id)]
    assert [f.file_id for f in unfinished] == [large_id]

    done = await client.finish_large_file(large_id, [parts[n].content_sha1 for n in (1, 2, 3)])
    assert done.action is FileAction.UPLOAD and done.content_length == len(data)
    assert done.file_info["src_last_modified_millis"] == "42"
    assert done.sha1 == hashlib.sha1(data).hexdigest() and not done.sha1_verified
    assert [f async for f in client.list_unfinished_large_files(bucket.bucket_id)] == []
    # The whole download is checked against large_file_sha1.
    async with client.download_file_by_id(done.file_id or "") as download:
        assert download.verifies_sha1
        assert await download.read() == data
    assert (
        await client.download_bytes_by_id(done.file_id or "", offset=PART - 5, length=10)
        == (data[PART - 5 : PART + 5])
    )


async def test_bytes_parts_and_part_url(client: B2Client, bucket: Bucket) -> None:
    started = await client.start_large_file(bucket.bucket_id, "two-parts")
    large_id = started.file_id or ""
    url = await client.get_upload_part_url(large_id)
    assert url.file_id == large_id
    first = b"a" * PART
    p1 = await client.upload_part(large_id, 1, first, upload_url=url)
    p2 = await client.upload_part(large_id, 2, b"tail", sha1=hashlib.sha1(b"tail").hexdigest())
    # Re-uploading a part number replaces it.
    p2 = await client.upload_part(large_id, 2, b"TAIL!")
    done = await client.finish_large_file(large_id, [p1.content_sha1, p2.content_sha1])
    assert done.content_length == PART + 5
    assert await client.download_bytes_by_id(done.file_id or "", offset=PART) == b"TAIL!"


async def test_cancel_and_unfinished_paging(client: B2Client, bucket: Bucket) -> None:
    ids = [(await client.start_large_file(bucket.bucket_id, f"u/{i}")).file_id for i in range(5)]
    listed = [
        f.file_id async for f in client.list_unfinished_large_files(bucket.bucket_id, page_size=2)
    ]
    assert sorted(listed) == sorted(ids)  # type: ignore[type-var]
    prefixed = [
        f.file_id
        async for f in client.list_unfinished_large_files(bucket.bucket_id, name_prefix="u/3")
    ]
    assert prefixed == [ids[3]]
    cancelled = await client.cancel_large_file(ids[0] or "")
    assert cancelled.file_id == ids[0] and cancelled.file_name == "u/0"
    remaining = [f.file_id async for f in client.list_unfinished_large_files(bucket.bucket_id)]
    assert ids[0] not in remaining and len(remaining) == 4


async def test_copy_part(client: B2Client, bucket: Bucket) -> None:
    source = await client.upload_file(bucket.bucket_id, "source", b"x" * PART + b"y" * 100)
    started = await client.start_large_file(bucket.bucket_id, "assembled")
    large_id = started.file_id or ""
    p1 = await client.copy_part(source.file_id or "", large_id, 1, offset=0, length=PART)
    p2 = await client.copy_part(source.file_id or "", large_id, 2, offset=PART, length=100)
    assert (p1.content_length, p2.content_length) == (PART, 100)
    assert p2.content_sha1 == hashlib.sha1(b"y" * 100).hexdigest()
    done = await client.finish_large_file(large_id, [p1.content_sha1, p2.content_sha1])
    assert done.content_length == PART + 100


async def test_large_file_refusals_make_no_request(client: B2Client, emulator: Emulator) -> None:
    before = sum(emulator.stats.calls().values())
    for number in (0, 10_001, -3):
        with pytest.raises(B2InvalidInput, match="part number"):
            await client.upload_part("some-large-id", number, b"x")
        with pytest.raises(B2InvalidInput, match="part number"):
            await client.copy_part("src", "some-large-id", number)
    with pytest.raises(B2InvalidInput, match="40 hexadecimal"):
        await client.finish_large_file("some-large-id", ["abc"])
    with pytest.raises(B2InvalidInput, match="large_file_sha1"):
        await client.start_large_file("bkt", "n", large_file_sha1="nope")
    with pytest.raises(B2InvalidInput, match="11 entries"):
        await client.start_large_file("bkt", "n", file_info={f"k{i}": "v" for i in range(11)})
    assert sum(emulator.stats.calls().values()) == before
