"""What the filesystem layers need from B2, as a protocol: the object store.

The caches, the transfer machinery and the filesystem core are written against this narrow
interface, not against the B2 client, so they can be exercised with a fake store and so that
the client's wider API can change without touching them. ``b2fs.remote.B2ObjectStore`` is the
implementation over the real client. Errors are the client's typed errors (``b2fs.b2.errors``);
the filesystem maps them to errno in one table (``b2fs.fs.errors``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

# Info keys b2fs writes on every file it uploads. They are the names s3fs reads from
# x-amz-meta-* headers, which is how B2's S3-compatible API shows file info, so s3fs mounting
# the same bucket sees the same modes and owners. The mtime is B2's own convention.
INFO_MTIME = "src_last_modified_millis"
INFO_MODE = "mode"
INFO_UID = "uid"
INFO_GID = "gid"


@dataclass(frozen=True)
class BucketRef:
    id: str
    name: str
    type: str = "allPrivate"


@dataclass(frozen=True)
class RemoteFile:
    """One B2 file version, or a folder row of a listing (action 'folder')."""

    name: str
    action: str  # 'upload', 'hide', 'start', 'folder' (copies list as 'upload')
    file_id: str | None = None
    size: int = 0
    upload_ms: int = 0
    sha1: str | None = None
    content_type: str | None = None
    info: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_folder(self) -> bool:
        return self.action == "folder"


@dataclass(frozen=True)
class UploadedPart:
    number: int
    sha1: str
    size: int


@dataclass(frozen=True)
class KeyScope:
    """What the application key may do: its capabilities, bucket and name prefix."""

    capabilities: frozenset[str]
    bucket_id: str | None = None
    bucket_name: str | None = None
    name_prefix: str | None = None

    def allows(self, capability: str) -> bool:
        return capability in self.capabilities


class ObjectStore(Protocol):
    @property
    def scope(self) -> KeyScope: ...

    @property
    def absolute_minimum_part_size(self) -> int: ...

    @property
    def mutations(self) -> int:
        """How many changes this store has made on B2 (uploads, copies, hides, deletes):
        views of B2 taken before a change can tell they may be out of date."""
        ...

    async def list_buckets(self) -> list[BucketRef]: ...

    async def find_bucket(self, name: str) -> BucketRef | None: ...

    async def create_bucket(self, name: str) -> BucketRef: ...

    async def delete_bucket(self, bucket: BucketRef) -> None: ...

    def list_names(
        self, bucket_id: str, prefix: str, delimiter: str | None
    ) -> AsyncIterator[RemoteFile]:
        """Every visible name under prefix (folder rows with a delimiter), paged as needed."""
        ...

    def list_versions(
        self, bucket_id: str, prefix: str, delimiter: str | None
    ) -> AsyncIterator[RemoteFile]:
        """Every version (uploads, hide markers, unfinished large files) under prefix."""
        ...

    async def get_file_info(self, file_id: str) -> RemoteFile: ...

    async def read_range(
        self, file_id: str, start: int, end: int, sink: Callable[[memoryview], None]
    ) -> None:
        """Feed bytes [start, end) of a version to ``sink`` in order, every byte once
        (retried and resumed after failures). ``sink`` runs in a worker thread, not on the
        trio thread; the view is valid only during the call."""
        ...

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
        """Upload ``size`` bytes of ``path`` as a new version. ``progress``, if given, is told
        the bytes sent so far by the current attempt (possibly from a worker thread)."""
        ...

    async def start_large_file(
        self, bucket_id: str, name: str, content_type: str, info: Mapping[str, str]
    ) -> str: ...

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
        """Upload one part; ``progress`` as for ``upload_file``."""
        ...

    async def finish_large_file(self, large_file_id: str, sha1s: list[str]) -> RemoteFile: ...

    async def cancel_large_file(self, large_file_id: str) -> None: ...

    async def list_parts(self, large_file_id: str) -> list[UploadedPart]: ...

    async def list_unfinished(self, bucket_id: str, prefix: str) -> list[RemoteFile]: ...

    async def copy_file(
        self,
        source_file_id: str,
        name: str,
        *,
        bucket_id: str | None = None,
        content_type: str | None = None,
        info: Mapping[str, str] | None = None,
    ) -> RemoteFile:
        """Server-side copy; with ``info`` the metadata is replaced, else copied."""
        ...

    async def copy_part(
        self, source_file_id: str, large_file_id: str, number: int, start: int, end: int
    ) -> UploadedPart: ...

    async def hide_file(self, bucket_id: str, name: str) -> RemoteFile: ...

    async def delete_version(self, name: str, file_id: str) -> None: ...
