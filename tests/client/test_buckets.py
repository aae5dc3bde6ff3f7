"""Bucket calls against the emulator: create, list, get, update, delete."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from b2fs.b2 import (
    B2BucketNotEmpty,
    B2BucketNotFound,
    B2Client,
    B2Conflict,
    B2DuplicateBucketName,
    B2InvalidInput,
    B2NotFound,
    Bucket,
    LifecycleRule,
)

from .conftest import calls

if TYPE_CHECKING:
    from b2fs.emulator import Emulator


async def test_create_list_get_delete(client: B2Client) -> None:
    created = await client.create_bucket(
        "bucket-alpha",
        "allPublic",
        bucket_info={"purpose": "test"},
        lifecycle_rules=[LifecycleRule("logs/", days_from_hiding_to_deleting=3)],
    )
    await client.create_bucket("bucket-beta")
    assert created.bucket_name == "bucket-alpha" and created.bucket_type == "allPublic"
    assert created.bucket_info == {"purpose": "test"}
    assert created.lifecycle_rules == (LifecycleRule("logs/", None, 3),)
    assert created.account_id == client.account_id

    names = [b.bucket_name for b in await client.list_buckets()]
    assert names == sorted(names) and {"bucket-alpha", "bucket-beta"} <= set(names)
    assert [b.bucket_id for b in await client.list_buckets(bucket_name="bucket-alpha")] == [
        created.bucket_id
    ]
    assert [b.bucket_name for b in await client.list_buckets(bucket_id=created.bucket_id)] == [
        "bucket-alpha"
    ]
    assert await client.list_buckets(bucket_name="no-such-bucket") == []
    assert (await client.get_bucket("bucket-alpha")).bucket_id == created.bucket_id
    with pytest.raises(B2NotFound):
        await client.get_bucket("no-such-bucket")

    deleted = await client.delete_bucket(created.bucket_id)
    assert deleted.bucket_id == created.bucket_id
    assert await client.list_buckets(bucket_name="bucket-alpha") == []
    with pytest.raises(B2BucketNotFound):
        await client.delete_bucket(created.bucket_id)


async def test_duplicate_name(client: B2Client, bucket: Bucket) -> None:
    with pytest.raises(B2DuplicateBucketName):
        await client.create_bucket(bucket.bucket_name)


async def test_update_and_revision_check(client: B2Client, bucket: Bucket) -> None:
    updated = await client.update_bucket(
        bucket.bucket_id, bucket_type="allPublic", bucket_info={"k": "v"}
    )
    assert updated.bucket_type == "allPublic" and updated.bucket_info == {"k": "v"}
    assert updated.revision is not None and bucket.revision is not None
    assert updated.revision > bucket.revision
    again = await client.update_bucket(
        bucket.bucket_id, bucket_type="allPrivate", if_revision_is=updated.revision
    )
    assert again.bucket_type == "allPrivate" and again.bucket_info == {"k": "v"}
    with pytest.raises(B2Conflict):
        await client.update_bucket(
            bucket.bucket_id, bucket_type="allPublic", if_revision_is=updated.revision
        )


async def test_delete_non_empty(client: B2Client, bucket: Bucket) -> None:
    await client.upload_file(bucket.bucket_id, "f", b"x")
    with pytest.raises(B2BucketNotEmpty):
        await client.delete_bucket(bucket.bucket_id)


async def test_bucket_refusals_make_no_request(client: B2Client, emulator: Emulator) -> None:
    before = sum(emulator.stats.calls().values())
    for name in ("short", "b2-reserved-name", "has_underscore", "x" * 64):
        with pytest.raises(B2InvalidInput):
            await client.create_bucket(name)
    with pytest.raises(B2InvalidInput):
        await client.create_bucket("good-name-1", "snapshot")  # type: ignore[arg-type]
    with pytest.raises(B2InvalidInput, match="at least one setting"):
        await client.update_bucket("some-id")
    assert sum(emulator.stats.calls().values()) == before
    assert calls(emulator, "b2_create_bucket") == 0
