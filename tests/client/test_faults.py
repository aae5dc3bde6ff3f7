"""Injected faults against the emulator: token expiry during a burst, 429/500/503, connection
resets mid-body on downloads (resumed) and uploads (retried on a fresh URL)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest
import trio

from b2fs.b2 import (
    B2Client,
    B2ConnectionError,
    B2ServiceUnavailable,
    Bucket,
    RetryPolicy,
)

from .conftest import calls, connect_to

BLOB = bytes((i * 31) % 251 for i in range(4 * 1024 * 1024))

if TYPE_CHECKING:
    from b2fs.emulator import Emulator


async def test_token_expiry_during_a_burst_reauthorizes_once(
    client: B2Client,
    bucket: Bucket,
    emulator: Emulator,
) -> None:
    for i in range(3):
        await client.upload_file(bucket.bucket_id, f"f{i}", b"x")
    assert calls(emulator, "b2_authorize_account") == 1
    emulator.expire_tokens()
    results: list[int] = []

    async def one(i: int) -> None:
        if i % 2:
            results.append(len(await client.list_buckets()))
        else:
            results.append(len((await client.list_file_names_page(bucket.bucket_id)).items))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(one, i)
    assert sorted(results) == [1] * 10 + [3] * 10
    assert calls(emulator, "b2_authorize_account") == 2  # exactly one re-authorization
    assert client.stats.reauthorizations == 1
    assert client.stats.errors_by_code[(401, "expired_auth_token")] >= 1


async def test_expired_token_on_download_and_injected_401(
    client: B2Client,
    bucket: Bucket,
    emulator: Emulator,
) -> None:
    fv = await client.upload_file(bucket.bucket_id, "d", b"payload")
    emulator.expire_tokens()
    assert await client.download_bytes_by_id(fv.file_id or "") == b"payload"
    emulator.faults.script("api", "401", 1)
    assert len(await client.list_buckets()) == 1
    assert calls(emulator, "b2_authorize_account") == 3


async def test_429_is_retried(client: B2Client, bucket: Bucket, emulator: Emulator) -> None:
    emulator.faults.script("api", "429@0", 2)
    assert len(await client.list_buckets()) == 1
    assert client.stats.retries["b2_list_buckets"] == 2
    assert client.stats.errors_by_code[(429, "too_many_requests")] == 2


async def test_retry_after_from_the_server_is_used(
    emulator: Emulator, bucket: Bucket, client: B2Client
) -> None:
    emulator.faults.script("b2_list_buckets", "429@1", 1)
    start = trio.current_time()
    await client.list_buckets()
    assert trio.current_time() - start >= 1.0  # the policy's own delays are milliseconds


async def test_500_on_api_calls_is_retried(
    client: B2Client, bucket: Bucket, emulator: Emulator
) -> None:
    emulator.faults.script("api", "500", 2)
    names = await client.list_file_names_page(bucket.bucket_id)
    assert names.items == []
    assert client.stats.retries["b2_list_file_names"] == 2


async def test_503_on_upload_takes_a_new_upload_url(
    client: B2Client,
    bucket: Bucket,
    emulator: Emulator,
) -> None:
    await client.upload_file(bucket.bucket_id, "warm", b"pool")  # one URL in the pool
    assert calls(emulator, "b2_get_upload_url") == 1
    emulator.faults.script("upload", "503", 1)
    fv = await client.upload_file(bucket.bucket_id, "after-503", b"data")
    assert fv.content_length == 4
    assert calls(emulator, "b2_get_upload_url") == 2  # the failed URL was not reused
    assert client.stats.retries["b2_upload_file"] == 1
    assert await client.download_bytes_by_id(fv.file_id or "") == b"data"


async def test_reset_during_upload_is_retried(
    client: B2Client, bucket: Bucket, emulator: Emulator
) -> None:
    emulator.faults.script("upload", "reset", 1)
    fv = await client.upload_file(bucket.bucket_id, "big", BLOB)
    assert fv.sha1 == hashlib.sha1(BLOB).hexdigest()
    assert calls(emulator, "b2_get_upload_url") == 2
    assert client.stats.retries["b2_upload_file"] == 1
    # Traffic: the successful attempt plus whatever the reset one had sent.
    assert len(BLOB) + 40 < client.stats.bytes_uploaded <= 2 * (len(BLOB) + 40)


async def test_reset_during_part_upload_is_retried(
    client: B2Client,
    bucket: Bucket,
    emulator: Emulator,
) -> None:
    started = await client.start_large_file(bucket.bucket_id, "large")
    emulator.faults.script("upload", "reset", 1)
    part = await client.upload_part(started.file_id or "", 1, BLOB)
    assert part.content_sha1 == hashlib.sha1(BLOB).hexdigest()
    assert calls(emulator, "b2_get_upload_part_url") == 2


async def test_reset_mid_download_resumes(
    client: B2Client, bucket: Bucket, emulator: Emulator
) -> None:
    fv = await client.upload_file(bucket.bucket_id, "blob", BLOB)
    downloads_before = calls(emulator, "b2_download_file_by_id")
    emulator.faults.script("download", "reset", 2)
    bytes_before = client.stats.bytes_downloaded
    assert await client.download_bytes_by_id(fv.file_id or "") == BLOB
    assert calls(emulator, "b2_download_file_by_id") - downloads_before == 3
    # Resumed, not restarted: every byte crossed the wire once (and the SHA1 was checked).
    assert client.stats.bytes_downloaded - bytes_before == len(BLOB)
    assert client.stats.retries["b2_download_file_by_id"] == 2


async def test_reset_mid_ranged_download_by_name_resumes(
    client: B2Client,
    bucket: Bucket,
    emulator: Emulator,
) -> None:
    await client.upload_file(bucket.bucket_id, "blob", BLOB)
    emulator.faults.script("download", "reset", 1)
    data = await client.download_bytes_by_name(
        bucket.bucket_name, "blob", offset=1000, length=3_000_000
    )
    assert data == BLOB[1000:3_001_000]


async def test_a_stream_reports_a_reset_instead_of_resuming(
    client: B2Client,
    bucket: Bucket,
    emulator: Emulator,
) -> None:
    fv = await client.upload_file(bucket.bucket_id, "blob", BLOB)
    emulator.faults.script("download", "reset", 1)
    with pytest.raises(B2ConnectionError):
        async with client.download_file_by_id(fv.file_id or "") as download:
            await download.read()


async def test_faults_on_authorize_are_retried(emulator: Emulator) -> None:
    emulator.faults.script("auth", "503", 2)
    client = await connect_to(emulator)
    async with client:
        assert client.stats.retries["b2_authorize_account"] == 2
        assert calls(emulator, "b2_authorize_account") == 3


async def test_retries_are_capped(emulator: Emulator, bucket: Bucket) -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=0.001, max_delay=0.001)
    async with await connect_to(emulator, retry_policy=policy) as capped:
        before = calls(emulator, "b2_list_buckets")
        emulator.faults.script("b2_list_buckets", "503", 10)
        with pytest.raises(B2ServiceUnavailable) as caught:
            await capped.list_buckets()
        assert caught.value.endpoint == "b2_list_buckets"
        assert calls(emulator, "b2_list_buckets") - before == 3
        emulator.faults.clear()
