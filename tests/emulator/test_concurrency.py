"""Many clients at once: every operation stays consistent (one SQLite connection and lock)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from emu_helpers import B2, sha1

from b2fs.emulator import Emulator


def test_parallel_mixed_workload(emulator: Emulator, client_factory: Callable[..., B2]) -> None:
    setup = client_factory(emulator)
    bucket = setup.create_bucket()
    large = setup.start_large(bucket, "shared-large")
    errors: list[BaseException] = []
    uploaded: dict[str, bytes] = {}
    lock = threading.Lock()

    def worker(n: int) -> None:
        c = B2(emulator.url, emulator.master_key_id, emulator.master_key)
        try:
            for i in range(8):
                name = f"w{n}/f{i}"
                data = f"{n}-{i}".encode() * (n + 1)
                c.upload(bucket, name, data)
                with lock:
                    uploaded[name] = data
                c.ok("b2_list_file_names", bucketId=bucket, prefix=f"w{n}/")
                if i % 3 == 0:
                    c.ok("b2_hide_file", bucketId=bucket, fileName=name)
                    with lock:
                        uploaded.pop(name)
            c.upload_part(large, n + 1, bytes([n]) * 10)
        except BaseException as e:  # reported below; the thread must not die silently
            errors.append(e)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[0]
    names = []
    start = None
    while True:
        page = setup.ok("b2_list_file_names", bucketId=bucket, startFileName=start, maxFileCount=7)
        names += [f["fileName"] for f in page["files"]]
        start = page["nextFileName"]
        if start is None:
            break
    assert names == sorted(uploaded)
    for name, data in uploaded.items():
        assert setup.download(f"/file/test-bucket/{name}").content == data
    parts = setup.ok("b2_list_parts", fileId=large, maxPartCount=100)["parts"]
    assert [p["partNumber"] for p in parts] == list(range(1, 9))
    assert [p["contentSha1"] for p in parts] == [sha1(bytes([n]) * 10) for n in range(8)]
    versions = setup.ok("b2_list_file_versions", bucketId=bucket, maxFileCount=1000)["files"]
    assert len(versions) == 8 * 8 + 8 * 3 + 1  # uploads, hide markers, the unfinished file
