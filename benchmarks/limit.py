"""The limit: each workload's transfer done directly with b2fs's client, no FUSE, no cache.

    python -m benchmarks.limit SPEC_JSON     (credentials and endpoint in the environment:
                                              B2_APPLICATION_KEY_ID, B2_APPLICATION_KEY,
                                              B2FS_ENDPOINT)

Run as its own process so that its CPU time and peak RSS are measured like a daemon's. It
authorizes first (that call is counted, as a mount's is), then times only the transfer, with
as many connections as b2fs uses for it (``connections``: the mount's download or upload
concurrency). Operations (``op`` in the spec):

- ``read``: download the whole file as ``connections`` contiguous ranges in parallel, one
  request each (the fewest requests, so the ceiling of the link);
- ``random``: the same 4 KiB ranged downloads as workload 3's reads, one at a time, each timed;
- ``write``: upload a local file: a large file in ``part_size`` parts, ``connections`` parts
  at a time (one simple upload below ``threshold``);
- ``upload_files``: upload local files as separate B2 files, ``connections`` at a time;
- ``list``: list every name under a prefix as a recursive walk of b2fs does: its folders (one
  listing with a delimiter), then every name below in ranges cut at them, ``connections`` at
  once (``b2fs.fs.subtree``).

Prints one JSON object (``seconds``, ``bytes``, ``files``, and ``latencies_ms``/``mismatches``
for ``random``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import trio

from b2fs.b2.client import B2Client
from b2fs.b2.sources import FileSource
from b2fs.fs.dirlist import SUBTREE_PAGE, SUBTREE_PAGES
from b2fs.fs.subtree import list_subtree
from b2fs.remote import B2ObjectStore
from benchmarks.randread import READ_SIZE, offsets


async def _read(client: B2Client, spec: dict[str, Any]) -> dict[str, Any]:
    size, n = spec["size"], spec["connections"]
    step = (size + n - 1) // n
    received = 0

    async def consume(chunk: bytes) -> None:
        nonlocal received
        received += len(chunk)

    async def fetch(offset: int) -> None:
        await client.download_into_by_id(
            spec["file_id"], consume, offset=offset, length=min(step, size - offset)
        )

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for offset in range(0, size, step):
            nursery.start_soon(fetch, offset)
    seconds = time.perf_counter() - t0
    if received != size:
        raise RuntimeError(f"downloaded {received} bytes of {size}")
    return {"seconds": seconds, "bytes": received, "files": 1}


async def _random(client: B2Client, spec: dict[str, Any]) -> dict[str, Any]:
    latencies: list[float] = []
    mismatches = 0
    check = os.open(spec["verify"], os.O_RDONLY) if spec.get("verify") else None
    t0 = time.perf_counter()
    for offset in offsets(spec["size"], spec["count"], spec["seed"]):
        if spec.get("deadline") and time.perf_counter() - t0 > spec["deadline"]:
            break
        r0 = time.perf_counter()
        data = await client.download_bytes_by_id(spec["file_id"], offset=offset, length=READ_SIZE)
        latencies.append((time.perf_counter() - r0) * 1000)
        if check is not None and data != os.pread(check, READ_SIZE, offset):
            mismatches += 1
    seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "bytes": len(latencies) * READ_SIZE,
        "files": 1,
        "latencies_ms": latencies,
        "mismatches": mismatches,
    }


async def _write(client: B2Client, spec: dict[str, Any]) -> dict[str, Any]:
    source, size = spec["source"], os.stat(spec["source"]).st_size
    part, n = spec["part_size"], spec["connections"]
    t0 = time.perf_counter()
    if size <= spec["threshold"]:
        await client.upload_file(spec["bucket_id"], spec["name"], FileSource(source))
    else:
        started = await client.start_large_file(spec["bucket_id"], spec["name"])
        assert started.file_id is not None
        large_id = started.file_id
        count = (size + part - 1) // part
        sha1s = [""] * count
        send, receive = trio.open_memory_channel[int](0)

        async def worker() -> None:
            async with receive.clone() as numbers:
                async for number in numbers:
                    offset = (number - 1) * part
                    done = await client.upload_part(
                        large_id, number, FileSource(source, offset, min(part, size - offset))
                    )
                    sha1s[number - 1] = done.content_sha1

        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(worker)
            async with send:
                for number in range(1, count + 1):
                    await send.send(number)
            await receive.aclose()
        await client.finish_large_file(large_id, sha1s)
    return {"seconds": time.perf_counter() - t0, "bytes": size, "files": 1}


async def _upload_files(client: B2Client, spec: dict[str, Any]) -> dict[str, Any]:
    files: list[list[str]] = spec["files"]
    send, receive = trio.open_memory_channel[tuple[str, str]](0)
    total = 0

    async def worker() -> None:
        nonlocal total
        async with receive.clone() as items:
            async for local, name in items:
                source = FileSource(local)
                await client.upload_file(spec["bucket_id"], name, source)
                total += source.size

    t0 = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(spec["connections"]):
            nursery.start_soon(worker)
        async with send:
            for local, name in files:
                await send.send((local, name))
        await receive.aclose()
    return {"seconds": time.perf_counter() - t0, "bytes": total, "files": len(files)}


async def _list(client: B2Client, spec: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    bucket, prefix = spec["bucket_id"], spec["prefix"]
    folders = [
        version.file_name
        async for version in client.list_file_names(bucket, prefix=prefix, delimiter="/")
        if version.action == "folder"
    ]
    found = await list_subtree(
        B2ObjectStore(client),
        bucket,
        prefix,
        folders,
        concurrency=spec["connections"],
        budget=SUBTREE_PAGES * SUBTREE_PAGE,
    )
    assert found.covered_to is None, "the tree is larger than a walk lists at once"
    return {"seconds": time.perf_counter() - t0, "bytes": 0, "files": len(found.rows)}


OPERATIONS = {
    "read": _read,
    "random": _random,
    "write": _write,
    "upload_files": _upload_files,
    "list": _list,
}


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    connections = max(2, int(spec.get("connections", 1)))
    async with await B2Client.connect(
        os.environ["B2_APPLICATION_KEY_ID"],
        os.environ["B2_APPLICATION_KEY"],
        endpoint=os.environ["B2FS_ENDPOINT"],
        max_connections=connections,
    ) as client:
        return await OPERATIONS[spec["op"]](client, spec)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    json.dump(trio.run(run, spec), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
