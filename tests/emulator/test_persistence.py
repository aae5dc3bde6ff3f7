"""Persistence with --data, and crash consistency under kill -9 (subprocess emulator)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from emu_helpers import B2, EmulatorProcess, sha1, wait_for

from b2fs.emulator import Emulator

KEY_ID = "0123456789ab"
KEY = "K" + "persist" * 4 + "xx"


@pytest.fixture
def procs(secret_registry: Callable[[str], None]) -> Iterator[Callable[..., EmulatorProcess]]:
    started: list[EmulatorProcess] = []
    secret_registry(KEY)

    def start(*args: str) -> EmulatorProcess:
        p = EmulatorProcess(*args, env={"B2FS_EMULATOR_KEY_ID": KEY_ID, "B2FS_EMULATOR_KEY": KEY})
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


def test_in_process_persistence(
    tmp_path: Path, emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory(data_dir=str(tmp_path))
    c = client_factory(emu)
    bucket = c.create_bucket()
    c.upload(bucket, "kept", b"kept")
    key = c.ok(
        "b2_create_key", accountId=c.account_id, capabilities=["listBuckets"], keyName="saved"
    )
    c.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[
            {
                "name": "saved-rule",
                "eventTypes": ["b2:ObjectCreated:*"],
                "isEnabled": True,
                "objectNamePrefix": "",
                "targetConfiguration": {"targetType": "webhook", "url": "https://example.com/x"},
            }
        ],
    )
    master = (emu.master_key_id, emu.master_key)
    token = c.token
    emu.stop()
    emu2 = emulator_factory(data_dir=str(tmp_path))
    assert (emu2.master_key_id, emu2.master_key) == master
    c2 = client_factory(emu2)
    assert c2.account_id == c.account_id
    assert c2.download("/file/test-bucket/kept").content == b"kept"
    assert c2.call("b2_list_buckets", token=token, accountId=c2.account_id).status_code == 200
    keys = c2.ok("b2_list_keys", accountId=c2.account_id)["keys"]
    assert [k["applicationKeyId"] for k in keys] == [key["applicationKeyId"]]
    rules = c2.ok("b2_get_bucket_notification_rules", bucketId=bucket)
    assert rules["eventNotificationRules"][0]["name"] == "saved-rule"


def test_one_emulator_per_data_dir(
    tmp_path: Path, emulator_factory: Callable[..., Emulator]
) -> None:
    emulator_factory(data_dir=str(tmp_path))
    with pytest.raises(OSError, match="in use by another emulator"):
        Emulator(data_dir=str(tmp_path)).start()


def test_without_data_nothing_persists(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2]
) -> None:
    emu = emulator_factory()
    c = client_factory(emu)
    c.create_bucket()
    root = emu.app.store.blobs.root
    emu.stop()
    assert not os.path.exists(root)


def test_kill_9_during_uploads(tmp_path: Path, procs: Callable[..., EmulatorProcess]) -> None:
    data_dir = str(tmp_path / "data")
    p = procs("--data", data_dir)
    c = B2(p.url, KEY_ID, KEY)
    try:
        bucket = c.create_bucket()
        done = {f"done-{i}": os.urandom(50_000 + i) for i in range(5)}
        for name, data in done.items():
            c.upload(bucket, name, data)
        big = os.urandom(5_000_000)
        finished_large = c.start_large(bucket, "large-done")
        c.upload_part(finished_large, 1, big)
        c.upload_part(finished_large, 2, b"end")
        c.ok("b2_finish_large_file", fileId=finished_large, partSha1Array=[sha1(big), sha1(b"end")])
        unfinished = c.start_large(bucket, "large-pending")
        c.upload_part(unfinished, 1, big)
        httpx.post(f"{p.url}/_emulator/stats/reset")

        # Uploads that are mid-body when the process dies.
        release = threading.Event()
        errors: list[BaseException] = []

        def stalled_upload(name: str) -> None:
            def body() -> Iterator[bytes]:
                yield b"x" * 100_000
                release.wait(30)
                yield b"x" * 100_000

            if name == "part":
                u = c.ok("b2_get_upload_part_url", fileId=unfinished)
                headers = {"X-Bz-Part-Number": "2"}
            else:
                u = c.ok("b2_get_upload_url", bucketId=bucket)
                headers = {"X-Bz-File-Name": name, "Content-Type": "text/plain"}
            try:
                with httpx.Client() as h:
                    h.post(
                        u["uploadUrl"],
                        content=body(),
                        headers={
                            **headers,
                            "Authorization": u["authorizationToken"],
                            "Content-Length": "200000",
                            "X-Bz-Content-Sha1": sha1(b"x" * 200_000),
                        },
                        timeout=30,
                    )
            except BaseException as e:
                errors.append(e)

        threads = [
            threading.Thread(target=stalled_upload, args=(name,))
            for name in ("in-flight-0", "in-flight-1", "in-flight-2", "part")
        ]
        for t in threads:
            t.start()

        def uploads_received() -> bool:
            calls = httpx.get(f"{p.url}/_emulator/stats").json()["calls"]
            return calls.get("b2_upload_file", 0) == 3 and calls.get("b2_upload_part", 0) == 1

        wait_for(uploads_received, what="three uploads in flight")
        p.kill()
        release.set()
        for t in threads:
            t.join(30)
        assert len(errors) == 4  # every in-flight upload failed on the client side
    finally:
        c.close()

    p2 = procs("--data", data_dir)
    c2 = B2(p2.url, KEY_ID, KEY)
    try:
        names = {
            f["fileName"]: f
            for f in c2.ok("b2_list_file_versions", bucketId=bucket, maxFileCount=1000)["files"]
        }
        assert set(names) == {*done, "large-done", "large-pending"}
        assert names["large-pending"]["action"] == "start"
        for name, data in done.items():
            assert c2.download(f"/file/test-bucket/{name}").content == data
        assert c2.download("/file/test-bucket/large-done").content == big + b"end"
        pending = c2.ok("b2_list_unfinished_large_files", bucketId=bucket)["files"]
        assert [f["fileId"] for f in pending] == [unfinished]
        parts = c2.ok("b2_list_parts", fileId=unfinished)["parts"]
        assert [(x["partNumber"], x["contentSha1"]) for x in parts] == [(1, sha1(big))]
        # the pending large file can be finished after the restart
        c2.upload_part(unfinished, 2, b"more")
        c2.ok("b2_finish_large_file", fileId=unfinished, partSha1Array=[sha1(big), sha1(b"more")])
        assert not os.listdir(os.path.join(data_dir, "tmp"))
        blobs = [f for d in Path(data_dir, "blobs").iterdir() for f in d.iterdir()]
        assert len(blobs) == len(done) + 2 + 2  # small files + two parts of each large file
    finally:
        c2.close()


def test_memory_stays_flat_for_big_transfers(b2: B2) -> None:
    """A 64 MB upload and download never hold more than a few MB in Python objects."""
    import http.client
    import tracemalloc

    bucket = b2.create_bucket()
    size = 64 * 1024 * 1024
    block = bytes(range(256)) * 4096  # 1 MiB
    digest = hashlib.sha1()
    for _ in range(size // len(block)):
        digest.update(block)
    u = b2.ok("b2_get_upload_url", bucketId=bucket)
    host, port = b2.url.removeprefix("http://").rsplit(":", 1)
    tracemalloc.start()
    try:
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        conn.putrequest("POST", u["uploadUrl"].removeprefix(b2.url))
        for name, value in {
            "Authorization": u["authorizationToken"],
            "X-Bz-File-Name": "big",
            "Content-Type": "application/octet-stream",
            "Content-Length": str(size),
            "X-Bz-Content-Sha1": digest.hexdigest(),
        }.items():
            conn.putheader(name, value)
        conn.endheaders()
        for _ in range(size // len(block)):
            conn.send(block)
        r = conn.getresponse()
        assert r.status == 200, r.read()
        r.read()
        conn.request("GET", "/file/test-bucket/big", headers={"Authorization": b2.token})
        r = conn.getresponse()
        got = hashlib.sha1()
        buf = bytearray(1 << 20)
        while n := r.readinto(buf):
            got.update(memoryview(buf)[:n])
        assert got.hexdigest() == digest.hexdigest()
        conn.close()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 1024 * 1024, f"peak Python memory {peak} bytes"
