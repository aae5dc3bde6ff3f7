"""File calls against the emulator: uploads, info, hide, delete, copy, listings and paging."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from b2fs.b2 import (
    B2AlreadyHidden,
    B2Client,
    B2FileNotPresent,
    B2InvalidInput,
    B2NotFound,
    Bucket,
    FileAction,
    FileSource,
    FileVersion,
    FileVersionCursor,
)

from .conftest import calls

ODD_NAMES = [
    "plain.txt",
    "with space/and+plus.txt",
    "caf\u00e9/\u81ea\u7531/\U0001f600.bin",
    "percent%20literal & more?#[]{}|^`\"<>,;=:@!$'()*~",
    "dots/../and/./segments",
]

if TYPE_CHECKING:
    from b2fs.emulator import Emulator


async def test_upload_bytes_with_info(client: B2Client, bucket: Bucket) -> None:
    data = b"some content\n" * 100
    fv = await client.upload_file(
        bucket.bucket_id,
        "docs/a.txt",
        data,
        content_type="text/plain",
        file_info={"Author": "caf\u00e9 + tea", "b2-cache-control": "max-age=60"},
        src_last_modified_millis=1_700_000_000_123,
    )
    assert fv.action is FileAction.UPLOAD and fv.file_name == "docs/a.txt"
    assert fv.content_length == len(data) and fv.sha1 == hashlib.sha1(data).hexdigest()
    assert fv.content_type == "text/plain"
    assert fv.file_info["author"] == "caf\u00e9 + tea"
    assert fv.src_last_modified_millis == 1_700_000_000_123
    info = await client.get_file_info(fv.file_id or "")
    assert info.file_info == fv.file_info and info.sha1 == fv.sha1


@pytest.mark.parametrize("name", ODD_NAMES)
async def test_odd_names_round_trip(client: B2Client, bucket: Bucket, name: str) -> None:
    fv = await client.upload_file(bucket.bucket_id, name, name.encode())
    assert fv.file_name == name
    assert [f.file_name async for f in client.list_file_names(bucket.bucket_id)] == [name]
    async with client.download_file_by_name(bucket.bucket_name, name) as download:
        assert download.info.file_name == name
        assert await download.read() == name.encode()


async def test_upload_from_file_ranges_and_known_sha1(
    client: B2Client, bucket: Bucket, tmp_path: Path
) -> None:
    path = tmp_path / "staging"
    content = bytes(range(256)) * 8192  # 2 MiB: more than one chunk
    path.write_bytes(content)
    whole = await client.upload_file(bucket.bucket_id, "whole", FileSource(path))
    assert whole.content_length == len(content)
    middle = await client.upload_file(
        bucket.bucket_id,
        "middle",
        FileSource(path, offset=1000, length=300_000),
        sha1=hashlib.sha1(content[1000:301_000]).hexdigest(),
    )
    assert middle.sha1 == hashlib.sha1(content[1000:301_000]).hexdigest()
    assert await client.download_bytes_by_id(middle.file_id or "") == content[1000:301_000]
    empty = await client.upload_file(bucket.bucket_id, "empty", b"")
    assert empty.content_length == 0
    assert await client.download_bytes_by_id(empty.file_id or "") == b""


async def test_upload_url_pool_reuses_urls(
    client: B2Client, bucket: Bucket, emulator: Emulator
) -> None:
    for i in range(5):
        await client.upload_file(bucket.bucket_id, f"f{i}", b"x")
    assert calls(emulator, "b2_get_upload_url") == 1
    explicit = await client.get_upload_url(bucket.bucket_id)
    assert explicit.bucket_id == bucket.bucket_id
    await client.upload_file(bucket.bucket_id, "g", b"y", upload_url=explicit)
    assert calls(emulator, "b2_get_upload_url") == 2


async def test_parallel_uploads_use_one_url_each(
    client: B2Client, bucket: Bucket, emulator
) -> None:
    import trio

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(client.upload_file, bucket.bucket_id, f"p{i}", b"z" * 100_000)
    names = [f.file_name async for f in client.list_file_names(bucket.bucket_id)]
    assert names == [f"p{i}" for i in range(8)]
    # Never two uploads on one URL (the emulator refuses that with auth_token_limit).
    assert calls(emulator, "b2_get_upload_url") <= 8
    assert client.stats.errors_by_code == {}


async def test_hide_and_delete(client: B2Client, bucket: Bucket) -> None:
    v1 = await client.upload_file(bucket.bucket_id, "doc", b"one")
    v2 = await client.upload_file(bucket.bucket_id, "doc", b"two")
    marker = await client.hide_file(bucket.bucket_id, "doc")
    assert marker.is_hide_marker and marker.file_name == "doc" and marker.content_length == 0
    assert [f async for f in client.list_file_names(bucket.bucket_id)] == []
    versions = [f async for f in client.list_file_versions(bucket.bucket_id)]
    assert [(v.action, v.file_id) for v in versions] == [
        (FileAction.HIDE, marker.file_id),
        (FileAction.UPLOAD, v2.file_id),
        (FileAction.UPLOAD, v1.file_id),
    ]
    with pytest.raises(B2AlreadyHidden):
        await client.hide_file(bucket.bucket_id, "doc")
    with pytest.raises(B2NotFound):
        await client.download_bytes_by_name(bucket.bucket_name, "doc")
    deleted = await client.delete_file_version(marker.file_id or "", "doc")
    assert (deleted.file_id, deleted.file_name) == (marker.file_id, "doc")
    assert await client.download_bytes_by_name(bucket.bucket_name, "doc") == b"two"
    await client.delete_file_version(v2.file_id or "", "doc")
    assert await client.download_bytes_by_name(bucket.bucket_name, "doc") == b"one"
    with pytest.raises(B2FileNotPresent):
        await client.delete_file_version(v2.file_id or "", "doc")
    with pytest.raises(B2FileNotPresent):
        await client.hide_file(bucket.bucket_id, "never-existed")
    with pytest.raises(B2NotFound):
        await client.get_file_info(v2.file_id or "")


async def test_copy_file(client: B2Client, bucket: Bucket) -> None:
    source = await client.upload_file(
        bucket.bucket_id,
        "src.txt",
        b"0123456789",
        content_type="text/plain",
        file_info={"color": "blue"},
        src_last_modified_millis=5,
    )
    plain = await client.copy_file(source.file_id or "", "copy.txt")
    assert plain.action in (FileAction.COPY, FileAction.UPLOAD)
    assert plain.file_info == source.file_info and plain.content_type == "text/plain"
    assert await client.download_bytes_by_id(plain.file_id or "") == b"0123456789"

    replaced = await client.copy_file(
        source.file_id or "",
        "src.txt",
        content_type="application/x-test",
        file_info={"mode": "644"},
        src_last_modified_millis=99,
    )
    assert replaced.content_type == "application/x-test"
    assert dict(replaced.file_info) == {"mode": "644", "src_last_modified_millis": "99"}

    part = await client.copy_file(source.file_id or "", "part.txt", offset=2, length=5)
    assert part.content_length == 5
    assert await client.download_bytes_by_id(part.file_id or "") == b"23456"

    other = await client.create_bucket("copy-destination")
    moved = await client.copy_file(
        source.file_id or "", "elsewhere.txt", destination_bucket_id=other.bucket_id
    )
    assert moved.bucket_id == other.bucket_id
    with pytest.raises(B2InvalidInput, match="needs a content_type"):
        await client.copy_file(source.file_id or "", "x", file_info={"a": "b"})
    with pytest.raises(B2InvalidInput, match="needs a length"):
        await client.copy_file(source.file_id or "", "x", offset=3)


PHOTOS = [
    "photos/alfred.jpg",
    "photos/alice.jpg",
    "photos/cats/fluffy.jpg",
    "photos/cats/mittens.jpg",
    "photos/dogs/spot.jpg",
    "photos/lilly.jpg",
    "readme.txt",
]


async def upload_all(client: B2Client, bucket: Bucket, names: list[str]) -> list[FileVersion]:
    return [await client.upload_file(bucket.bucket_id, n, n.encode()) for n in names]


async def test_prefix_and_delimiter(client: B2Client, bucket: Bucket) -> None:
    await upload_all(client, bucket, PHOTOS)
    rows = [
        f async for f in client.list_file_names(bucket.bucket_id, prefix="photos/", delimiter="/")
    ]
    assert [(r.file_name, r.action) for r in rows] == [
        ("photos/alfred.jpg", FileAction.UPLOAD),
        ("photos/alice.jpg", FileAction.UPLOAD),
        ("photos/cats/", FileAction.FOLDER),
        ("photos/dogs/", FileAction.FOLDER),
        ("photos/lilly.jpg", FileAction.UPLOAD),
    ]
    assert rows[2].file_id is None
    top = [f.file_name async for f in client.list_file_names(bucket.bucket_id, delimiter="/")]
    assert top == ["photos/", "readme.txt"]
    cats = [f.file_name async for f in client.list_file_names(bucket.bucket_id, prefix="photos/c")]
    assert cats == ["photos/cats/fluffy.jpg", "photos/cats/mittens.jpg"]
    # Folder rows also page correctly one at a time.
    paged = [
        f.file_name
        async for f in client.list_file_names(
            bucket.bucket_id, prefix="photos/", delimiter="/", page_size=1
        )
    ]
    assert paged == [r.file_name for r in rows]


async def test_paging_file_names_past_page_boundaries(client: B2Client, bucket: Bucket) -> None:
    names = [f"n/{i:03d}" for i in range(23)]
    await upload_all(client, bucket, names)
    before = client.stats.requests["b2_list_file_names"]
    listed = [f.file_name async for f in client.list_file_names(bucket.bucket_id, page_size=5)]
    assert listed == names
    assert client.stats.requests["b2_list_file_names"] - before == 5
    items, cursor = await client.list_file_names_page(bucket.bucket_id, max_file_count=10)
    assert [f.file_name for f in items] == names[:10] and cursor is not None
    items, cursor = await client.list_file_names_page(
        bucket.bucket_id, start_file_name=cursor, max_file_count=20
    )
    assert [f.file_name for f in items] == names[10:] and cursor is None
    started = [
        f.file_name async for f in client.list_file_names(bucket.bucket_id, start_file_name="n/020")
    ]
    assert started == names[20:]


async def test_paging_file_versions_within_one_name(client: B2Client, bucket: Bucket) -> None:
    ids = []
    for i in range(7):
        ids.append((await client.upload_file(bucket.bucket_id, "same", str(i).encode())).file_id)
    await client.upload_file(bucket.bucket_id, "zz", b"last")
    versions = [f async for f in client.list_file_versions(bucket.bucket_id, page_size=3)]
    assert [v.file_id for v in versions[:7]] == list(reversed(ids))  # newest first
    assert versions[7].file_name == "zz" and len(versions) == 8
    items, cursor = await client.list_file_versions_page(bucket.bucket_id, max_file_count=2)
    assert isinstance(cursor, FileVersionCursor)
    assert cursor.file_name == "same" and cursor.file_id == ids[4]
    items, _ = await client.list_file_versions_page(
        bucket.bucket_id,
        start_file_name=cursor.file_name,
        start_file_id=cursor.file_id,
        max_file_count=1,
    )
    assert items[0].file_id == ids[4]


async def test_listing_refusals_make_no_request(
    client: B2Client, bucket: Bucket, emulator: Emulator
) -> None:
    before = sum(emulator.stats.calls().values())
    with pytest.raises(B2InvalidInput):
        client.list_file_names(bucket.bucket_id, page_size=10_001)
    with pytest.raises(B2InvalidInput):
        client.list_file_versions(bucket.bucket_id, start_file_id="x")
    with pytest.raises(B2InvalidInput):
        await client.list_file_names_page(bucket.bucket_id, delimiter="//")
    assert sum(emulator.stats.calls().values()) == before
