"""Downloads: by id/name, GET/HEAD, ranges, public buckets, download authorization (§6.11, §8)."""

from __future__ import annotations

import logging

import httpx
import pytest
from emu_helpers import B2, sha1


@pytest.fixture
def stored(b2: B2) -> dict[str, str]:
    bucket = b2.create_bucket()
    doc = b2.upload(
        bucket,
        "dir/file name+1.txt",
        b"0123456789",
        content_type="text/plain",
        info={
            "note": "a b+c",
            "b2-content-disposition": "attachment",
            "b2-cache-control": "max-age=60",
        },
    )
    return {
        "bucket": bucket,
        "id": doc["fileId"],
        "path": "/file/test-bucket/dir/file%20name%2B1.txt",
    }


def test_download_by_name_and_id_headers(b2: B2, stored: dict[str, str]) -> None:
    for path in (stored["path"], f"/b2api/v3/b2_download_file_by_id?fileId={stored['id']}"):
        r = b2.download(path)
        assert r.status_code == 200 and r.content == b"0123456789"
        h = r.headers
        assert h["content-length"] == "10" and h["content-type"] == "text/plain"
        assert h["x-bz-file-id"] == stored["id"]
        assert h["x-bz-file-name"] == "dir/file%20name%2B1.txt"
        assert h["x-bz-content-sha1"] == sha1(b"0123456789")
        assert h["x-bz-info-note"] == "a%20b%2Bc"
        assert "x-bz-info-b2-content-disposition" not in h
        assert h["content-disposition"] == "attachment"
        assert h["cache-control"] == "max-age=60"
        assert h["accept-ranges"] == "bytes"
        assert int(h["x-bz-upload-timestamp"]) > 0
        assert "date" in h
    r = b2.http.post(
        f"{b2.url}/b2api/v3/b2_download_file_by_id",
        json={"fileId": stored["id"]},
        headers={"Authorization": b2.token},
    )
    assert r.content == b"0123456789"


def test_plus_decodes_as_space(b2: B2, stored: dict[str, str]) -> None:
    assert b2.download("/file/test-bucket/dir/file+name%2B1.txt").status_code == 200


def test_ranges(b2: B2, stored: dict[str, str]) -> None:
    def get(rng: str) -> httpx.Response:
        return b2.download(stored["path"], headers={"Range": rng})

    r = get("bytes=5-8")
    assert r.status_code == 206 and r.content == b"5678"
    assert r.headers["content-range"] == "bytes 5-8/10" and r.headers["content-length"] == "4"
    r = get("bytes=7-100")
    assert r.status_code == 206 and r.content == b"789"
    r = get("bytes=7-")
    assert r.status_code == 206 and r.content == b"789"
    r = get("bytes=-3")
    assert r.status_code == 206 and r.content == b"789"
    r = get("bytes=0-9")
    assert r.status_code == 200 and r.content == b"0123456789"
    assert "content-range" not in r.headers
    r = get("bytes=10-12")
    assert r.status_code == 416
    assert r.json() == {
        "code": "range_not_satisfiable",
        "message": r.json()["message"],
        "status": 416,
    }
    for unsatisfiable in ("bytes=10-", "bytes=11-", "bytes=100-200"):
        r = get(unsatisfiable)
        assert r.status_code == 416, unsatisfiable
        assert r.headers["content-range"] == "bytes */10"
    r = get("bytes=5-3")
    assert r.status_code == 200 and r.content == b"0123456789"
    r = get("lines=1-2")
    assert r.status_code == 200 and r.content == b"0123456789"


def test_head(b2: B2, stored: dict[str, str]) -> None:
    r = b2.download(stored["path"], method="HEAD")
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == "10" and r.headers["x-bz-file-id"] == stored["id"]
    r = b2.download("/file/test-bucket/missing", method="HEAD")
    assert r.status_code == 404 and r.content == b""
    r = b2.download(stored["path"], method="HEAD", token="nope")
    assert r.status_code == 401 and r.content == b""


def test_download_errors(b2: B2, stored: dict[str, str]) -> None:
    assert b2.download("/file/no-such-bucket/x").status_code == 404
    r = b2.download("/file/test-bucket/missing")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = b2.download(stored["path"], token="")
    assert r.status_code == 401 and r.json()["code"] == "missing_auth_token"
    r = b2.download(stored["path"], token="bad")
    assert r.status_code == 401 and r.json()["code"] == "bad_auth_token"
    r = b2.download("/b2api/v3/b2_download_file_by_id?fileId=" + stored["id"].replace("_f1", "_f2"))
    assert r.status_code == 404
    r = b2.download("/b2api/v3/b2_download_file_by_id")
    assert r.status_code == 400


def test_public_bucket(b2: B2) -> None:
    bucket = b2.create_bucket("public-bucket", "allPublic")
    b2.upload(bucket, "pub.txt", b"public")
    r = httpx.get(f"{b2.url}/file/public-bucket/pub.txt")
    assert r.status_code == 200 and r.content == b"public"
    b2.ok("b2_update_bucket", accountId=b2.account_id, bucketId=bucket, bucketType="allPrivate")
    assert httpx.get(f"{b2.url}/file/public-bucket/pub.txt").status_code == 401


def test_bucket_cache_control(b2: B2) -> None:
    bucket = b2.create_bucket(bucketInfo={"Cache-Control": "max-age=5"})
    b2.upload(bucket, "f", b"x")
    assert b2.download("/file/test-bucket/f").headers["cache-control"] == "max-age=5"


def test_download_authorization(
    b2: B2, stored: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    # httpx logs request URLs, and this test puts a token in a query string.
    caplog.set_level(logging.WARNING, logger="httpx")
    auth = b2.ok(
        "b2_get_download_authorization",
        bucketId=stored["bucket"],
        fileNamePrefix="dir/",
        validDurationInSeconds=60,
    )
    assert auth["bucketId"] == stored["bucket"] and auth["fileNamePrefix"] == "dir/"
    token = auth["authorizationToken"]
    r = httpx.get(f"{b2.url}{stored['path']}", headers={"Authorization": token})
    assert r.status_code == 200
    r = httpx.get(f"{b2.url}{stored['path']}", params={"Authorization": token})
    assert r.status_code == 200
    b2.upload(stored["bucket"], "elsewhere.txt", b"no")
    r = httpx.get(f"{b2.url}/file/test-bucket/elsewhere.txt", headers={"Authorization": token})
    assert r.status_code == 401
    # a download token is not an account token
    r = b2.call("b2_list_buckets", token=token, accountId=b2.account_id)
    assert r.status_code == 401
    bound = b2.ok(
        "b2_get_download_authorization",
        bucketId=stored["bucket"],
        fileNamePrefix="",
        validDurationInSeconds=60,
        b2ContentDisposition="inline",
    )["authorizationToken"]
    assert (
        httpx.get(f"{b2.url}{stored['path']}", headers={"Authorization": bound}).status_code == 401
    )
    r = httpx.get(
        f"{b2.url}{stored['path']}",
        params={"b2ContentDisposition": "inline"},
        headers={"Authorization": bound},
    )
    assert r.status_code == 200 and r.headers["content-disposition"] == "inline"
    b2.error(
        "b2_get_download_authorization",
        400,
        "bad_request",
        bucketId=stored["bucket"],
        fileNamePrefix="",
        validDurationInSeconds=604801,
    )


def test_override_params(b2: B2, stored: dict[str, str]) -> None:
    r = b2.download(
        stored["path"] + "?b2ContentType=application%2Fx-over&b2Expires=never&"
        "b2CacheControl=no-store"
    )
    assert r.headers["content-type"] == "application/x-over"
    assert r.headers["expires"] == "never" and r.headers["cache-control"] == "no-store"


def test_header_values_must_be_ascii(b2: B2, stored: dict[str, str]) -> None:
    r = b2.download(stored["path"] + "?b2ContentDisposition=inline%3B%20filename%3D%C3%A9")
    assert r.status_code == 400
    bucket = stored["bucket"]
    b2.upload(
        bucket, "u", b"x", info={"b2-content-disposition": "inline; filename=\u00e9"}, expect=400
    )
    b2.error(
        "b2_get_download_authorization",
        400,
        "bad_request",
        bucketId=bucket,
        fileNamePrefix="",
        validDurationInSeconds=5,
        b2ContentType="t\u00e9xt/plain",
    )


def test_sse_c(b2: B2) -> None:
    import base64
    import hashlib

    bucket = b2.create_bucket()
    key = bytes(range(32))
    key_b64 = base64.b64encode(key).decode()
    md5 = base64.b64encode(hashlib.md5(key).digest()).decode()
    sse = {
        "X-Bz-Server-Side-Encryption-Customer-Algorithm": "AES256",
        "X-Bz-Server-Side-Encryption-Customer-Key": key_b64,
        "X-Bz-Server-Side-Encryption-Customer-Key-Md5": md5,
    }
    doc = b2.upload(bucket, "secret", b"hush", headers=sse)
    assert doc["serverSideEncryption"] == {
        "algorithm": "AES256",
        "mode": "SSE-C",
        "customerKeyMd5": md5,
    }
    r = b2.download("/file/test-bucket/secret")
    assert r.status_code == 403 and r.json()["code"] == "access_denied"
    r = b2.download("/file/test-bucket/secret", headers=sse)
    assert r.status_code == 200 and r.content == b"hush"
