"""Buckets: create, list, update, delete (§6.2-6.5, §4.2)."""

from __future__ import annotations

from emu_helpers import B2


def test_bucket_lifecycle(b2: B2) -> None:
    rules = [
        {
            "fileNamePrefix": "logs/",
            "daysFromHidingToDeleting": 5,
            "daysFromUploadingToHiding": None,
        }
    ]
    created = b2.ok(
        "b2_create_bucket",
        accountId=b2.account_id,
        bucketName="my-bucket-1",
        bucketType="allPrivate",
        bucketInfo={"a": "b"},
        lifecycleRules=rules,
    )
    assert len(created["bucketId"]) == 24
    assert created["bucketInfo"] == {"a": "b"}
    assert created["lifecycleRules"][0]["fileNamePrefix"] == "logs/"
    assert created["lifecycleRules"][0]["daysFromHidingToDeleting"] == 5
    assert created["defaultServerSideEncryption"]["isClientAuthorizedToRead"] is True
    assert created["fileLockConfiguration"]["value"]["isFileLockEnabled"] is False
    assert created["options"] == ["s3"]
    rev = created["revision"]
    updated = b2.ok(
        "b2_update_bucket",
        accountId=b2.account_id,
        bucketId=created["bucketId"],
        bucketType="allPublic",
        ifRevisionIs=rev,
    )
    assert updated["bucketType"] == "allPublic" and updated["revision"] == rev + 1
    assert updated["bucketInfo"] == {"a": "b"}  # omitted fields unchanged
    b2.error(
        "b2_update_bucket",
        409,
        "conflict",
        accountId=b2.account_id,
        bucketId=created["bucketId"],
        bucketInfo={},
        ifRevisionIs=rev,
    )
    deleted = b2.ok("b2_delete_bucket", accountId=b2.account_id, bucketId=created["bucketId"])
    assert deleted["bucketName"] == "my-bucket-1"
    b2.error(
        "b2_delete_bucket",
        400,
        "bad_bucket_id",
        accountId=b2.account_id,
        bucketId=created["bucketId"],
    )


def test_create_bucket_validation(b2: B2) -> None:
    for name in ("short", "x" * 64, "bad_name!", "b2-reserved"):
        b2.error(
            "b2_create_bucket",
            400,
            "bad_request",
            accountId=b2.account_id,
            bucketName=name,
            bucketType="allPrivate",
        )
    b2.error(
        "b2_create_bucket",
        400,
        "bad_request",
        accountId=b2.account_id,
        bucketName="good-name",
        bucketType="snapshot",
    )
    b2.create_bucket("good-name")
    b2.error(
        "b2_create_bucket",
        400,
        "duplicate_bucket_name",
        accountId=b2.account_id,
        bucketName="good-name",
        bucketType="allPrivate",
    )
    b2.error(
        "b2_create_bucket",
        400,
        "bad_request",
        accountId=b2.account_id,
        bucketName="other-name",
        bucketType="allPrivate",
        bucketInfo={"k": 1},
    )
    b2.error(
        "b2_create_bucket",
        400,
        "bad_request",
        accountId=b2.account_id,
        bucketName="other-name",
        bucketType="allPrivate",
        lifecycleRules=[{"daysFromHidingToDeleting": 1}],
    )
    b2.error(
        "b2_create_bucket",
        401,
        "unauthorized",
        accountId="000000000000",
        bucketName="other-name",
        bucketType="allPrivate",
    )


def test_list_buckets_filters_and_order(b2: B2) -> None:
    ids = {name: b2.create_bucket(name) for name in ("zeta-bucket", "alpha-bucket")}
    b2.create_bucket("public-bucket", "allPublic")
    names = [b["bucketName"] for b in b2.ok("b2_list_buckets", accountId=b2.account_id)["buckets"]]
    assert names == ["alpha-bucket", "public-bucket", "zeta-bucket"]
    one = b2.ok("b2_list_buckets", accountId=b2.account_id, bucketId=ids["zeta-bucket"])
    assert [b["bucketName"] for b in one["buckets"]] == ["zeta-bucket"]
    assert (
        b2.ok("b2_list_buckets", accountId=b2.account_id, bucketName="nope-nope")["buckets"] == []
    )
    public = b2.ok("b2_list_buckets", accountId=b2.account_id, bucketTypes=["allPublic"])
    assert [b["bucketName"] for b in public["buckets"]] == ["public-bucket"]
    b2.ok(
        "b2_list_buckets",
        accountId=b2.account_id,
        bucketTypes=["all"],
        bucketId=None,
        bucketName=None,
    )
    b2.error(
        "b2_list_buckets",
        400,
        "bad_request",
        accountId=b2.account_id,
        bucketTypes=["all", "allPublic"],
    )
    b2.error("b2_list_buckets", 400, "bad_request", accountId=b2.account_id, bucketTypes=[])
    # GET with query parameters works too
    r = b2.call("b2_list_buckets", method="GET", accountId=b2.account_id, bucketName="alpha-bucket")
    assert r.status_code == 200 and len(r.json()["buckets"]) == 1


def test_get_query_strings_keep_numeric_names(b2: B2) -> None:
    bucket = b2.create_bucket("123456")
    r = b2.call("b2_list_buckets", method="GET", accountId=b2.account_id, bucketName="123456")
    assert [b["bucketId"] for b in r.json()["buckets"]] == [bucket]
    b2.upload(bucket, "42", b"x")
    r = b2.call(
        "b2_list_file_names",
        method="GET",
        bucketId=bucket,
        prefix="4",
        startFileName="0",
        maxFileCount="10",
    )
    assert [f["fileName"] for f in r.json()["files"]] == ["42"]


def test_delete_non_empty_bucket(b2: B2) -> None:
    bucket = b2.create_bucket()
    b2.start_large(bucket, "unfinished")
    b2.error(
        "b2_delete_bucket",
        400,
        "cannot_delete_non_empty_bucket",
        accountId=b2.account_id,
        bucketId=bucket,
    )


def test_file_lock_and_encryption_settings(b2: B2) -> None:
    doc = b2.ok(
        "b2_create_bucket",
        accountId=b2.account_id,
        bucketName="locked-bucket",
        bucketType="allPrivate",
        fileLockEnabled=True,
        defaultServerSideEncryption={"mode": "SSE-B2", "algorithm": "AES256"},
    )
    assert doc["fileLockConfiguration"]["value"]["isFileLockEnabled"] is True
    assert doc["defaultServerSideEncryption"]["value"] == {"algorithm": "AES256", "mode": "SSE-B2"}
    bucket = doc["bucketId"]
    b2.error(
        "b2_update_bucket",
        400,
        "file_lock_conflict",
        accountId=b2.account_id,
        bucketId=bucket,
        fileLockEnabled=False,
    )
    doc = b2.ok(
        "b2_update_bucket",
        accountId=b2.account_id,
        bucketId=bucket,
        defaultRetention={"mode": "governance", "period": {"duration": 1, "unit": "days"}},
    )
    assert doc["fileLockConfiguration"]["value"]["defaultRetention"]["mode"] == "governance"
    up = b2.upload(bucket, "locked.txt", b"x")
    assert up["serverSideEncryption"] == {"algorithm": "AES256", "mode": "SSE-B2"}
    assert up["fileRetention"]["value"]["mode"] == "governance"
    b2.error(
        "b2_delete_file_version", 401, "access_denied", fileId=up["fileId"], fileName="locked.txt"
    )
    b2.ok(
        "b2_delete_file_version", fileId=up["fileId"], fileName="locked.txt", bypassGovernance=True
    )


def test_file_retention_and_legal_hold(b2: B2) -> None:
    import time

    plain = b2.create_bucket("plain-bucket")
    p = b2.upload(plain, "p", b"x")
    b2.error(
        "b2_update_file_legal_hold",
        400,
        "bucket_missing_file_lock",
        fileId=p["fileId"],
        fileName="p",
        legalHold="on",
    )
    locked = b2.create_bucket("lock-bucket", fileLockEnabled=True)
    f = b2.upload(locked, "f", b"x")
    until = int(time.time() * 1000) + 3_600_000
    doc = b2.ok(
        "b2_update_file_retention",
        fileId=f["fileId"],
        fileName="f",
        fileRetention={"mode": "governance", "retainUntilTimestamp": until},
    )
    assert doc == {
        "fileId": f["fileId"],
        "fileName": "f",
        "fileRetention": {"mode": "governance", "retainUntilTimestamp": until},
    }
    info = b2.ok("b2_get_file_info", fileId=f["fileId"])
    assert info["fileRetention"]["value"]["mode"] == "governance"
    r = b2.download("/file/lock-bucket/f")
    assert r.headers["x-bz-file-retention-mode"] == "governance"
    b2.error(
        "b2_update_file_retention",
        401,
        "access_denied",
        fileId=f["fileId"],
        fileName="f",
        fileRetention={"mode": None, "retainUntilTimestamp": None},
    )
    b2.ok(
        "b2_update_file_retention",
        fileId=f["fileId"],
        fileName="f",
        bypassGovernance=True,
        fileRetention={"mode": None, "retainUntilTimestamp": None},
    )
    hold = b2.ok("b2_update_file_legal_hold", fileId=f["fileId"], fileName="f", legalHold="on")
    assert hold == {"fileId": f["fileId"], "fileName": "f", "legalHold": "on"}
    b2.error(
        "b2_delete_file_version",
        401,
        "access_denied",
        fileId=f["fileId"],
        fileName="f",
        bypassGovernance=True,
    )
    b2.ok("b2_update_file_legal_hold", fileId=f["fileId"], fileName="f", legalHold="off")
    c = b2.upload(
        locked,
        "c",
        b"x",
        headers={
            "X-Bz-File-Retention-Mode": "compliance",
            "X-Bz-File-Retention-Retain-Until-Timestamp": str(until),
        },
    )
    assert c["fileRetention"]["value"] == {"mode": "compliance", "retainUntilTimestamp": until}
    b2.error(
        "b2_delete_file_version",
        401,
        "access_denied",
        fileId=c["fileId"],
        fileName="c",
        bypassGovernance=True,
    )
    b2.error(
        "b2_update_file_retention",
        401,
        "access_denied",
        fileId=c["fileId"],
        fileName="c",
        fileRetention={"mode": "compliance", "retainUntilTimestamp": until - 1000},
    )
    b2.ok("b2_delete_file_version", fileId=f["fileId"], fileName="f")
