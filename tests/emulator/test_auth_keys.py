"""Authorization shapes per version, keys, capabilities and restrictions (§1.1, §3, §4.1, §4.5)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from emu_helpers import B2

from b2fs.emulator import Emulator


def authorize(
    emu: Emulator,
    version: int,
    key_id: str | None = None,
    key: str | None = None,
    method: str = "GET",
) -> httpx.Response:
    return httpx.request(
        method,
        f"{emu.url}/b2api/v{version}/b2_authorize_account",
        auth=(key_id or emu.master_key_id, key or emu.master_key),
    )


@pytest.mark.parametrize("version", [1, 2])
def test_authorize_v1_v2_flat_with_allowed(emulator: Emulator, version: int) -> None:
    r = authorize(emulator, version)
    assert r.status_code == 200
    doc = r.json()
    assert doc["apiUrl"] == doc["downloadUrl"] == emulator.url
    assert doc["absoluteMinimumPartSize"] == 5_000_000
    assert doc["recommendedPartSize"] == 100_000_000
    assert set(doc["allowed"]) == {"bucketId", "bucketName", "capabilities", "namePrefix"}
    assert "listBuckets" in doc["allowed"]["capabilities"]
    assert "apiInfo" not in doc
    assert ("minimumPartSize" in doc) == (version == 1)


def test_authorize_v3_flat_storage_api(emulator: Emulator) -> None:
    doc = authorize(emulator, 3, method="POST").json()
    api = doc["apiInfo"]["storageApi"]
    assert api["infoType"] == "storageApi"
    assert api["bucketId"] is None and api["bucketName"] is None and api["namePrefix"] is None
    assert "writeKeys" in api["capabilities"]
    assert "allowed" not in api and "allowed" not in doc
    assert doc["applicationKeyExpirationTimestamp"] is None
    for field in (
        "apiUrl",
        "downloadUrl",
        "s3ApiUrl",
        "recommendedPartSize",
        "absoluteMinimumPartSize",
    ):
        assert field in api


def test_authorize_v4_allowed_buckets(emulator: Emulator) -> None:
    doc = authorize(emulator, 4).json()
    api = doc["apiInfo"]["storageApi"]
    assert api["allowed"]["buckets"] is None
    assert "bucketId" not in api and "infoType" not in api
    assert "deleteFiles" in api["allowed"]["capabilities"]


def test_authorize_errors(emulator: Emulator) -> None:
    r = authorize(emulator, 3, key="K" + "x" * 30)
    assert r.status_code == 401
    assert r.json()["code"] in ("bad_auth_token", "unauthorized")
    r = httpx.get(f"{emulator.url}/b2api/v3/b2_authorize_account")
    assert r.status_code == 401 and r.json()["code"] == "missing_auth_token"
    r = httpx.get(
        f"{emulator.url}/b2api/v3/b2_authorize_account",
        headers={"Authorization": "Basic !!!notbase64"},
    )
    assert r.status_code == 401


def test_account_id_works_as_master_key_id(emulator: Emulator, b2: B2) -> None:
    r = authorize(emulator, 3, key_id=b2.account_id)
    assert r.status_code == 200


def test_configured_master_key(emulator_factory: Callable[..., Emulator]) -> None:
    emu = emulator_factory(key_id="000000000001", key="K" + "s" * 30)
    assert emu.master_key_id == "000000000001"
    assert authorize(emu, 4).status_code == 200


def test_token_errors(b2: B2) -> None:
    b2.error("b2_list_buckets", 401, "missing_auth_token", token="", accountId=b2.account_id)
    b2.error("b2_list_buckets", 401, "bad_auth_token", token="nope", accountId=b2.account_id)


def test_expire_tokens(emulator: Emulator, b2: B2) -> None:
    b2.ok("b2_list_buckets", accountId=b2.account_id)
    emulator.expire_tokens()
    b2.error("b2_list_buckets", 401, "expired_auth_token", accountId=b2.account_id)
    b2.authorize()
    b2.ok("b2_list_buckets", accountId=b2.account_id)


def test_token_ttl(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory(token_ttl=0.0)
    c = client_factory(emu)
    c.error("b2_list_buckets", 401, "expired_auth_token", accountId=c.account_id)


def test_key_shapes_v3_and_v4(emulator: Emulator, client_factory: Callable[..., B2]) -> None:
    v3 = client_factory(emulator, version=3)
    v4 = client_factory(emulator, version=4)
    bucket = v3.create_bucket("keyed-bucket")
    k3 = v3.ok(
        "b2_create_key",
        accountId=v3.account_id,
        capabilities=["listFiles", "readFiles"],
        keyName="k3",
        bucketId=bucket,
        namePrefix="p/",
    )
    assert k3["bucketId"] == bucket and "bucketIds" not in k3
    assert len(k3["applicationKeyId"]) == 25
    assert len(k3["applicationKey"]) == 31 and k3["applicationKey"].startswith("K")
    assert k3["namePrefix"] == "p/" and k3["options"] == ["s3"]
    k4 = v4.ok(
        "b2_create_key",
        accountId=v4.account_id,
        capabilities=["listBuckets"],
        keyName="k4",
        bucketIds=None,
        validDurationInSeconds=3600,
    )
    assert k4["bucketIds"] is None and "bucketId" not in k4
    assert k4["expirationTimestamp"] is not None
    listed3 = v3.ok("b2_list_keys", accountId=v3.account_id)
    assert {k["keyName"] for k in listed3["keys"]} == {"k3", "k4"}
    assert all("applicationKey" not in k for k in listed3["keys"])
    listed4 = v4.ok("b2_list_keys", accountId=v4.account_id)
    assert all("bucketIds" in k for k in listed4["keys"])
    deleted = v4.ok("b2_delete_key", applicationKeyId=k3["applicationKeyId"])
    assert deleted["bucketIds"] == [bucket] and "applicationKey" not in deleted
    v4.error("b2_delete_key", 400, "bad_request", applicationKeyId=k3["applicationKeyId"])


def test_list_keys_paging(b2: B2) -> None:
    for i in range(5):
        b2.ok(
            "b2_create_key", accountId=b2.account_id, capabilities=["listFiles"], keyName=f"key-{i}"
        )
    seen: list[str] = []
    start = None
    while True:
        page = b2.ok(
            "b2_list_keys", accountId=b2.account_id, maxKeyCount=2, startApplicationKeyId=start
        )
        assert len(page["keys"]) <= 2
        seen += [k["applicationKeyId"] for k in page["keys"]]
        start = page["nextApplicationKeyId"]
        if start is None:
            break
    assert len(seen) == 5 and seen == sorted(seen)
    b2.error("b2_list_keys", 400, "out_of_range", accountId=b2.account_id, maxKeyCount=10001)


def test_create_key_validation(b2: B2) -> None:
    base = {"accountId": b2.account_id, "keyName": "ok-name"}
    b2.error("b2_create_key", 400, "bad_request", capabilities=[], **base)
    b2.error("b2_create_key", 400, "bad_request", capabilities=["flyToMoon"], **base)
    b2.error(
        "b2_create_key",
        400,
        "bad_request",
        capabilities=["listFiles"],
        accountId=b2.account_id,
        keyName="bad name!",
    )
    b2.error(
        "b2_create_key",
        400,
        "bad_request",
        capabilities=["listFiles"],
        validDurationInSeconds=0,
        **base,
    )
    b2.error(
        "b2_create_key", 400, "bad_request", capabilities=["listFiles"], namePrefix="x", **base
    )
    bucket = b2.create_bucket("restricted-one")
    b2.error(
        "b2_create_key", 400, "bad_request", capabilities=["writeKeys"], bucketId=bucket, **base
    )
    b2.error(
        "b2_create_key", 400, "bad_bucket_id", capabilities=["listFiles"], bucketId="0" * 24, **base
    )


def test_capabilities_enforced(
    emulator: Emulator, b2: B2, client_factory: Callable[..., B2]
) -> None:
    key = b2.ok(
        "b2_create_key", accountId=b2.account_id, capabilities=["listBuckets"], keyName="list-only"
    )
    c = client_factory(emulator, key_id=key["applicationKeyId"], key=key["applicationKey"])
    c.ok("b2_list_buckets", accountId=c.account_id)
    c.error(
        "b2_create_bucket",
        401,
        "unauthorized",
        accountId=c.account_id,
        bucketName="nope-bucket",
        bucketType="allPrivate",
    )
    c.error("b2_list_keys", 401, "unauthorized", accountId=c.account_id)
    b2.ok("b2_delete_key", applicationKeyId=key["applicationKeyId"])
    c.error("b2_list_buckets", 401, "bad_auth_token", accountId=c.account_id)
    r = authorize(emulator, 3, key["applicationKeyId"], key["applicationKey"])
    assert r.status_code == 401


def test_bucket_and_prefix_restrictions(
    emulator: Emulator, b2: B2, client_factory: Callable[..., B2]
) -> None:
    mine = b2.create_bucket("mine-bucket")
    other = b2.create_bucket("other-bucket")
    b2.upload(mine, "in/a.txt", b"in")
    b2.upload(mine, "out/b.txt", b"out")
    key = b2.ok(
        "b2_create_key",
        accountId=b2.account_id,
        keyName="scoped",
        capabilities=["listBuckets", "listFiles", "readFiles", "writeFiles", "deleteFiles"],
        bucketId=mine,
        namePrefix="in/",
    )
    c = client_factory(emulator, key_id=key["applicationKeyId"], key=key["applicationKey"])
    api = c.auth["apiInfo"]["storageApi"]
    assert api["bucketId"] == mine and api["bucketName"] == "mine-bucket"
    assert api["namePrefix"] == "in/"
    # list_buckets must name the bucket
    c.error("b2_list_buckets", 401, "unauthorized", accountId=c.account_id)
    assert (
        len(c.ok("b2_list_buckets", accountId=c.account_id, bucketName="mine-bucket")["buckets"])
        == 1
    )
    c.error("b2_list_buckets", 401, "unauthorized", accountId=c.account_id, bucketId=other)
    # other bucket refused
    c.error("b2_list_file_names", 401, "unauthorized", bucketId=other)
    c.error("b2_get_upload_url", 401, "unauthorized", bucketId=other)
    # prefix: listing must ask within it (v2+)
    c.error("b2_list_file_names", 401, "unauthorized", bucketId=mine)
    names = c.ok("b2_list_file_names", bucketId=mine, prefix="in/")["files"]
    assert [f["fileName"] for f in names] == ["in/a.txt"]
    c.upload(mine, "in/new.txt", b"x")
    c.upload(mine, "out/new.txt", b"x", expect=401)
    out_file = b2.ok("b2_list_file_names", bucketId=mine, prefix="out/")["files"][0]
    c.error("b2_get_file_info", 401, "unauthorized", fileId=out_file["fileId"])
    r = c.download("/file/mine-bucket/out/b.txt")
    assert r.status_code == 401
    assert c.download("/file/mine-bucket/in/a.txt").content == b"in"
    # v1 filters instead of refusing
    v1 = client_factory(
        emulator, version=1, key_id=key["applicationKeyId"], key=key["applicationKey"]
    )
    names = v1.ok("b2_list_file_names", bucketId=mine)["files"]
    assert {f["fileName"] for f in names} == {"in/a.txt", "in/new.txt"}


def test_multi_bucket_key_needs_v4(emulator: Emulator, client_factory: Callable[..., B2]) -> None:
    v4 = client_factory(emulator, version=4)
    a = v4.create_bucket("multi-a")
    b = v4.create_bucket("multi-b")
    key = v4.ok(
        "b2_create_key",
        accountId=v4.account_id,
        keyName="multi",
        capabilities=["listBuckets", "listFiles"],
        bucketIds=[a, b],
    )
    assert key["bucketIds"] == [a, b]
    r = authorize(emulator, 3, key["applicationKeyId"], key["applicationKey"])
    assert r.status_code == 401 and r.json()["code"] == "unsupported"
    doc = authorize(emulator, 4, key["applicationKeyId"], key["applicationKey"]).json()
    assert doc["apiInfo"]["storageApi"]["allowed"]["buckets"] == [
        {"id": a, "name": "multi-a"},
        {"id": b, "name": "multi-b"},
    ]
    v3 = client_factory(emulator, version=3)
    assert v3.ok("b2_list_keys", accountId=v3.account_id)["keys"] == []
    v3.error("b2_delete_key", 400, applicationKeyId=key["applicationKeyId"])
