"""b2sdk in-process as a client: apiver v2 (API v3) and apiver v3 (API v4)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import b2sdk.v2 as b2sdk_v2  # the test extra pins b2sdk >= 2.9.1: both apivers are there
import b2sdk.v3 as b2sdk_v3
import pytest

from b2fs.emulator import Emulator

APIS: list[Any] = [
    pytest.param(b2sdk_v2, id="apiver-v2"),
    pytest.param(b2sdk_v3, id="apiver-v3"),
]


@pytest.fixture
def sdk_emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    return emulator_factory(min_part_size=50_000, recommended_part_size=100_000)


def make_api(sdk: Any, emu: Emulator, key_id: str | None = None, key: str | None = None) -> Any:
    api = sdk.B2Api(sdk.InMemoryAccountInfo())
    api.authorize_account(
        realm=emu.url,
        application_key_id=key_id or emu.master_key_id,
        application_key=key or emu.master_key,
    )
    return api


@pytest.mark.parametrize("sdk", APIS)
def test_b2sdk_round_trip(sdk: Any, sdk_emulator: Emulator, tmp_path: Path) -> None:
    api = make_api(sdk, sdk_emulator)
    sdk_emulator.stats.reset()
    bucket = api.create_bucket("sdk-bucket", "allPrivate")
    assert api.get_bucket_by_name("sdk-bucket").id_ == bucket.id_

    small = bucket.upload_bytes(
        b"small data", "dir/small.txt", file_info={"src_last_modified_millis": "1000"}
    )
    assert small.content_sha1 == hashlib.sha1(b"small data").hexdigest()
    big_data = os.urandom(350_000)
    big_path = tmp_path / "big.bin"
    big_path.write_bytes(big_data)
    big = bucket.upload_local_file(str(big_path), "dir/big.bin")
    assert big.size == len(big_data)
    assert sdk_emulator.stats.calls().get("b2_upload_part", 0) >= 3

    out = io.BytesIO()
    bucket.download_file_by_name("dir/big.bin").save(out)
    assert out.getvalue() == big_data
    out = io.BytesIO()
    bucket.download_file_by_id(small.id_).save(out)
    assert out.getvalue() == b"small data"
    dl = tmp_path / "dl.bin"
    bucket.download_file_by_name("dir/big.bin").save_to(str(dl))
    assert dl.read_bytes() == big_data

    info = bucket.get_file_info_by_name("dir/small.txt")
    assert info.file_info["src_last_modified_millis"] == "1000"
    names = [fv.file_name for fv, _ in bucket.ls("dir", recursive=True)]
    assert names == ["dir/big.bin", "dir/small.txt"]
    top = [folder for _, folder in bucket.ls("", recursive=False)]
    assert top == ["dir/"]

    bucket.hide_file("dir/small.txt")
    assert [fv.file_name for fv, _ in bucket.ls("dir", recursive=True)] == ["dir/big.bin"]
    versions = [
        (fv.file_name, fv.action) for fv, _ in bucket.ls("dir", recursive=True, latest_only=False)
    ]
    assert ("dir/small.txt", "hide") in versions

    copied = bucket.copy(small.id_, "copied.txt")
    out = io.BytesIO()
    bucket.download_file_by_id(copied.id_).save(out)
    assert out.getvalue() == b"small data"

    for fv, _ in list(bucket.ls("", recursive=True, latest_only=False)):
        api.delete_file_version(fv.id_, fv.file_name)
    api.delete_bucket(bucket)
    assert "b2_delete_bucket" in sdk_emulator.stats.calls()


@pytest.mark.parametrize("sdk", APIS)
def test_b2sdk_keys_and_restrictions(
    sdk: Any,
    sdk_emulator: Emulator,
    secret_registry: Callable[[str], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # b2sdk itself logs the new key's secret at DEBUG when it builds the key object from the
    # create_key response; keep its debug logging out of this test's captured output.
    caplog.set_level(logging.INFO, logger="b2sdk")
    api = make_api(sdk, sdk_emulator)
    bucket = api.create_bucket("sdk-keyed", "allPrivate")
    api.create_bucket("sdk-other", "allPrivate")
    kwargs: dict[str, Any] = {
        "capabilities": ["listBuckets", "listFiles", "readFiles", "writeFiles"],
        "key_name": "sdk-key",
        "name_prefix": "in/",
    }
    if sdk is b2sdk_v2:
        kwargs["bucket_id"] = bucket.id_
    else:
        kwargs["bucket_ids"] = [bucket.id_]
    created = api.create_key(**kwargs)
    secret_registry(created.application_key)
    scoped = make_api(sdk, sdk_emulator, created.id_, created.application_key)
    b = scoped.get_bucket_by_name("sdk-keyed")
    b.upload_bytes(b"ok", "in/ok.txt")
    with pytest.raises(sdk.exception.B2Error if hasattr(sdk, "exception") else Exception):
        b.upload_bytes(b"no", "out/no.txt")
    with pytest.raises(Exception):  # noqa: B017 - the exact class differs between apivers
        scoped.get_bucket_by_name("sdk-other")
    keys = [k.id_ for k in api.list_keys()]
    assert created.id_ in keys
    api.delete_key(created)


@pytest.mark.parametrize("sdk", APIS)
def test_b2sdk_notification_rules(sdk: Any, sdk_emulator: Emulator) -> None:
    api = make_api(sdk, sdk_emulator)
    bucket = api.create_bucket("sdk-rules", "allPrivate")
    rule = {
        "name": "sdk-rule-1",
        "eventTypes": ["b2:ObjectCreated:*"],
        "isEnabled": True,
        "objectNamePrefix": "x/",
        "targetConfiguration": {"targetType": "webhook", "url": "https://example.com/h"},
    }
    got = bucket.set_notification_rules([rule])
    assert got[0]["name"] == "sdk-rule-1" and got[0]["isSuspended"] is False
    assert bucket.get_notification_rules() == got


def test_b2sdk_retries_injected_faults(sdk_emulator: Emulator) -> None:
    api = make_api(b2sdk_v2, sdk_emulator)
    bucket = api.create_bucket("sdk-faults", "allPrivate")
    sdk_emulator.faults.script("upload", "503@0", count=2)
    sdk_emulator.faults.script("b2_list_file_names", "429@0")
    bucket.upload_bytes(b"retried", "f")
    assert [fv.file_name for fv, _ in bucket.ls("", recursive=True)] == ["f"]
    sdk_emulator.expire_tokens()  # b2sdk re-authorizes on expired_auth_token
    assert [fv.file_name for fv, _ in bucket.ls("", recursive=True)] == ["f"]
