"""Large files: parts, finish rules, cancel, list parts and unfinished, copy_part (§6.16-6.23)."""

from __future__ import annotations

import os
from collections.abc import Callable

from emu_helpers import B2, sha1

from b2fs.emulator import Emulator

MB5 = 5_000_000


def test_large_file_round_trip(b2: B2) -> None:
    bucket = b2.create_bucket()
    started = b2.ok(
        "b2_start_large_file",
        bucketId=bucket,
        fileName="big.bin",
        contentType="b2/x-auto",
        fileInfo={"large_file_sha1": "0" * 40},
    )
    assert started["action"] == "start" and started["contentSha1"] == "none"
    assert started["contentLength"] == 0 and started["contentMd5"] is None
    assert started["contentType"] == "application/octet-stream"
    assert "_f2" in started["fileId"]
    file_id = started["fileId"]
    p1, p2 = os.urandom(MB5), b"tail"
    part = b2.upload_part(file_id, 1, p1)
    assert part["partNumber"] == 1 and part["contentSha1"] == sha1(p1)
    assert part["contentLength"] == MB5 and part["fileId"] == file_id
    b2.upload_part(file_id, 2, b"replaced later")
    b2.upload_part(file_id, 2, p2)  # re-uploading a part number replaces it
    parts = b2.ok("b2_list_parts", fileId=file_id)
    assert [p["partNumber"] for p in parts["parts"]] == [1, 2]
    assert parts["nextPartNumber"] is None
    unfinished = b2.ok("b2_list_unfinished_large_files", bucketId=bucket)
    assert [f["fileId"] for f in unfinished["files"]] == [file_id]
    done = b2.ok("b2_finish_large_file", fileId=file_id, partSha1Array=[sha1(p1), sha1(p2)])
    assert done["action"] == "upload" and done["contentLength"] == MB5 + 4
    assert done["contentSha1"] == "none" and done["contentMd5"] is None
    assert done["uploadTimestamp"] == started["uploadTimestamp"]
    r = b2.download("/file/test-bucket/big.bin")
    assert r.content == p1 + p2 and r.headers["x-bz-content-sha1"] == "none"
    r = b2.download("/file/test-bucket/big.bin", headers={"Range": f"bytes={MB5 - 2}-{MB5 + 1}"})
    assert r.status_code == 206 and r.content == p1[-2:] + p2[:2]
    assert b2.ok("b2_list_unfinished_large_files", bucketId=bucket)["files"] == []
    # a second finish (e.g. a retry) is refused
    b2.error(
        "b2_finish_large_file",
        400,
        "bad_request",
        fileId=file_id,
        partSha1Array=[sha1(p1), sha1(p2)],
    )


def test_finish_rules(b2: B2) -> None:
    bucket = b2.create_bucket()
    one = b2.start_large(bucket, "one-part")
    b2.upload_part(one, 1, b"x" * 10)
    b2.error(
        "b2_finish_large_file", 400, "bad_request", fileId=one, partSha1Array=[sha1(b"x" * 10)]
    )
    small = b2.start_large(bucket, "small-parts")
    b2.upload_part(small, 1, b"a")
    b2.upload_part(small, 2, b"b")
    doc = b2.error(
        "b2_finish_large_file",
        400,
        "bad_request",
        fileId=small,
        partSha1Array=[sha1(b"a"), sha1(b"b")],
    )
    assert "minimum" in doc["message"]
    gap = b2.start_large(bucket, "gap")
    b2.upload_part(gap, 1, b"a" * MB5)
    b2.upload_part(gap, 3, b"c")
    b2.error(
        "b2_finish_large_file",
        400,
        "missing_part",
        fileId=gap,
        partSha1Array=[sha1(b"a" * MB5), sha1(b"b"), sha1(b"c")],
    )
    b2.error(
        "b2_finish_large_file", 400, "part_sha1_mismatch", fileId=gap, partSha1Array=[sha1(b"zzz")]
    )
    b2.upload_part(gap, 0, b"x", expect=400)
    b2.upload_part(gap, 10001, b"x", expect=400)
    b2.upload_part(gap, 10000, b"x")
    b2.upload_part(gap, 1, b"x", sha1="1" * 40, expect=400)


def test_cancel_and_delete_unfinished(b2: B2) -> None:
    bucket = b2.create_bucket()
    a = b2.start_large(bucket, "a")
    b2.upload_part(a, 1, b"data")
    cancelled = b2.ok("b2_cancel_large_file", fileId=a)
    assert cancelled == {
        "accountId": b2.account_id,
        "bucketId": bucket,
        "fileId": a,
        "fileName": "a",
    }
    b2.error("b2_cancel_large_file", 400, "bad_request", fileId=a)
    b2.error("b2_cancel_large_file", 400, "bad_request", fileId="bad-id")
    b2.error("b2_list_parts", 400, "bad_request", fileId=a)
    b2.error("b2_get_upload_part_url", 400, "bad_request", fileId=a)
    b = b2.start_large(bucket, "b")
    b2.ok("b2_delete_file_version", fileId=b, fileName="b")  # acts like cancel
    assert b2.ok("b2_list_file_versions", bucketId=bucket)["files"] == []
    b2.ok("b2_delete_bucket", accountId=b2.account_id, bucketId=bucket)


def test_list_parts_and_unfinished_paging(b2: B2) -> None:
    bucket = b2.create_bucket()
    f = b2.start_large(bucket, "p")
    for n in range(1, 6):
        b2.upload_part(f, n, bytes([n]))
    first = b2.ok("b2_list_parts", fileId=f, maxPartCount=2)
    assert [p["partNumber"] for p in first["parts"]] == [1, 2] and first["nextPartNumber"] == 3
    rest = b2.ok("b2_list_parts", fileId=f, startPartNumber=3, maxPartCount=1000)
    assert [p["partNumber"] for p in rest["parts"]] == [3, 4, 5]
    b2.error("b2_list_parts", 400, "out_of_range", fileId=f, maxPartCount=1001)
    ids = [f] + [b2.start_large(bucket, f"dir/u{i}") for i in range(3)]
    page = b2.ok("b2_list_unfinished_large_files", bucketId=bucket, maxFileCount=2)
    assert [x["fileId"] for x in page["files"]] == ids[:2]  # oldest first
    page = b2.ok("b2_list_unfinished_large_files", bucketId=bucket, startFileId=page["nextFileId"])
    assert [x["fileId"] for x in page["files"]] == ids[2:]
    prefixed = b2.ok("b2_list_unfinished_large_files", bucketId=bucket, namePrefix="dir/")
    assert len(prefixed["files"]) == 3


def test_copy_part(b2: B2) -> None:
    bucket = b2.create_bucket()
    src_data = os.urandom(MB5 + 10)
    src_id = b2.start_large(bucket, "src")
    b2.upload_part(src_id, 1, src_data[:MB5])
    b2.upload_part(src_id, 2, src_data[MB5:])
    b2.ok(
        "b2_finish_large_file",
        fileId=src_id,
        partSha1Array=[sha1(src_data[:MB5]), sha1(src_data[MB5:])],
    )
    dst = b2.start_large(bucket, "dst")
    p1 = b2.ok(
        "b2_copy_part",
        sourceFileId=src_id,
        largeFileId=dst,
        partNumber=1,
        range=f"bytes=0-{MB5 - 1}",
    )
    assert p1["contentSha1"] == sha1(src_data[:MB5])
    p2 = b2.ok(
        "b2_copy_part",
        sourceFileId=src_id,
        largeFileId=dst,
        partNumber=2,
        range=f"bytes={MB5}-{MB5 + 9}",
    )
    b2.ok("b2_finish_large_file", fileId=dst, partSha1Array=[p1["contentSha1"], p2["contentSha1"]])
    assert b2.download("/file/test-bucket/dst").content == src_data
    b2.error(
        "b2_copy_part",
        416,
        "range_not_satisfiable",
        sourceFileId=src_id,
        largeFileId=b2.start_large(bucket, "x"),
        partNumber=1,
        range=f"bytes={MB5 + 10}-{MB5 + 20}",
    )


def test_small_part_size_option(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory(min_part_size=100, recommended_part_size=200)
    c = client_factory(emu)
    assert c.auth["apiInfo"]["storageApi"]["absoluteMinimumPartSize"] == 100
    assert c.auth["apiInfo"]["storageApi"]["recommendedPartSize"] == 200
    bucket = c.create_bucket()
    f = c.start_large(bucket, "tiny")
    c.upload_part(f, 1, b"a" * 100)
    c.upload_part(f, 2, b"b")
    c.ok("b2_finish_large_file", fileId=f, partSha1Array=[sha1(b"a" * 100), sha1(b"b")])


def test_download_of_a_file_with_many_parts(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    """Parts are opened one at a time: more parts than the descriptor limit is fine."""
    import resource

    c = client_factory(emulator_factory(min_part_size=1))
    bucket = c.create_bucket()
    f = c.start_large(bucket, "many")
    u = c.ok("b2_get_upload_part_url", fileId=f)
    count = 300
    for n in range(1, count + 1):
        data = n.to_bytes(2, "big")
        r = c.http.post(
            u["uploadUrl"],
            content=data,
            headers={
                "Authorization": u["authorizationToken"],
                "X-Bz-Part-Number": str(n),
                "X-Bz-Content-Sha1": sha1(data),
            },
        )
        assert r.status_code == 200
    c.ok(
        "b2_finish_large_file",
        fileId=f,
        partSha1Array=[sha1(n.to_bytes(2, "big")) for n in range(1, count + 1)],
    )
    expected = b"".join(n.to_bytes(2, "big") for n in range(1, count + 1))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        assert c.download("/file/test-bucket/many").content == expected
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
