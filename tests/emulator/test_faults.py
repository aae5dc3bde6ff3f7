"""Fault injection, statistics and traffic shaping."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable

import httpx
import pytest
from emu_helpers import B2, sha1

from b2fs.emulator import Emulator
from b2fs.emulator.faults import Fault, Faults, parse_spec
from b2fs.emulator.shaping import TokenBucket


def test_parse_spec() -> None:
    rules = parse_spec("upload:503:0.1, download:reset:0.02,b2_list_file_names:429@0,all:500")
    assert [(r.target, r.fault, r.probability) for r in rules] == [
        ("upload", Fault("503"), 0.1),
        ("download", Fault("reset"), 0.02),
        ("b2_list_file_names", Fault("429", 0), 1.0),
        ("all", Fault("500"), 1.0),
    ]
    assert parse_spec("api:429")[0].fault == Fault("429", 1)
    for bad in (
        "upload",
        "upload:418",
        "nowhere:503",
        "upload:503:2",
        "upload:500@3",
        "upload:503:x",
    ):
        with pytest.raises(ValueError):
            parse_spec(bad)


def test_seeded_faults_are_repeatable() -> None:
    def draws(seed: int) -> list[bool]:
        f = Faults("api:503:0.5", seed=seed)
        return [f.pick("b2_list_buckets", "api") is not None for _ in range(50)]

    assert draws(7) == draws(7)
    assert 5 < sum(draws(7)) < 45
    assert draws(7) != draws(8)


def test_scripted_faults_hit_exactly_the_next_calls(b2: B2, emulator: Emulator) -> None:
    emulator.faults.script("b2_list_buckets", "503", count=2)
    assert b2.call("b2_list_buckets", accountId=b2.account_id).status_code == 503
    b2.ok("b2_get_upload_url", bucketId=b2.create_bucket())  # other calls are untouched
    assert b2.call("b2_list_buckets", accountId=b2.account_id).status_code == 503
    b2.ok("b2_list_buckets", accountId=b2.account_id)
    emulator.faults.script("api", "429@0")
    r = b2.call("b2_list_buckets", accountId=b2.account_id)
    assert r.status_code == 429 and r.headers["retry-after"] == "0"
    assert r.json()["code"] == "too_many_requests"
    emulator.faults.script("auth", "401")
    with pytest.raises(AssertionError):
        b2.authorize()
    emulator.faults.script("all", "500")
    r = b2.call("b2_list_buckets", accountId=b2.account_id)
    assert r.status_code == 500 and r.json()["code"] == "internal_error"
    emulator.faults.script("api", "401")
    r = b2.call("b2_list_buckets", accountId=b2.account_id)
    assert r.status_code == 401 and r.json()["code"] == "expired_auth_token"
    b2.ok("b2_list_buckets", accountId=b2.account_id)


def test_upload_faults(b2: B2, emulator: Emulator) -> None:
    bucket = b2.create_bucket()
    emulator.faults.script("upload", "503@1")
    doc = b2.upload(bucket, "f", b"x" * 1000, expect=503)
    assert doc["code"] == "service_unavailable"
    emulator.faults.script("upload", "reset")
    with pytest.raises(httpx.TransportError):
        b2.upload(bucket, "f", b"x" * 100_000)
    b2.upload(bucket, "f", b"x" * 1000)
    assert len(b2.ok("b2_list_file_versions", bucketId=bucket)["files"]) == 1


def test_download_reset_mid_body(b2: B2, emulator: Emulator) -> None:
    bucket = b2.create_bucket()
    data = bytes(range(256)) * 4096
    b2.upload(bucket, "f", data)
    emulator.faults.script("download", "reset")
    with (
        httpx.Client() as c,
        c.stream("GET", f"{b2.url}/file/test-bucket/f", headers={"Authorization": b2.token}) as r,
    ):
        assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
        got = bytearray()
        with pytest.raises(httpx.TransportError):
            for chunk in r.iter_bytes():
                got += chunk
    assert 0 < len(got) < len(data) and data.startswith(bytes(got))
    assert b2.download("/file/test-bucket/f").content == data


def test_probabilistic_faults_with_seed(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory(faults="b2_list_buckets:503:0.5", fault_seed=3)
    c = client_factory(emu)
    statuses = [c.call("b2_list_buckets", accountId=c.account_id).status_code for _ in range(40)]
    assert set(statuses) == {200, 503}
    emu.faults.clear()
    assert c.call("b2_list_buckets", accountId=c.account_id).status_code == 200


def test_stats_count_every_call(b2: B2, emulator: Emulator) -> None:
    emulator.stats.reset()
    bucket = b2.create_bucket()
    b2.upload(bucket, "f", b"x")
    b2.download("/file/test-bucket/f")
    b2.download("/file/test-bucket/missing")
    emulator.faults.script("b2_list_file_names", "500")
    b2.call("b2_list_file_names", bucketId=bucket)
    b2.call("b2_list_file_names", bucketId=bucket)
    calls = emulator.stats.calls()
    assert calls == {
        "b2_create_bucket": 1,
        "b2_get_upload_url": 1,
        "b2_upload_file": 1,
        "b2_download_file_by_name": 2,
        "b2_list_file_names": 2,
    }


def test_token_bucket_paces(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    slept: list[float] = []
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])

    def fake_sleep(s: float) -> None:
        slept.append(s)
        clock[0] += s

    monkeypatch.setattr(time, "sleep", fake_sleep)
    bucket = TokenBucket(10_000_000)  # 80 Mbit/s
    for _ in range(100):
        bucket.consume(100_000)
    # 10 MB at 10 MB/s: about one second of waiting (less the initial burst)
    assert 0.9 < sum(slept) < 1.0


def test_shaped_emulator_serves_correctly(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory(bandwidth_mbps=800, latency_ms=1)
    c = client_factory(emu)
    bucket = c.create_bucket()
    data = bytes(range(256)) * 2000
    c.upload(bucket, "shaped", data)
    assert c.download("/file/test-bucket/shaped").content == data
    r = c.download("/file/test-bucket/shaped", headers={"Range": "bytes=1000-1999"})
    assert r.content == data[1000:2000]
    c.upload(bucket, "at-end", data + sha1(data).encode(), sha1="hex_digits_at_end")


def test_shaped_connection_with_big_bodies(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory(bandwidth_mbps=400)
    c = client_factory(emu)
    r = c.http.post(
        f"{c.url}/b2api/v3/b2_list_buckets",
        headers={"Authorization": c.token},
        json={"accountId": c.account_id, "padding": "x" * 200_000},
    )
    assert r.status_code == 200

    def chunked():  # type: ignore[no-untyped-def]
        yield json.dumps({"accountId": c.account_id, "padding": "y" * 150_000}).encode()

    r = c.http.post(
        f"{c.url}/b2api/v3/b2_list_buckets", headers={"Authorization": c.token}, content=chunked()
    )
    assert r.status_code == 200
    bucket = c.create_bucket()
    u = c.ok("b2_get_upload_url", bucketId=bucket)
    with httpx.Client() as h:
        r = h.post(
            u["uploadUrl"],
            content=b"z" * 300_000,
            headers={
                "Authorization": u["authorizationToken"],
                "X-Bz-File-Name": "bad%01name",
                "Content-Type": "text/plain",
                "X-Bz-Content-Sha1": sha1(b"z" * 300_000),
            },
        )
        assert r.status_code == 400 and "connection" not in r.headers  # body drained
        r = h.post(
            f"{c.url}/b2api/v3/b2_list_buckets",
            headers={"Authorization": c.token},
            json={"accountId": c.account_id},
        )
        assert r.status_code == 200


def test_reset_on_json_call(b2: B2, emulator: Emulator) -> None:
    emulator.faults.script("b2_list_buckets", "reset")
    with pytest.raises(httpx.TransportError):
        b2.call("b2_list_buckets", accountId=b2.account_id)
    b2.ok("b2_list_buckets", accountId=b2.account_id)
    host, port = emulator.url.removeprefix("http://").rsplit(":", 1)
    socket.create_connection((host, int(port)), timeout=5).close()


def test_x_bz_test_mode_header(b2: B2) -> None:
    bucket = b2.create_bucket()
    statuses = [
        b2.upload(
            bucket,
            "f",
            b"x",
            headers={"X-Bz-Test-Mode": "fail_some_uploads"},
            expect=200 if i % 2 == 0 else 503,
        ).get("status", 200)
        for i in range(4)
    ]
    assert statuses == [200, 503, 200, 503]
    h = {"Authorization": b2.token, "X-Bz-Test-Mode": "expire_some_account_authorization_tokens"}
    codes = [
        b2.http.post(
            f"{b2.url}/b2api/v3/b2_list_buckets", headers=h, json={"accountId": b2.account_id}
        ).status_code
        for _ in range(4)
    ]
    assert codes == [200, 401, 200, 401]
    h = {"Authorization": b2.token, "X-Bz-Test-Mode": "force_cap_exceeded"}
    r = b2.http.post(f"{b2.url}/b2api/v3/b2_get_upload_url", headers=h, json={"bucketId": bucket})
    assert r.status_code == 403 and r.json()["code"] == "storage_cap_exceeded"
    r = b2.http.get(f"{b2.url}/file/test-bucket/f", headers=h)
    assert r.status_code == 403 and r.json()["code"] == "download_cap_exceeded"
