"""Application keys against the emulator: create, list (paging), delete, and what a key limited
to a bucket and a name prefix may do."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from b2fs.b2 import (
    B2AccessDenied,
    B2BadCredentials,
    B2Client,
    B2InvalidInput,
    Bucket,
    NewApplicationKey,
)

from .conftest import calls

FILE_CAPS = ["listBuckets", "listFiles", "readFiles", "writeFiles", "deleteFiles"]

if TYPE_CHECKING:
    from b2fs.emulator import Emulator


MakeKey = Callable[..., Awaitable[NewApplicationKey]]


@pytest.fixture
def make_key(client: B2Client, register_secret: Callable[[str], None]) -> MakeKey:
    """Create a key, and have the suite-wide check look for its secret in the output too."""

    async def make(name: str, caps: list[str], **options: Any) -> NewApplicationKey:
        key = await client.create_key(name, caps, **options)
        register_secret(key.application_key)
        return key

    return make


async def test_create_list_delete(client: B2Client, bucket: Bucket, make_key: MakeKey) -> None:
    created = [
        await make_key(f"key-{i}", ["listFiles"], valid_duration_seconds=3600) for i in range(5)
    ]
    assert all(k.application_key and k.key_name.startswith("key-") for k in created)
    assert created[0].expiration_timestamp is not None
    assert created[0].application_key not in repr(created[0])
    listed = [k async for k in client.list_keys(page_size=2)]
    listed_ids = {k.application_key_id for k in listed}
    assert {k.application_key_id for k in created} <= listed_ids
    items, cursor = await client.list_keys_page(max_key_count=2)
    assert len(items) == 2 and cursor is not None
    deleted = await client.delete_key(created[0].application_key_id)
    assert deleted.application_key_id == created[0].application_key_id
    assert not hasattr(deleted, "application_key")
    remaining = {k.application_key_id async for k in client.list_keys()}
    assert created[0].application_key_id not in remaining


async def test_restricted_key(
    client: B2Client, bucket: Bucket, emulator: Emulator, make_key: MakeKey
) -> None:
    other = await client.create_bucket("other-bucket-1")
    await client.upload_file(bucket.bucket_id, "inside/a.txt", b"in")
    await client.upload_file(bucket.bucket_id, "outside/b.txt", b"out")
    outside_other = await client.upload_file(other.bucket_id, "inside/c.txt", b"other")
    key = await make_key("restricted", FILE_CAPS, bucket_id=bucket.bucket_id, name_prefix="inside/")
    assert key.bucket_id == bucket.bucket_id and key.name_prefix == "inside/"
    restricted = await B2Client.connect(
        key.application_key_id, key.application_key, endpoint=emulator.url
    )
    async with restricted:
        allowed = restricted.allowed
        assert (allowed.bucket_id, allowed.bucket_name, allowed.name_prefix) == (
            bucket.bucket_id,
            bucket.bucket_name,
            "inside/",
        )
        assert allowed.can("writeFiles") and not allowed.can("writeKeys")
        # Inside: works (and listing defaults to the key's bucket and prefix).
        assert [b.bucket_id for b in await restricted.list_buckets()] == [bucket.bucket_id]
        names = [f.file_name async for f in restricted.list_file_names(bucket.bucket_id)]
        assert names == ["inside/a.txt"]
        uploaded = await restricted.upload_file(bucket.bucket_id, "inside/new.txt", b"new")
        assert await restricted.download_bytes_by_name(bucket.bucket_name, "inside/a.txt") == b"in"
        await restricted.delete_file_version(uploaded.file_id or "", "inside/new.txt")
        # Outside the prefix, or in another bucket: access denied.
        with pytest.raises(B2AccessDenied):
            await restricted.upload_file(bucket.bucket_id, "outside/x.txt", b"no")
        with pytest.raises(B2AccessDenied):
            await restricted.list_file_names_page(bucket.bucket_id, prefix="outside/")
        with pytest.raises(B2AccessDenied):
            await restricted.download_bytes_by_name(bucket.bucket_name, "outside/b.txt")
        with pytest.raises(B2AccessDenied):
            await restricted.upload_file(other.bucket_id, "inside/x.txt", b"no")
        with pytest.raises(B2AccessDenied):
            await restricted.download_bytes_by_id(outside_other.file_id or "")
        with pytest.raises(B2AccessDenied):
            await restricted.list_buckets(bucket_id=other.bucket_id)
        with pytest.raises(B2AccessDenied):
            await restricted.create_key("sneaky", ["listFiles"])
    assert calls(emulator, "b2_authorize_account") >= 2


async def test_deleted_key_is_refused(
    client: B2Client, emulator: Emulator, make_key: MakeKey
) -> None:
    key = await make_key("short-lived", ["listBuckets"])
    await client.delete_key(key.application_key_id)
    before = calls(emulator, "b2_authorize_account")
    with pytest.raises(B2BadCredentials, match="application key was refused"):
        await B2Client.connect(key.application_key_id, key.application_key, endpoint=emulator.url)
    assert calls(emulator, "b2_authorize_account") == before + 1  # no retry loop


async def test_wrong_secret(emulator: Emulator) -> None:
    with pytest.raises(B2BadCredentials):
        await B2Client.connect(emulator.master_key_id, "K" + "x" * 30, endpoint=emulator.url)
    assert calls(emulator, "b2_authorize_account") == 1


async def test_key_refusals_make_no_request(client: B2Client, emulator: Emulator) -> None:
    before = sum(emulator.stats.calls().values())
    with pytest.raises(B2InvalidInput):
        await client.create_key("bad name", ["listFiles"])
    with pytest.raises(B2InvalidInput):
        await client.create_key("ok", [])
    with pytest.raises(B2InvalidInput, match="needs a bucket_id"):
        await client.create_key("ok", ["listFiles"], name_prefix="x/")
    with pytest.raises(B2InvalidInput):
        await client.create_key("ok", ["listFiles"], valid_duration_seconds=0)
    assert sum(emulator.stats.calls().values()) == before
