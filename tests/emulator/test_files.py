"""Uploads, file info, hide, delete and copy (§5, §6.7, §6.10, §6.13-6.15)."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable

import httpx
import pytest
from emu_helpers import B2, sha1, wait_for

from b2fs.emulator import Emulator

FILE_ID_RE = re.compile(
    r"^4_z[0-9a-f]{24}_f[12][0-9a-f]{15}_d\d{8}_m\d{6}_c\d{3}_v\d{7}_t\d{4}_u\d{14}$"
)


def test_upload_shape_and_file_info(b2: B2) -> None:
    bucket = b2.create_bucket()
    doc = b2.upload(
        bucket,
        "dir/héllo wörld+1.txt",
        b"hello",
        content_type="b2/x-auto",
        info={"src_last_modified_millis": "1234", "Author": "a b+c/é"},
    )
    assert FILE_ID_RE.match(doc["fileId"])
    assert doc["action"] == "upload"
    assert doc["fileName"] == "dir/héllo wörld+1.txt"
    assert doc["contentLength"] == 5
    assert doc["contentSha1"] == sha1(b"hello")
    assert doc["contentMd5"] == hashlib.md5(b"hello").hexdigest()
    assert doc["contentType"] == "text/plain"
    assert doc["fileInfo"] == {"src_last_modified_millis": "1234", "author": "a b+c/é"}
    assert doc["serverSideEncryption"] == {"algorithm": None, "mode": None}
    assert doc["legalHold"]["isClientAuthorizedToRead"] is True
    assert "size" not in doc
    info = b2.ok("b2_get_file_info", fileId=doc["fileId"])
    assert info == doc
    r = b2.call("b2_get_file_info", method="GET", fileId=doc["fileId"])
    assert r.status_code == 200 and r.json() == doc


def test_v1_file_objects_carry_size(emulator: Emulator, client_factory: Callable[..., B2]) -> None:
    v1 = client_factory(emulator, version=1)
    bucket = v1.create_bucket()
    doc = v1.upload(bucket, "f", b"abc")
    assert doc["size"] == doc["contentLength"] == 3


def test_sha1_modes(b2: B2) -> None:
    bucket = b2.create_bucket()
    data = b"some content"
    doc = b2.upload(bucket, "at-end", data + sha1(data).encode(), sha1="hex_digits_at_end")
    assert doc["contentLength"] == len(data) and doc["contentSha1"] == sha1(data)
    assert b2.download(f"/b2api/v3/b2_download_file_by_id?fileId={doc['fileId']}").content == data
    doc = b2.upload(bucket, "unverified", data, sha1="do_not_verify")
    assert doc["contentSha1"] == f"unverified:{sha1(data)}"
    err = b2.upload(bucket, "wrong", data, sha1="0" * 40, expect=400)
    assert err["code"] == "bad_request" and "sha1" in err["message"].lower()
    err = b2.upload(bucket, "wrong-end", data + b"0" * 40, sha1="hex_digits_at_end", expect=400)
    assert err["code"] == "bad_request"
    b2.upload(bucket, "bad-mode", data, sha1="md5please", expect=400)
    names = [f["fileName"] for f in b2.ok("b2_list_file_names", bucketId=bucket)["files"]]
    assert names == ["at-end", "unverified"]


def test_empty_file(b2: B2) -> None:
    bucket = b2.create_bucket()
    doc = b2.upload(bucket, "empty", b"")
    assert doc["contentLength"] == 0 and doc["contentSha1"] == sha1(b"")
    r = b2.download("/file/test-bucket/empty")
    assert r.status_code == 200 and r.content == b""


@pytest.mark.parametrize(
    "name",
    ["", "a\x01b", "del\x7f", "x" * 1025, "é" * 513],
)
def test_bad_file_names(b2: B2, name: str) -> None:
    bucket = b2.create_bucket()
    assert b2.upload(bucket, name, b"x", expect=400)["code"] == "bad_request"
    b2.error(
        "b2_start_large_file",
        400,
        "bad_request",
        bucketId=bucket,
        fileName=name,
        contentType="text/plain",
    )


def test_lenient_names_are_accepted(b2: B2) -> None:
    bucket = b2.create_bucket()
    for name in ("/leading", "trailing/", "a//b", "back\\slash", "x" * 1024):
        b2.upload(bucket, name, b"x")


def test_strict_names_option(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    c = client_factory(emulator_factory(strict_names=True))
    bucket = c.create_bucket()
    for name in ("/leading", "trailing/", "a//b", "s" * 251):
        c.upload(bucket, name, b"x", expect=400)


def test_file_info_rules(b2: B2) -> None:
    bucket = b2.create_bucket()
    many = {f"k{i}": "v" for i in range(11)}
    assert b2.upload(bucket, "f", b"x", info=many, expect=400)["code"] == "bad_request"
    b2.upload(bucket, "f", b"x", info={"k" * 51: "v"}, expect=400)
    b2.upload(bucket, "f", b"x", info={"b2-unknown": "v"}, expect=400)
    b2.upload(bucket, "f", b"x", info={"b2-expires": "not a date"}, expect=400)
    b2.upload(bucket, "f", b"x", info={"big": "v" * 7000}, expect=400)
    b2.upload(bucket, "f", b"x", headers={"Content-Disposition": "inline"}, expect=400)
    doc = b2.upload(
        bucket,
        "f",
        b"x",
        info={
            "b2-content-disposition": "attachment",
            "b2-expires": "Thu, 01 Dec 2094 16:00:00 GMT",
        },
    )
    assert doc["fileInfo"]["b2-content-disposition"] == "attachment"
    b2.error(
        "b2_start_large_file",
        400,
        "bad_request",
        bucketId=bucket,
        fileName="big",
        contentType="text/plain",
        fileInfo=many,
    )


def test_upload_header_errors(b2: B2) -> None:
    bucket = b2.create_bucket()
    u = b2.ok("b2_get_upload_url", bucketId=bucket)
    base = {
        "Authorization": u["authorizationToken"],
        "X-Bz-File-Name": "f",
        "Content-Type": "text/plain",
        "X-Bz-Content-Sha1": sha1(b"x"),
    }
    for drop in ("X-Bz-File-Name", "Content-Type", "X-Bz-Content-Sha1"):
        h = {k: v for k, v in base.items() if k != drop}
        r = b2.http.post(u["uploadUrl"], headers=h, content=b"x")
        assert r.status_code == 400, drop
    r = b2.http.post(u["uploadUrl"], headers={**base, "Authorization": "bogus"}, content=b"x")
    assert r.status_code == 401 and r.json()["code"] == "bad_auth_token"
    r = b2.http.post(u["uploadUrl"], headers={**base, "Authorization": b2.token}, content=b"x")
    assert r.status_code == 401
    # the upload token is bound to its URL
    other = b2.ok("b2_get_upload_url", bucketId=bucket)
    r = b2.http.post(other["uploadUrl"], headers=base, content=b"x")
    assert r.status_code == 401
    r = b2.http.post(u["uploadUrl"], headers=base, content=b"x")
    assert r.status_code == 200


def test_upload_token_one_at_a_time(emulator: Emulator, b2: B2) -> None:
    bucket = b2.create_bucket()
    u = b2.ok("b2_get_upload_url", bucketId=bucket)
    headers = {
        "Authorization": u["authorizationToken"],
        "X-Bz-File-Name": "slow",
        "Content-Type": "text/plain",
        "X-Bz-Content-Sha1": sha1(b"x" * 10),
    }
    started = threading.Event()
    release = threading.Event()

    def slow_body():  # type: ignore[no-untyped-def]
        yield b"x" * 5
        started.set()
        release.wait(10)
        yield b"x" * 5

    results: list[int] = []

    def first() -> None:
        with httpx.Client() as c:
            r = c.post(
                u["uploadUrl"], headers={**headers, "Content-Length": "10"}, content=slow_body()
            )
            results.append(r.status_code)

    t = threading.Thread(target=first)
    t.start()
    try:
        assert started.wait(10)
        wait_for(lambda: emulator.app.uploads_in_flight() == 1, what="the first upload")
        r = b2.http.post(u["uploadUrl"], headers=headers, content=b"x" * 10)
        assert r.status_code == 400
        assert r.json()["code"] == "auth_token_limit"
        assert r.json()["message"].startswith("more than one upload using auth token ")
    finally:
        release.set()
        t.join(10)
    assert results == [200]


def test_hide_and_delete_semantics(b2: B2) -> None:
    bucket = b2.create_bucket()
    v1 = b2.upload(bucket, "f.txt", b"one")
    v2 = b2.upload(bucket, "f.txt", b"two")
    hidden = b2.ok("b2_hide_file", bucketId=bucket, fileName="f.txt")
    assert hidden["action"] == "hide"
    assert hidden["contentType"] == "application/x-bz-hide-marker"
    assert hidden["contentLength"] == 0 and hidden["fileInfo"] == {}
    assert "fileRetention" not in hidden and "serverSideEncryption" not in hidden
    assert b2.ok("b2_list_file_names", bucketId=bucket)["files"] == []
    versions = b2.ok("b2_list_file_versions", bucketId=bucket)["files"]
    assert [v["fileId"] for v in versions] == [hidden["fileId"], v2["fileId"], v1["fileId"]]
    assert b2.download("/file/test-bucket/f.txt").status_code == 404
    b2.error("b2_hide_file", 400, "already_hidden", bucketId=bucket, fileName="f.txt")
    b2.error("b2_hide_file", 400, "no_such_file", bucketId=bucket, fileName="nope")
    # old versions stay downloadable by id
    r = b2.download(f"/b2api/v3/b2_download_file_by_id?fileId={v1['fileId']}")
    assert r.content == b"one"
    deleted = b2.ok("b2_delete_file_version", fileId=hidden["fileId"], fileName="f.txt")
    assert deleted == {"fileId": hidden["fileId"], "fileName": "f.txt"}
    assert b2.download("/file/test-bucket/f.txt").content == b"two"
    b2.ok("b2_delete_file_version", fileId=v2["fileId"], fileName="f.txt")
    assert b2.download("/file/test-bucket/f.txt").content == b"one"
    b2.error(
        "b2_delete_file_version", 400, "file_not_present", fileId=v2["fileId"], fileName="f.txt"
    )
    b2.error(
        "b2_delete_file_version",
        400,
        "file_not_present",
        fileId=v1["fileId"],
        fileName="other-name",
    )
    b2.error("b2_get_file_info", 404, "not_found", fileId=v2["fileId"])
    b2.error("b2_get_file_info", 400, "bad_request", fileId="bad-id")
    b2.error("b2_hide_file", 400, "bad_bucket_id", bucketId="0" * 24, fileName="f.txt")


def test_copy_file(b2: B2) -> None:
    bucket = b2.create_bucket()
    other = b2.create_bucket("other-bucket")
    src = b2.upload(
        bucket, "src.txt", b"0123456789", content_type="text/plain", info={"color": "blue"}
    )
    copy = b2.ok("b2_copy_file", sourceFileId=src["fileId"], fileName="copy.txt")
    assert copy["action"] == "copy"
    assert copy["contentSha1"] == src["contentSha1"]
    assert copy["fileInfo"] == {"color": "blue"} and copy["contentType"] == "text/plain"
    listed = b2.ok("b2_list_file_names", bucketId=bucket, prefix="copy")["files"][0]
    assert listed["action"] == "upload"
    part = b2.ok(
        "b2_copy_file",
        sourceFileId=src["fileId"],
        fileName="part.txt",
        range="bytes=2-5",
        destinationBucketId=other,
        metadataDirective="REPLACE",
        contentType="application/x-test",
        fileInfo={"k": "v"},
    )
    assert part["bucketId"] == other and part["contentLength"] == 4
    assert part["contentSha1"] == sha1(b"2345") and part["fileInfo"] == {"k": "v"}
    r = b2.download("/file/other-bucket/part.txt")
    assert r.content == b"2345" and r.headers["content-type"] == "application/x-test"
    b2.ok("b2_copy_file", sourceFileId=src["fileId"], fileName="clip", range="bytes=8-100")
    b2.error(
        "b2_copy_file",
        416,
        "range_not_satisfiable",
        sourceFileId=src["fileId"],
        fileName="x",
        range="bytes=10-12",
    )
    b2.error(
        "b2_copy_file",
        400,
        "bad_request",
        sourceFileId=src["fileId"],
        fileName="x",
        metadataDirective="COPY",
        contentType="text/plain",
    )
    b2.error(
        "b2_copy_file",
        400,
        "bad_request",
        sourceFileId=src["fileId"],
        fileName="x",
        metadataDirective="REPLACE",
    )
    b2.error(
        "b2_copy_file",
        400,
        "bad_request",
        sourceFileId=src["fileId"],
        fileName="x",
        metadataDirective="MERGE",
    )
    b2.error(
        "b2_copy_file",
        404,
        "not_found",
        sourceFileId=src["fileId"].replace("_f1", "_f2"),
        fileName="x",
    )


def test_copy_too_large(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    c = client_factory(emulator_factory(max_simple_file_size=5))
    bucket = c.create_bucket()
    src = c.upload(bucket, "s", b"1234")
    r = c.call("b2_copy_file", sourceFileId=src["fileId"], fileName="d")
    assert r.status_code == 200
    c.upload(bucket, "too-big", b"123456", expect=400)


def test_unfinished_large_file_is_not_a_file(b2: B2) -> None:
    bucket = b2.create_bucket()
    file_id = b2.start_large(bucket, "pending")
    b2.error("b2_get_file_info", 404, "not_found", fileId=file_id)
    r = b2.download(f"/b2api/v3/b2_download_file_by_id?fileId={file_id}")
    assert r.status_code == 404
    assert b2.download("/file/test-bucket/pending").status_code == 404
