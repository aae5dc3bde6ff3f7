"""``B2ObjectStore``: the object store of ``b2fs.objectstore`` on the B2 client.

A thin translation: client models become ``RemoteFile``/``BucketRef``/``UploadedPart``, and
byte ranges become the client's offset and length. Retries, re-authorization, upload URL pools,
encodings and checks all live in the client; errors pass through unchanged (the filesystem maps
them in ``fs.errors``).

Every version it makes or deletes is remembered in ``own`` (``objectstore.OwnChanges``): the
event notifications of this mount's own changes are then skipped. A fileId known before the
call (a deletion, a large file from its start) is remembered before it; one that only the
answer tells (an upload, a copy, a hide marker) is remembered on the answer, and the name is
marked as changing until then.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

from b2fs.b2.client import MAX_FILE_LIST_PAGE, B2Client
from b2fs.b2.models import Bucket, FileVersion, Part
from b2fs.b2.sources import FileSource
from b2fs.objectstore import BucketRef, KeyScope, OwnChanges, RemoteFile, UploadedPart

_PAGE = MAX_FILE_LIST_PAGE  # the largest page B2 allows: fewest list calls


def to_remote(version: FileVersion) -> RemoteFile:
    return RemoteFile(
        name=version.file_name,
        action="upload" if version.action == "copy" else str(version.action),
        file_id=version.file_id,
        size=version.content_length,
        upload_ms=version.upload_timestamp,
        sha1=version.sha1,
        content_type=version.content_type,
        info=version.file_info,
    )


def to_bucket(bucket: Bucket) -> BucketRef:
    return BucketRef(id=bucket.bucket_id, name=bucket.bucket_name, type=bucket.bucket_type)


def to_part(part: Part) -> UploadedPart:
    return UploadedPart(number=part.part_number, sha1=part.content_sha1, size=part.content_length)


class B2ObjectStore:
    def __init__(self, client: B2Client) -> None:
        self.client = client
        self.mutations = 0
        self.own = OwnChanges()

    @property
    def scope(self) -> KeyScope:
        allowed = self.client.allowed
        return KeyScope(
            capabilities=allowed.capabilities,
            bucket_id=allowed.bucket_id,
            bucket_name=allowed.bucket_name,
            name_prefix=allowed.name_prefix,
        )

    @property
    def absolute_minimum_part_size(self) -> int:
        return self.client.account.absolute_minimum_part_size

    async def list_buckets(self) -> list[BucketRef]:
        return [to_bucket(b) for b in await self.client.list_buckets()]

    async def find_bucket(self, name: str) -> BucketRef | None:
        found = await self.client.list_buckets(bucket_name=name)
        return to_bucket(found[0]) if found else None

    async def create_bucket(self, name: str) -> BucketRef:
        self.mutations += 1
        return to_bucket(await self.client.create_bucket(name, "allPrivate"))

    async def delete_bucket(self, bucket: BucketRef) -> None:
        self.mutations += 1
        await self.client.delete_bucket(bucket.id)

    async def list_names(
        self, bucket_id: str, prefix: str, delimiter: str | None
    ) -> AsyncIterator[RemoteFile]:
        async for version in self.client.list_file_names(
            bucket_id, prefix=prefix, delimiter=delimiter, page_size=_PAGE
        ):
            yield to_remote(version)

    async def list_names_page(
        self, bucket_id: str, prefix: str, start: str | None, count: int
    ) -> tuple[list[RemoteFile], str | None]:
        versions, after = await self.client.list_file_names_page(
            bucket_id, start_file_name=start, prefix=prefix, max_file_count=count
        )
        return [to_remote(version) for version in versions], after

    async def list_versions(
        self, bucket_id: str, prefix: str, delimiter: str | None
    ) -> AsyncIterator[RemoteFile]:
        async for version in self.client.list_file_versions(
            bucket_id, prefix=prefix, delimiter=delimiter, page_size=_PAGE
        ):
            yield to_remote(version)

    async def get_file_info(self, file_id: str) -> RemoteFile:
        return to_remote(await self.client.get_file_info(file_id))

    async def read_range(
        self,
        file_id: str,
        start: int,
        end: int,
        sink: Callable[[memoryview], None],
        into: Callable[[int], memoryview] | None = None,
    ) -> None:
        await self.client.download_range_threaded(
            file_id, sink, offset=start, length=end - start, into=into
        )

    async def upload_file(
        self,
        bucket_id: str,
        name: str,
        path: Path,
        size: int,
        content_type: str,
        info: Mapping[str, str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> RemoteFile:
        self.mutations += 1
        with self.own.changing(bucket_id, name):
            version = await self.client.upload_file(
                bucket_id,
                name,
                FileSource(path, 0, size, progress=progress),
                content_type=content_type,
                file_info=info,
            )
            self.own.made(version.file_id)
        return to_remote(version)

    async def start_large_file(
        self, bucket_id: str, name: str, content_type: str, info: Mapping[str, str]
    ) -> str:
        version = await self.client.start_large_file(
            bucket_id, name, content_type=content_type, file_info=info
        )
        assert version.file_id is not None
        self.own.made(version.file_id)  # a large file keeps its id when finished
        return version.file_id

    async def upload_part(
        self,
        large_file_id: str,
        number: int,
        path: Path,
        offset: int,
        length: int,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> UploadedPart:
        part = await self.client.upload_part(
            large_file_id, number, FileSource(path, offset, length, progress=progress)
        )
        return to_part(part)

    async def finish_large_file(self, large_file_id: str, sha1s: list[str]) -> RemoteFile:
        self.mutations += 1
        self.own.made(large_file_id)  # also when resumed by a later mount
        return to_remote(await self.client.finish_large_file(large_file_id, sha1s))

    async def cancel_large_file(self, large_file_id: str) -> None:
        await self.client.cancel_large_file(large_file_id)

    async def list_parts(self, large_file_id: str) -> list[UploadedPart]:
        return [to_part(p) async for p in self.client.list_parts(large_file_id)]

    async def list_unfinished(self, bucket_id: str, prefix: str) -> list[RemoteFile]:
        return [
            to_remote(v)
            async for v in self.client.list_unfinished_large_files(bucket_id, name_prefix=prefix)
        ]

    async def copy_file(
        self,
        source_file_id: str,
        name: str,
        *,
        bucket_id: str | None = None,
        content_type: str | None = None,
        info: Mapping[str, str] | None = None,
    ) -> RemoteFile:
        self.mutations += 1
        with self.own.changing(bucket_id or "", name):
            version = await self.client.copy_file(
                source_file_id,
                name,
                destination_bucket_id=bucket_id,
                content_type=content_type if info is not None else None,
                file_info=info,
                metadata_directive="REPLACE" if info is not None else None,
            )
            self.own.made(version.file_id)
        return to_remote(version)

    async def copy_part(
        self, source_file_id: str, large_file_id: str, number: int, start: int, end: int
    ) -> UploadedPart:
        part = await self.client.copy_part(
            source_file_id, large_file_id, number, offset=start, length=end - start
        )
        return to_part(part)

    async def hide_file(self, bucket_id: str, name: str) -> RemoteFile:
        self.mutations += 1
        with self.own.changing(bucket_id, name):
            version = await self.client.hide_file(bucket_id, name)
            self.own.made(version.file_id)
        return to_remote(version)

    async def delete_version(self, name: str, file_id: str) -> None:
        self.mutations += 1
        self.own.made(file_id)
        await self.client.delete_file_version(file_id, name)
