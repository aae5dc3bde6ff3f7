"""Model parsing from the JSON samples of B2-API.md §4, and download header parsing."""

from __future__ import annotations

import dataclasses

import httpx
import pytest

from b2fs.b2 import (
    AccountAuthorization,
    ApplicationKey,
    B2UnexpectedResponse,
    Bucket,
    ContentRange,
    FileAction,
    FileVersion,
    LifecycleRule,
    NewApplicationKey,
    NotificationRule,
    Part,
    UploadUrl,
    WebhookTarget,
)
from b2fs.b2.downloads import parse_download_headers

AUTHORIZE_V3 = {
    "accountId": "0123456789ab",
    "authorizationToken": "4_002acct_SECRET_TOKEN=",
    "applicationKeyExpirationTimestamp": None,
    "apiInfo": {
        "storageApi": {
            "absoluteMinimumPartSize": 5000000,
            "apiUrl": "https://api004.backblazeb2.com",
            "bucketId": None,
            "bucketName": None,
            "capabilities": ["listKeys", "writeKeys", "listFiles"],
            "downloadUrl": "https://f004.backblazeb2.com",
            "infoType": "storageApi",
            "namePrefix": None,
            "recommendedPartSize": 100000000,
            "s3ApiUrl": "https://s3.us-west-004.backblazeb2.com",
        },
        "groupsApi": {
            "capabilities": ["all"],
            "groupsApiUrl": "https://api004.backblazeb2.com",
            "infoType": "groupsApi",
        },
    },
}

FILE_UPLOAD = {
    "accountId": "acct",
    "action": "upload",
    "bucketId": "8d625eb63be2775577c70e1a",
    "contentLength": 4,
    "contentMd5": "e2fc714c4727ee9395f324cd2e7f331f",
    "contentSha1": "81fe8bfe87576c3ecb22426f8e57847382917acf",
    "contentType": "text/plain",
    "fileId": "4_z8d625eb63be2775577c70e1a_f1187926dea44b322_d20211230_m171512_c002_v0001110_t0055",
    "fileInfo": {"src_last_modified_millis": "1637248673875"},
    "fileName": "test-file-upload.txt",
    "fileRetention": {
        "isClientAuthorizedToRead": True,
        "value": {"mode": None, "retainUntilTimestamp": None},
    },
    "legalHold": {"isClientAuthorizedToRead": True, "value": None},
    "replicationStatus": "pending",
    "serverSideEncryption": {"algorithm": None, "mode": None},
    "uploadTimestamp": 1640884512000,
}

FOLDER_ROW = {
    "accountId": "acct",
    "action": "folder",
    "bucketId": "b",
    "contentLength": 0,
    "contentMd5": None,
    "contentSha1": None,
    "contentType": None,
    "fileId": None,
    "fileInfo": {},
    "fileName": "photos/cats/",
    "uploadTimestamp": 0,
}


def test_authorize_v3_shape() -> None:
    auth, token = AccountAuthorization.from_v3_json(AUTHORIZE_V3)
    assert token == "4_002acct_SECRET_TOKEN="
    assert auth.account_id == "0123456789ab"
    assert auth.api_url == "https://api004.backblazeb2.com"
    assert auth.download_url == "https://f004.backblazeb2.com"
    assert auth.absolute_minimum_part_size == 5_000_000
    assert auth.recommended_part_size == 100_000_000
    assert auth.allowed.capabilities == {"listKeys", "writeKeys", "listFiles"}
    assert auth.allowed.can("listFiles") and not auth.allowed.can("deleteFiles")
    assert auth.allowed.bucket_id is None and auth.allowed.name_prefix is None
    assert "SECRET" not in repr(auth)
    assert "authorizationToken" not in auth.raw


def test_authorize_v3_restricted_key() -> None:
    data = {**AUTHORIZE_V3}
    data["apiInfo"] = {
        "storageApi": {
            **AUTHORIZE_V3["apiInfo"]["storageApi"],  # type: ignore[index]
            "bucketId": "bkt",
            "bucketName": "my-bucket",
            "namePrefix": "photos/",
        }
    }
    auth, _ = AccountAuthorization.from_v3_json(data)
    assert (auth.allowed.bucket_id, auth.allowed.bucket_name, auth.allowed.name_prefix) == (
        "bkt",
        "my-bucket",
        "photos/",
    )


def test_authorize_v2_shape_is_refused_clearly() -> None:
    v2 = {
        "accountId": "a",
        "authorizationToken": "t",
        "apiUrl": "https://x",
        "downloadUrl": "https://y",
        "allowed": {"capabilities": []},
        "absoluteMinimumPartSize": 5,
        "recommendedPartSize": 10,
    }
    with pytest.raises(B2UnexpectedResponse, match="storageApi"):
        AccountAuthorization.from_v3_json(v2)


def test_bucket() -> None:
    bucket = Bucket.from_json(
        {
            "accountId": "acct",
            "bucketId": "1df2dee6ab62f7f577c70e1a",
            "bucketName": "my-bucket",
            "bucketType": "allPrivate",
            "bucketInfo": {"Cache-Control": "max-age=60"},
            "corsRules": [],
            "defaultServerSideEncryption": {
                "isClientAuthorizedToRead": True,
                "value": {"algorithm": None, "mode": None},
            },
            "fileLockConfiguration": {
                "isClientAuthorizedToRead": True,
                "value": {
                    "defaultRetention": {"mode": None, "period": None},
                    "isFileLockEnabled": False,
                },
            },
            "lifecycleRules": [
                {
                    "daysFromHidingToDeleting": 5,
                    "daysFromUploadingToHiding": None,
                    "fileNamePrefix": "my-files/",
                }
            ],
            "options": ["s3"],
            "revision": 2,
        }
    )
    assert bucket.bucket_name == "my-bucket" and bucket.revision == 2
    assert bucket.bucket_info == {"Cache-Control": "max-age=60"}
    assert bucket.lifecycle_rules == (LifecycleRule("my-files/", None, 5),)
    assert bucket.options == ("s3",)
    with pytest.raises(TypeError):
        bucket.bucket_info["x"] = "y"  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        bucket.bucket_name = "other"  # type: ignore[misc]


def test_lifecycle_rule_round_trip() -> None:
    rule = LifecycleRule("logs/", 30, 1, 7)
    assert LifecycleRule.from_json(rule.to_json()) == rule


def test_file_version_upload() -> None:
    fv = FileVersion.from_json(FILE_UPLOAD)
    assert fv.action is FileAction.UPLOAD
    assert fv.content_length == 4
    assert fv.sha1 == "81fe8bfe87576c3ecb22426f8e57847382917acf" and fv.sha1_verified
    assert fv.src_last_modified_millis == 1637248673875
    assert fv.upload_timestamp == 1640884512000
    assert fv.replication_status == "pending"
    assert not fv.is_folder and not fv.is_hide_marker


def test_folder_row() -> None:
    fv = FileVersion.from_json(FOLDER_ROW)
    assert fv.is_folder and fv.file_id is None and fv.sha1 is None
    assert fv.content_type is None and fv.file_info == {}


def test_hide_marker_both_shapes() -> None:
    base = {
        "action": "hide",
        "fileId": "id",
        "fileName": "f",
        "contentLength": 0,
        "contentType": "application/x-bz-hide-marker",
        "fileInfo": {},
        "uploadTimestamp": 1,
    }
    for sha1 in (None, "da39a3ee5e6b4b0d3255bfef95601890afd80709"):
        fv = FileVersion.from_json({**base, "contentSha1": sha1})
        assert fv.is_hide_marker


def test_large_file_sha1_and_unverified() -> None:
    start = FileVersion.from_json(
        {
            "action": "start",
            "fileId": "x",
            "fileName": "big",
            "contentSha1": "none",
            "contentMd5": None,
            "contentLength": 0,
            "fileInfo": {"large_file_sha1": "A" * 40},
        }
    )
    assert start.action is FileAction.START
    assert start.sha1 == "a" * 40 and not start.sha1_verified
    unverified = FileVersion.from_json({**FILE_UPLOAD, "contentSha1": "unverified:" + "b" * 40})
    assert unverified.sha1 == "b" * 40 and not unverified.sha1_verified
    none = FileVersion.from_json({**FILE_UPLOAD, "contentSha1": "none", "fileInfo": {}})
    assert none.sha1 is None


def test_copy_and_future_actions() -> None:
    assert FileVersion.from_json({**FILE_UPLOAD, "action": "copy"}).action is FileAction.COPY
    assert FileVersion.from_json({**FILE_UPLOAD, "action": "teleport"}).action is FileAction.UNKNOWN


def test_file_version_missing_required_fields() -> None:
    with pytest.raises(B2UnexpectedResponse, match="fileName"):
        FileVersion.from_json({"action": "upload", "fileId": "x"})
    with pytest.raises(B2UnexpectedResponse, match="fileId"):
        FileVersion.from_json({"action": "upload", "fileName": "x"})


def test_part() -> None:
    part = Part.from_json(
        {
            "contentLength": 5242880,
            "contentMd5": "79b281060d337b9b2b84ccf390adcf74",
            "contentSha1": "61b8d6600ac94d912874f569a9341120f680c9f8",
            "fileId": "4_z",
            "partNumber": 1,
            "serverSideEncryption": {"algorithm": None, "mode": None},
            "uploadTimestamp": 1639753356820,
        }
    )
    assert (part.part_number, part.content_length) == (1, 5242880)


def test_keys_hide_the_secret() -> None:
    data = {
        "accountId": "acct",
        "applicationKeyId": "002d2e6b27577ea0000000008",
        "bucketId": None,
        "capabilities": ["listFiles"],
        "expirationTimestamp": None,
        "keyName": "my-special-key",
        "namePrefix": None,
        "options": ["s3"],
    }
    key = ApplicationKey.from_json(data)
    assert key.capabilities == ("listFiles",)
    new = NewApplicationKey.from_json({**data, "applicationKey": "K0029r3hpMfUhncpS7uLYuIkg3FCMlo"})
    assert new.application_key == "K0029r3hpMfUhncpS7uLYuIkg3FCMlo"
    assert "K0029r3hp" not in repr(new) and "002d2e6b27577ea0000000008" in repr(new)


def test_upload_url_repr_hides_url_and_token() -> None:
    url = UploadUrl.from_json(
        {
            "bucketId": "b",
            "uploadUrl": "https://pod/b2api/v2/b2_upload_file/b/c002",
            "authorizationToken": "UPLOAD-SECRET",
        }
    )
    assert "UPLOAD-SECRET" not in repr(url) and "pod" not in repr(url)


def test_notification_rule_round_trip_and_secret_hidden() -> None:
    data = {
        "eventTypes": ["b2:ObjectCreated:Upload", "b2:ObjectCreated:MultipartUpload"],
        "isEnabled": True,
        "isSuspended": False,
        "maxEventsPerBatch": 1,
        "name": "mySampleRule1",
        "objectNamePrefix": "",
        "suspensionReason": "",
        "targetConfiguration": {
            "targetType": "webhook",
            "url": "https://www.example.com/sampleurl",
            "customHeaders": [{"name": "X-My-Custom-Header-1", "value": "myCustomHeaderVal1"}],
            "hmacSha256SigningSecret": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0",
        },
    }
    rule = NotificationRule.from_json(data)
    assert rule.target == WebhookTarget(
        "https://www.example.com/sampleurl",
        (("X-My-Custom-Header-1", "myCustomHeaderVal1"),),
        "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0",
    )
    assert "MTIzNDU2" not in repr(rule)
    assert NotificationRule.from_json(rule.to_json()) == rule


def test_download_headers() -> None:
    headers = httpx.Headers(
        {
            "content-length": "4",
            "content-type": "text/plain",
            "content-range": "bytes 5-8/10",
            "x-bz-file-id": "4_zabc",
            "x-bz-file-name": "dir/caf%C3%A9+au+lait%2B.txt",
            "x-bz-content-sha1": "unverified:" + "c" * 40,
            "x-bz-upload-timestamp": "1640884512000",
            "x-bz-info-src_last_modified_millis": "123",
            "x-bz-info-note": "a%20b",
            "cache-control": "max-age=60",
        }
    )
    info = parse_download_headers(headers, "b2_download_file_by_id")
    assert info.file_name == "dir/caf\u00e9 au lait+.txt"
    assert info.content_range == ContentRange(5, 8, 10)
    assert (info.content_length, info.size) == (4, 10)
    assert info.file_info == {"src_last_modified_millis": "123", "note": "a b"}
    assert info.sha1 == "c" * 40
    assert info.headers == {"cache-control": "max-age=60"}


def test_download_headers_large_file_and_missing_id() -> None:
    headers = httpx.Headers(
        {
            "content-length": "10",
            "x-bz-file-id": "id",
            "x-bz-file-name": "n",
            "x-bz-content-sha1": "none",
            "x-bz-info-large_file_sha1": "d" * 40,
        }
    )
    info = parse_download_headers(headers, "b2_download_file_by_name")
    assert info.sha1 == "d" * 40 and info.size == 10 and info.content_range is None
    with pytest.raises(B2UnexpectedResponse, match="X-Bz-File-Id"):
        parse_download_headers(httpx.Headers({"content-length": "1"}), "b2_download_file_by_id")
