"""Server-side copies: a file version copied to a name on B2 without downloading it.

Used for renames (metadata copied) and for chmod/chown/utime on files already on B2 (B2 file
info is immutable, so new metadata means a new version: a copy with the metadata replaced).
Up to B2's 5 GB copy limit this is one ``b2_copy_file``; above it, a large file assembled
from ``b2_copy_part`` ranges of at most 5 GB, copied in parallel and cancelled on failure.
"""

from __future__ import annotations

from collections.abc import Mapping

import trio

from b2fs.objectstore import ObjectStore, RemoteFile, UploadedPart

MAX_COPY = 5 * 10**9


async def server_copy(
    store: ObjectStore,
    source: RemoteFile,
    bucket_id: str,
    name: str,
    *,
    info: Mapping[str, str] | None = None,
) -> RemoteFile:
    """Copy ``source`` to ``name``; ``info`` replaces its file info (else it is kept)."""
    assert source.file_id is not None
    content_type = source.content_type or "application/octet-stream"
    if source.size <= MAX_COPY:
        if info is None:
            return await store.copy_file(source.file_id, name, bucket_id=bucket_id)
        return await store.copy_file(
            source.file_id, name, bucket_id=bucket_id, content_type=content_type, info=info
        )
    large_id = await store.start_large_file(
        bucket_id, name, content_type, dict(source.info) if info is None else info
    )
    try:
        count = -(-source.size // MAX_COPY)
        results: dict[int, UploadedPart] = {}

        async def copy_one(number: int) -> None:
            start = (number - 1) * MAX_COPY
            end = min(start + MAX_COPY, source.size)
            assert source.file_id is not None
            results[number] = await store.copy_part(source.file_id, large_id, number, start, end)

        async with trio.open_nursery() as nursery:
            for number in range(1, count + 1):
                nursery.start_soon(copy_one, number)
        return await store.finish_large_file(
            large_id, [results[n].sha1 for n in range(1, count + 1)]
        )
    except BaseException:
        with trio.CancelScope(shield=True):
            await store.cancel_large_file(large_id)
        raise
