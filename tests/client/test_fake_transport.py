"""The client against a scripted fake transport (no sockets): single-flight re-authorization,
refused keys, redaction of secrets, the exact shape of upload requests, URL pooling, and
retries on trio's MockClock."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from b2fs.b2 import (
    B2AccessDenied,
    B2BadCredentials,
    B2BadRequest,
    B2ChecksumMismatch,
    B2Client,
    B2ConnectionError,
    B2InvalidInput,
    B2RangeNotSatisfiable,
    B2SourceError,
    B2UnexpectedResponse,
    FileSource,
    RetryPolicy,
)

from .fakeb2 import HOST, KEY, KEY_ID, FakeB2, bucket_json, error, list_buckets_ok

FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)


async def connect(fake: FakeB2, **options: Any) -> B2Client:
    options.setdefault("retry_policy", FAST)
    return await B2Client.connect(KEY_ID, KEY, endpoint=HOST, transport=fake.transport(), **options)


async def test_connect_parses_v3_and_sends_basic_auth() -> None:
    fake = FakeB2()
    async with await connect(fake) as client:
        assert client.account.api_url == HOST
        assert client.allowed.can("listBuckets")
        request = fake.requests[0]
        assert request.method == "GET"
        assert request.url.path == "/b2api/v3/b2_authorize_account"
    assert KEY not in repr(client)


async def test_a_burst_with_an_expired_token_reauthorizes_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeB2()
    fake.handlers["b2_list_buckets"] = list_buckets_ok
    client = await connect(fake)
    fake.expire_tokens()
    fake.authorize_delay = 0.5  # every request fails while the leader is still authorizing
    results: list[int] = []

    async def one() -> None:
        results.append(len(await client.list_buckets()))

    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
    assert results == [1] * 20
    assert fake.calls["b2_authorize_account"] == 2  # connect + exactly one renewal
    assert client.stats.reauthorizations == 1
    assert fake.calls["b2_list_buckets"] == 40  # each: once refused, once served
    await client.aclose()


async def test_a_stale_failure_after_renewal_does_not_authorize_again() -> None:
    fake = FakeB2()
    fake.handlers["b2_list_buckets"] = list_buckets_ok
    client = await connect(fake)
    fake.expire_tokens()
    await client.list_buckets()
    assert fake.calls["b2_authorize_account"] == 2
    # A second expiry is a new event: one more authorize.
    fake.expire_tokens()
    await client.list_buckets()
    assert fake.calls["b2_authorize_account"] == 3
    await client.aclose()


async def test_a_refused_key_is_a_clear_error_not_a_loop() -> None:
    fake = FakeB2()
    fake.refuse_key = True
    with pytest.raises(B2BadCredentials) as caught:
        await connect(fake)
    assert "application key was refused" in str(caught.value)
    assert caught.value.endpoint == "b2_authorize_account"
    assert fake.calls["b2_authorize_account"] == 1
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)


async def test_key_revoked_while_running_fails_all_waiters_with_one_authorize(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeB2()
    fake.handlers["b2_list_buckets"] = list_buckets_ok
    client = await connect(fake)
    fake.expire_tokens()
    fake.refuse_key = True
    fake.authorize_delay = 0.5
    failures: list[BaseException] = []

    async def one() -> None:
        try:
            await client.list_buckets()
        except B2BadCredentials as exc:
            failures.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(5):
            nursery.start_soon(one)
    assert len(failures) == 5
    assert len({id(f) for f in failures}) == 5  # each task raised its own exception object
    assert fake.calls["b2_authorize_account"] == 2
    await client.aclose()


async def test_tokens_in_server_messages_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeB2()

    async def echo_token(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        return error(400, "bad_request", f"token {request.headers['authorization']} and {KEY}")

    fake.handlers["b2_list_buckets"] = echo_token
    client = await connect(fake)
    with pytest.raises(B2BadRequest) as caught:
        await client.list_buckets()
    text = f"{caught.value} {caught.value!r} {caplog.text}"
    assert fake.current_token not in text and KEY not in text
    assert "<redacted>" in str(caught.value)
    await client.aclose()


async def test_upload_request_shape_and_url_pool() -> None:
    fake = FakeB2()
    issued: list[str] = []

    async def get_upload_url(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        token = f"upload-token-{len(issued)}-secret"
        issued.append(token)
        return httpx.Response(
            200,
            json={
                "bucketId": data["bucketId"],
                "authorizationToken": token,
                "uploadUrl": f"{HOST}/b2api/v3/b2_upload_file/bkt1/n{len(issued)}",
            },
        )

    received: list[tuple[httpx.Request, bytes]] = []

    async def upload(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        body = await request.aread()
        received.append((request, body))
        if request.headers["authorization"] not in issued:
            return error(401, "bad_auth_token", "")
        at_end = request.headers["x-bz-content-sha1"] == "hex_digits_at_end"
        content = body[:-40] if at_end else body
        return httpx.Response(
            200,
            json={
                "action": "upload",
                "fileId": f"id{len(received)}",
                "fileName": "x",
                "contentLength": len(content),
                "contentSha1": hashlib.sha1(content).hexdigest(),
                "fileInfo": {},
                "bucketId": "bkt1",
                "uploadTimestamp": 1,
            },
        )

    fake.handlers["b2_get_upload_url"] = get_upload_url
    fake.handlers["b2_upload_file"] = upload
    client = await connect(fake, upload_chunk_size=1000)
    data = bytes(range(256)) * 20  # 5120 bytes: several chunks
    version = await client.upload_file(
        "bkt1",
        "dir/a b+c\u00e9.txt",
        data,
        content_type="text/plain",
        file_info={"Note": "x y"},
        src_last_modified_millis=1234,
    )
    assert version.content_length == len(data)
    request, body = received[0]
    assert request.headers["content-length"] == str(len(data) + 40)
    assert "transfer-encoding" not in request.headers
    assert request.headers["x-bz-content-sha1"] == "hex_digits_at_end"
    assert body == data + hashlib.sha1(data).hexdigest().encode()
    assert request.headers["x-bz-file-name"] == "dir/a%20b%2Bc%C3%A9.txt"
    assert request.headers["x-bz-info-note"] == "x%20y"
    assert request.headers["x-bz-info-src_last_modified_millis"] == "1234"
    assert request.headers["content-type"] == "text/plain"
    # A second upload reuses the pooled URL; a known SHA1 goes up front.
    await client.upload_file("bkt1", "two", b"hello", sha1=hashlib.sha1(b"hello").hexdigest())
    assert fake.calls["b2_get_upload_url"] == 1
    request, body = received[1]
    assert body == b"hello" and request.headers["content-length"] == "5"
    assert request.headers["x-bz-content-sha1"] == hashlib.sha1(b"hello").hexdigest()
    await client.aclose()


async def test_an_upload_failure_takes_a_fresh_url() -> None:
    fake = FakeB2()
    fetched = 0

    async def get_upload_url(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        nonlocal fetched
        fetched += 1
        return httpx.Response(
            200,
            json={
                "bucketId": "bkt1",
                "authorizationToken": f"utok-{fetched}-secret",
                "uploadUrl": f"{HOST}/b2api/v3/b2_upload_file/bkt1/n{fetched}",
            },
        )

    seen_urls: list[str] = []

    async def upload(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        seen_urls.append(str(request.url))
        body = await request.aread()
        if len(seen_urls) == 1:
            return error(503, "service_unavailable", "pod busy")
        return httpx.Response(
            200,
            json={
                "action": "upload",
                "fileId": "id",
                "fileName": "f",
                "contentLength": len(body) - 40,
                "contentSha1": body[-40:].decode(),
            },
        )

    fake.handlers["b2_get_upload_url"] = get_upload_url
    fake.handlers["b2_upload_file"] = upload
    client = await connect(fake)
    await client.upload_file("bkt1", "f", b"data")
    assert fetched == 2 and seen_urls[0] != seen_urls[1]
    assert client.stats.retries["b2_upload_file"] == 1
    await client.aclose()


async def test_connection_errors_and_retry_after_on_the_mock_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeB2()
    script: list[str] = ["reset", "429", "ok"]

    async def flaky(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        step = script.pop(0)
        if step == "reset":
            raise httpx.ReadError("connection reset by peer")
        if step == "429":
            return error(429, "too_many_requests", "slow down", **{"Retry-After": "30"})
        return httpx.Response(200, json={"buckets": [bucket_json()]})

    fake.handlers["b2_list_buckets"] = flaky
    client = await connect(fake, retry_policy=RetryPolicy(base_delay=1.0, max_delay=1.0))
    start = trio.current_time()
    assert len(await client.list_buckets()) == 1
    elapsed = trio.current_time() - start
    assert 30.0 <= elapsed <= 31.0  # <= 1 s jittered backoff, then exactly Retry-After
    snapshot = client.stats.snapshot()
    assert snapshot["retries"] == {"b2_list_buckets": 2}
    assert snapshot["errors_by_code"] == {"0 connection_error": 1, "429 too_many_requests": 1}
    await client.aclose()


async def test_exhausted_connection_retries_raise_a_connection_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fake = FakeB2()

    async def down(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    fake.handlers["b2_list_buckets"] = down
    client = await connect(fake, retry_policy=RetryPolicy(max_attempts=3))
    with pytest.raises(B2ConnectionError) as caught:
        await client.list_buckets()
    assert caught.value.retryable and caught.value.endpoint == "b2_list_buckets"
    assert fake.calls["b2_list_buckets"] == 3
    await client.aclose()


async def test_non_json_errors_and_bodies() -> None:
    fake = FakeB2()

    async def html(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        return httpx.Response(403, text="<html>Forbidden</html>")

    async def garbage(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, text="not json")

    fake.handlers["b2_list_buckets"] = html
    fake.handlers["b2_get_file_info"] = garbage
    client = await connect(fake)
    with pytest.raises(B2AccessDenied) as caught:
        await client.list_buckets()
    assert caught.value.code == "non_json_response" and caught.value.status == 403
    with pytest.raises(B2UnexpectedResponse):
        await client.get_file_info("some-id")
    await client.aclose()


async def test_restricted_key_defaults(autojump_clock: trio.testing.MockClock) -> None:
    fake = FakeB2()
    fake.allowed = {"bucketId": "bkt1", "bucketName": "bucket-one", "namePrefix": "photos/"}
    bodies: list[dict[str, Any]] = []

    async def record(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        bodies.append(data)
        if request.url.path.endswith("b2_list_buckets"):
            return httpx.Response(200, json={"buckets": [bucket_json()]})
        return httpx.Response(200, json={"files": [], "nextFileName": None})

    fake.handlers["b2_list_buckets"] = record
    fake.handlers["b2_list_file_names"] = record
    client = await connect(fake)
    await client.list_buckets()
    assert bodies[-1]["bucketId"] == "bkt1"
    assert await client.list_file_names("bkt1").collect() == []
    assert bodies[-1]["prefix"] == "photos/"
    await client.list_file_names_page("bkt1", prefix="photos/2024/")
    assert bodies[-1]["prefix"] == "photos/2024/"
    await client.aclose()


async def test_bad_input_sends_nothing() -> None:
    fake = FakeB2()
    client = await connect(fake)
    before = len(fake.requests)
    with pytest.raises(B2InvalidInput):
        await client.upload_file("bkt1", "bad\nname", b"x")
    with pytest.raises(B2InvalidInput):
        await client.create_bucket("no")
    with pytest.raises(B2InvalidInput):
        await client.upload_part("large", 10_001, b"x")
    with pytest.raises(B2InvalidInput):
        client.list_file_names("bkt1", page_size=0)
    with pytest.raises(B2InvalidInput):
        async with client.download_file_by_id("id", offset=-1):
            pass
    assert len(fake.requests) == before
    await client.aclose()


CONTENT = bytes(range(256)) * 1000  # 256,000 bytes
CONTENT_SHA1 = hashlib.sha1(CONTENT).hexdigest()


class FakeDownloads:
    """Serves CONTENT by id and by name; can ignore ranges, lie about the SHA1, break bodies."""

    def __init__(self, fake: FakeB2) -> None:
        self.ranges: list[str | None] = []
        self.paths: list[str] = []
        self.ignore_range = False
        self.sha1 = CONTENT_SHA1
        self.breaks: list[int] = []  # break the next bodies after these many bytes
        self.file_ids = ["4_zfile1"]
        fake.handlers["b2_download_file_by_id"] = self.serve
        fake.handlers["file"] = self.serve

    async def serve(self, request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        self.paths.append(request.url.raw_path.split(b"?")[0].decode())
        header = request.headers.get("range")
        self.ranges.append(header)
        file_id = self.file_ids[0] if len(self.file_ids) == 1 else self.file_ids.pop(0)
        headers = {
            "x-bz-file-id": file_id,
            "x-bz-file-name": "dir/f%20x",
            "x-bz-content-sha1": self.sha1,
            "x-bz-upload-timestamp": "1",
            "content-type": "application/octet-stream",
        }
        status, body = 200, CONTENT
        if header and not self.ignore_range:
            first, _, last = header.removeprefix("bytes=").partition("-")
            start = int(first)
            end = min(int(last) if last else len(CONTENT) - 1, len(CONTENT) - 1)
            if start >= len(CONTENT):
                return error(416, "range_not_satisfiable", "no")
            status, body = 206, CONTENT[start : end + 1]
            headers["content-range"] = f"bytes {start}-{end}/{len(CONTENT)}"
        if self.breaks:
            headers["x-test-fail-after"] = str(self.breaks.pop(0))
        return httpx.Response(status, content=body, headers=headers)


async def download_setup() -> tuple[FakeB2, FakeDownloads, B2Client]:
    fake = FakeB2()
    downloads = FakeDownloads(fake)
    return fake, downloads, await connect(fake)


async def test_resumed_download_asks_only_for_the_missing_bytes() -> None:
    _fake, downloads, client = await download_setup()
    downloads.breaks = [100_000, 50_000]
    assert await client.download_bytes_by_id("4_zfile1") == CONTENT
    assert downloads.ranges == [
        None,
        f"bytes=100000-{len(CONTENT) - 1}",
        f"bytes=150000-{len(CONTENT) - 1}",
    ]
    assert client.stats.bytes_downloaded == len(CONTENT)
    await client.aclose()


async def test_a_resumed_download_by_name_stays_on_the_first_version() -> None:
    fake, downloads, client = await download_setup()
    downloads.breaks = [1000]
    data = await client.download_bytes_by_name("bucket-one", "dir/f x", offset=10, length=5000)
    assert data == CONTENT[10:5010]
    assert downloads.paths[0] == "/file/bucket-one/dir/f%20x"
    assert downloads.paths[1] == "/b2api/v3/b2_download_file_by_id"
    assert fake.requests[-1].url.params["fileId"] == "4_zfile1"
    assert downloads.ranges == ["bytes=10-5009", "bytes=1010-5009"]
    await client.aclose()


async def test_a_file_that_changes_between_attempts_is_an_error() -> None:
    _fake, downloads, client = await download_setup()
    downloads.breaks = [1000]
    downloads.file_ids = ["4_zfile1", "4_zfile2"]
    with pytest.raises(B2UnexpectedResponse, match="changed while"):
        await client.download_bytes_by_id("4_zfile1")
    await client.aclose()


async def test_a_server_ignoring_the_range_still_gives_the_range() -> None:
    _fake, downloads, client = await download_setup()
    downloads.ignore_range = True
    async with client.download_file_by_id("4_zfile1", offset=1000, length=10) as download:
        assert download.status == 200 and not download.verifies_sha1
        assert await download.read() == CONTENT[1000:1010]
    assert await client.download_bytes_by_id("4_zfile1", offset=255_990) == CONTENT[255_990:]
    with pytest.raises(B2RangeNotSatisfiable):
        await client.download_bytes_by_id("4_zfile1", offset=len(CONTENT))
    await client.aclose()


async def test_a_wrong_sha1_is_caught_on_whole_file_reads_only() -> None:
    _fake, downloads, client = await download_setup()
    downloads.sha1 = "unverified:" + "0" * 40
    with pytest.raises(B2ChecksumMismatch):
        await client.download_bytes_by_id("4_zfile1")
    with pytest.raises(B2ChecksumMismatch):
        async with client.download_file_by_id("4_zfile1") as download:
            await download.read()
    # A range is not the whole file: nothing to compare.
    assert await client.download_bytes_by_id("4_zfile1", offset=1, length=10) == CONTENT[1:11]
    # A resumed whole-file read hashes across its attempts.
    downloads.sha1 = CONTENT_SHA1
    downloads.breaks = [70_000]
    assert await client.download_bytes_by_id("4_zfile1") == CONTENT
    await client.aclose()


async def test_a_truncated_staging_file_fails_the_upload(tmp_path) -> None:  # type: ignore[no-untyped-def]
    fake = FakeB2()

    async def get_upload_url(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        return httpx.Response(
            200,
            json={
                "bucketId": "bkt1",
                "authorizationToken": "utok-secret",
                "uploadUrl": f"{HOST}/b2api/v3/b2_upload_file/bkt1/n",
            },
        )

    async def upload(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        await request.aread()
        return error(500, "internal_error", "should not get here")

    fake.handlers["b2_get_upload_url"] = get_upload_url
    fake.handlers["b2_upload_file"] = upload
    client = await connect(fake)
    path = tmp_path / "staging"
    path.write_bytes(b"x" * 10_000)
    source = FileSource(path)
    path.write_bytes(b"x" * 100)
    with pytest.raises(B2SourceError, match="ended 9900 bytes before"):
        await client.upload_file("bkt1", "f", source)
    assert fake.calls["b2_upload_file"] <= 1  # not retried
    await client.aclose()


async def test_download_into_gives_every_byte_once_across_resumes() -> None:
    _fake, downloads, client = await download_setup()
    downloads.breaks = [65_536, 10_000]
    chunks: list[bytes] = []

    async def consume(chunk: bytes) -> None:
        chunks.append(chunk)

    info = await client.download_into_by_id("4_zfile1", consume, offset=5, length=200_000)
    assert info is not None and info.file_id == "4_zfile1"
    assert b"".join(chunks) == CONTENT[5:200_005]
    chunks.clear()
    await client.download_into_by_name("bucket-one", "dir/f x", consume)
    assert b"".join(chunks) == CONTENT
    assert await client.download_into_by_id("4_zfile1", consume, length=0) is None
    await client.aclose()


def file_json(action: str = "upload", **extra: Any) -> dict[str, Any]:
    return {
        "action": action,
        "fileId": "4_zfile1",
        "fileName": "doc",
        "contentLength": 0,
        "contentSha1": "none",
        "fileInfo": {},
        "bucketId": "bkt1",
        "uploadTimestamp": 1,
        **extra,
    }


def lost_answer_then(second: httpx.Response) -> Any:
    """A handler whose first answer is lost (500, as if the connection broke after B2 acted),
    and whose retry gets ``second``."""
    answers = [error(500, "internal_error", "lost"), second]

    async def handler(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        return answers.pop(0) if answers else error(500, "internal_error", "unexpected")

    return handler


async def test_a_retried_finish_that_already_succeeded_returns_the_file() -> None:
    fake = FakeB2()
    fake.handlers["b2_finish_large_file"] = lost_answer_then(
        error(400, "bad_request", "No active upload for: 4_zfile1")
    )

    async def info(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json=file_json("upload", contentLength=10))

    fake.handlers["b2_get_file_info"] = info
    client = await connect(fake)
    done = await client.finish_large_file("4_zfile1", ["a" * 40, "b" * 40])
    assert done.content_length == 10 and fake.calls["b2_finish_large_file"] == 2
    await client.aclose()


async def test_a_first_attempt_bad_request_on_finish_is_not_hidden() -> None:
    fake = FakeB2()

    async def refuse(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        return error(400, "bad_request", "large files must have at least 2 parts")

    fake.handlers["b2_finish_large_file"] = refuse
    client = await connect(fake)
    with pytest.raises(B2BadRequest, match="at least 2 parts"):
        await client.finish_large_file("4_zfile1", ["a" * 40])
    assert fake.calls["b2_get_file_info"] == 0
    await client.aclose()


async def test_a_retried_delete_that_already_succeeded_counts_as_done() -> None:
    fake = FakeB2()
    fake.handlers["b2_delete_file_version"] = lost_answer_then(
        error(400, "file_not_present", "File not present: doc 4_zfile1")
    )
    client = await connect(fake)
    deleted = await client.delete_file_version("4_zfile1", "doc")
    assert (deleted.file_id, deleted.file_name) == ("4_zfile1", "doc")
    await client.aclose()


async def test_a_retried_hide_that_already_succeeded_returns_the_marker() -> None:
    fake = FakeB2()
    fake.handlers["b2_hide_file"] = lost_answer_then(
        error(400, "already_hidden", "File already hidden: doc")
    )

    async def versions(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
        assert data["startFileName"] == "doc" and data["maxFileCount"] == 1
        marker = file_json("hide", fileId="4_zmarker", contentType="application/x-bz-hide-marker")
        return httpx.Response(
            200, json={"files": [marker], "nextFileName": None, "nextFileId": None}
        )

    fake.handlers["b2_list_file_versions"] = versions
    client = await connect(fake)
    marker = await client.hide_file("bkt1", "doc")
    assert marker.is_hide_marker and marker.file_id == "4_zmarker"
    await client.aclose()
