"""What the filesystem layers need from B2, as a protocol: the object store.

The caches, the transfer machinery and the filesystem core are written against this narrow
interface, not against the B2 client, so they can be exercised with a fake store and so that
the client's wider API can change without touching them. ``b2fs.remote.B2ObjectStore`` is the
implementation over the real client. Errors are the client's typed errors (``b2fs.b2.errors``);
the filesystem maps them to errno in one table (``b2fs.fs.errors``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import trio

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


class OwnChanges:
    """The versions this mount made or removed on B2, so that the event notifications of its
    own changes (``Filesystem.remote_changed``) cost nothing: what it shows already reflects
    them.

    Remembers the last ``limit`` fileIds (B2 announces a change within seconds, so a bounded
    memory is enough; an id forgotten early only costs one listing). A notification may come
    back before the call that caused it has returned with the new fileId: while a change of
    a name is in flight (``changing``), :meth:`settled` lets the receiver wait for it.
    """

    def __init__(self, limit: int = 65_536) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._in_flight: dict[tuple[str, str], int] = {}
        self._settled: dict[tuple[str, str], trio.Event] = {}

    def made(self, file_id: str | None) -> None:
        if file_id is None:
            return
        self._ids[file_id] = None
        self._ids.move_to_end(file_id)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)

    def is_own(self, file_id: str | None) -> bool:
        return file_id is not None and file_id in self._ids

    @contextmanager
    def changing(self, bucket_id: str, name: str) -> Iterator[None]:
        """Around a call that makes a new version of ``name`` (its fileId comes back)."""
        key = (bucket_id, name)
        self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield
        finally:
            self._in_flight[key] -= 1
            if not self._in_flight[key]:
                del self._in_flight[key]
                event = self._settled.pop(key, None)
                if event is not None:
                    event.set()

    def _keys(self, bucket_id: str, name: str) -> list[tuple[str, str]]:
        # A copy may name no bucket (its source's): it is changing under "".
        return [k for k in ((bucket_id, name), ("", name)) if k in self._in_flight]

    def in_flight(self, bucket_id: str, name: str) -> bool:
        return bool(self._keys(bucket_id, name))

    async def settled(self, bucket_id: str, name: str) -> None:
        """Return once no change of ``name`` made here is in flight."""
        while keys := self._keys(bucket_id, name):
            await self._settled.setdefault(keys[0], trio.Event()).wait()


class ObjectStore(Protocol):
    @property
    def scope(self) -> KeyScope: ...

    @property
    def own(self) -> OwnChanges:
        """The changes this store made on B2 (see :class:`OwnChanges`)."""
        ...

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

    async def list_names_page(
        self, bucket_id: str, prefix: str, start: str | None, count: int
    ) -> tuple[list[RemoteFile], str | None]:
        """Up to ``count`` visible names under prefix from ``start`` on (no delimiter), and
        where the next page starts (None at the end)."""
        ...

    def list_versions(
        self, bucket_id: str, prefix: str, delimiter: str | None
    ) -> AsyncIterator[RemoteFile]:
        """Every version (uploads, hide markers, unfinished large files) under prefix."""
        ...

    async def get_file_info(self, file_id: str) -> RemoteFile: ...

    async def read_range(
        self,
        file_id: str,
        start: int,
        end: int,
        sink: Callable[[memoryview], None],
        into: Callable[[int], memoryview] | None = None,
    ) -> None:
        """Feed bytes [start, end) of a version to ``sink`` in order, every byte once
        (retried and resumed after failures). ``sink`` runs in a worker thread, not on the
        trio thread; the view is valid only during the call. ``into(limit)``, if given, may
        be asked for a writable view of at most ``limit`` bytes to receive the next bytes in
        place; ``sink`` then gets the filled part of that same view."""
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
