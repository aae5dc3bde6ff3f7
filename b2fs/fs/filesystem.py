"""The filesystem core: POSIX operations on B2, independent of FUSE.

``Filesystem`` takes inode numbers, names as bytes and plain values, and returns plain
dataclasses (``Attributes``); ``fuse_ops`` adapts it to pyfuse3. It is also driven directly by
the tier-3 tests. Errors are raised as :class:`FsError` or come from below (B2 or disk errors),
which ``fuse_ops`` maps through ``fs.errors``.

How operations map to B2 (docs/SEMANTICS.md has the user's view):

- lookup/getattr/readdir: answered from directory listings (``dirlist``), refreshed after
  ``dir_timeout`` (longer while B2 event notifications are healthy); no request per file.
- a change made elsewhere that B2 announces (``remote_changed``, called by the notification
  receiver off any request): the listings that show the name are marked stale and the kernel
  is told to forget the name and its attributes; open handles keep their pinned version.
- create/write/truncate: staged locally (``transfer.writeback``), uploaded in the background
  after the last writer closes; fsync waits for B2.
- unlink: B2 hide (old versions stay) or delete of every version, by ``-o unlink``; an open
  file stays readable and writable through its handles until closed, and staged content not
  yet on B2 is kept until the kernel forgets the inode (an open may already be under way).
- rename: server-side copy then removal of the source (a pending upload is just retargeted);
  directories are renamed entry by entry, not atomically.
- chmod/chown/utime on a file already on B2: server-side copy with replaced file info.
- mkdir: a ``.bzEmpty`` marker, queued like any upload; it is dropped when the directory gets
  content, and made again when the directory becomes empty, so empty directories persist.

Concurrency: namespace changes in a directory hold its ``lock`` (rename takes both parents'
locks, lower inode number first); listings take it only to merge. Everything runs on the trio
thread, so state changes between awaits are atomic.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Protocol

import trio

from b2fs.b2.errors import B2InvalidInput, B2NotFound
from b2fs.cache.blocks import BlockCache, BlockData
from b2fs.fs import names
from b2fs.fs.attrs import AttributeMaker, Attributes, info_int
from b2fs.fs.dirlist import DirectoryLister, Freshness, KernelDrops, announce, newer
from b2fs.fs.errors import FsError
from b2fs.fs.handles import DirHandle, FileHandle, HandleTable
from b2fs.fs.inodes import ROOT_INODE, Inode, InodeTable, Kind
from b2fs.fs.versions import VersionsView
from b2fs.objectstore import INFO_GID, INFO_MODE, INFO_UID, BucketRef, ObjectStore, RemoteFile
from b2fs.options import MountOptions
from b2fs.transfer.copy import server_copy
from b2fs.transfer.prefetch import BlockFetcher, Readahead
from b2fs.transfer.writeback import Entry, WriteBack

log = logging.getLogger(__name__)

XATTR_PREFIX = "user.b2."


class KernelNotifier(Protocol):
    """Tells the kernel to drop what it caches (fuse_ops implements it with pyfuse3)."""

    async def forget_name(self, parent_ino: int, name: str) -> None: ...

    async def forget_attributes(self, ino: int) -> None: ...


class _NoKernel:
    """Without FUSE (the tier-3 tests) there is no kernel cache to invalidate."""

    async def forget_name(self, parent_ino: int, name: str) -> None:
        return None

    async def forget_attributes(self, ino: int) -> None:
        return None


class Filesystem:
    def __init__(
        self,
        store: ObjectStore,
        options: MountOptions,
        cache: BlockCache,
        fetcher: BlockFetcher,
        writeback: WriteBack,
        *,
        bucket: BucketRef | None,
        prefix: str = "",
        read_only: bool = False,
    ) -> None:
        self.store = store
        self.options = options
        self.cache = cache
        self.fetcher = fetcher
        self.writeback = writeback
        self.read_only = read_only or options.ro or options.version_at is not None
        self.inodes = InodeTable()
        self.handles = HandleTable()
        self.freshness = Freshness(options.dir_timeout)
        self.lister = DirectoryLister(
            store,
            self.inodes,
            writeback,
            self.freshness,
            at_ms=options.version_at,
            concurrency=options.list_concurrency,
        )
        self.attrs = AttributeMaker(options, time.time_ns(), cache.block_size)
        self.root = Inode(
            ino=ROOT_INODE,
            kind=Kind.DIR,
            name="",
            parent=None,
            bucket=bucket,
            top_key=prefix,
            is_top=True,
        )
        self.inodes.add_root(self.root)
        self.versions: VersionsView | None = None
        if options.versions_dir != "none":
            self.versions = VersionsView(
                store, self.inodes, self.root, options.versions_dir, self.freshness
            )
        self._nursery: trio.Nursery | None = None
        self.kernel: KernelNotifier = _NoKernel()

    async def start(self, nursery: trio.Nursery) -> None:
        """Start background work in the mount's nursery; resume pending uploads."""
        self._nursery = nursery
        self.fetcher.attach(nursery)
        self.writeback.listener = self
        await self.writeback.start(nursery)

    # -- helpers --------------------------------------------------------------------------

    def inode(self, ino: int) -> Inode:
        inode = self.inodes.get(ino)
        if inode is None:
            raise FsError(errno.ENOENT, f"inode {ino} is not known")
        return inode

    def _dir(self, ino: int) -> Inode:
        inode = self.inode(ino)
        if not inode.is_dir:
            raise FsError(errno.ENOTDIR)
        return inode

    def _writable(self, *inodes: Inode) -> None:
        if self.read_only or any(inode.virtual for inode in inodes):
            raise FsError(errno.EROFS)

    def _changing_dir(self, ino: int) -> Inode:
        """A directory whose entries are about to change: it must be writable."""
        directory = self._dir(ino)
        self._writable(directory)
        return directory

    @property
    def all_buckets(self) -> bool:
        return self.root.bucket is None

    def _in_bucket(self, directory: Inode) -> BucketRef:
        if directory.bucket is None:
            raise FsError(errno.EPERM, "only buckets can be made at the top of the mount")
        return directory.bucket

    def attributes(self, inode: Inode) -> Attributes:
        return self.attrs.of(inode)

    async def _ensure_listed(self, directory: Inode) -> None:
        if directory.virtual:
            assert self.versions is not None
            await self.versions.ensure_listed(directory)
        elif directory is self.root and self.all_buckets:
            await self._list_buckets()
        else:
            await self.lister.ensure_listed(directory)

    async def _list_buckets(self) -> None:
        if self.lister.is_fresh(self.root):
            return
        async with self.root.list_lock:
            buckets = await self.store.list_buckets()
            current = {b.name: b for b in buckets}
            for name, _child in list(self.root.children.items()):
                if name not in current:
                    self.lister.detach(self.root, name)
            for name, bucket in current.items():
                if name not in self.root.children:
                    self._add_bucket_dir(bucket)
            self.root.listed_at = trio.current_time()

    def _add_bucket_dir(self, bucket: BucketRef) -> Inode:
        child = self.inodes.new(Kind.DIR, bucket.name, self.root, bucket=bucket)
        child.is_top = True
        self.root.children[bucket.name] = child
        return child

    async def _child(self, directory: Inode, name: str) -> Inode | None:
        if directory is self.root and self.versions and name == self.versions.root.name:
            return self.versions.root  # reachable by name, never listed
        await self._ensure_listed(directory)
        return directory.children.get(name)

    def _spawn(self, fn: object, *args: object) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)  # type: ignore[arg-type]

    @staticmethod
    @asynccontextmanager
    async def _locked(*directories: Inode) -> AsyncIterator[None]:
        """Hold the locks of one or two directories, lower inode number first."""
        unique = sorted({d.ino: d for d in directories}.values(), key=lambda d: d.ino)
        async with unique[0].lock:
            if len(unique) > 1:
                async with unique[1].lock:
                    yield
            else:
                yield

    def _changed(self, directory: Inode) -> None:
        directory.generation += 1
        directory.dir_mtime_ns = time.time_ns()

    def _new_key(self, directory: Inode, name: str, *, is_dir: bool = False) -> str:
        bucket = self._in_bucket(directory)
        key = directory.key + name + ("/" if is_dir else "")
        names.check_b2_name(key + (names.MARKER if is_dir else ""))
        scope = self.store.scope
        if (
            scope.name_prefix
            and scope.bucket_id in (None, bucket.id)
            and not key.startswith(scope.name_prefix)
        ):
            # Refused now, not by an upload that would fail (and be retried) forever.
            raise FsError(
                errno.EACCES, f"the key may only write names starting {scope.name_prefix!r}"
            )
        return key

    # -- lookup and attributes -----------------------------------------------------------

    async def lookup(self, parent_ino: int, raw_name: bytes) -> Attributes:
        directory = self._dir(parent_ino)
        name = raw_name.decode("utf-8", "surrogateescape")
        child = await self._child(directory, name)
        if child is None:
            raise FsError(errno.ENOENT)
        child.lookups += 1
        return self.attributes(child)

    def forget(self, ino: int, count: int) -> None:
        inode = self.inodes.get(ino)
        if inode is not None:
            self.inodes.forget(inode, count)
            if inode.lookups == 0 and inode.kept is not None:
                entry, inode.kept = inode.kept, None
                self._spawn(self._let_go, entry)

    async def _let_go(self, entry: Entry) -> None:
        await self.writeback.unhold(entry, writer=False)

    def _keep_for_kernel(self, inode: Inode) -> None:
        """The file's name is going: keep its staged content while the kernel still knows the
        inode, since an open() of the name may already be on its way."""
        entry = inode.staged
        if entry is not None and inode.lookups > 0 and inode.kept is None:
            self.writeback.hold(entry, writer=False)
            inode.kept = entry

    def remember(self, ino: int) -> None:
        """The kernel took a reference through readdir."""
        inode = self.inodes.get(ino)
        if inode is not None:
            inode.lookups += 1

    async def getattr(self, ino: int) -> Attributes:
        inode = self.inode(ino)
        await self._revalidate(inode)
        return self.attributes(inode)

    async def _revalidate(self, inode: Inode) -> None:
        """Refresh a file's attributes from its directory's listing once that is stale."""
        parent = inode.parent
        if (
            inode.is_dir
            or inode.virtual
            or inode.staged is not None
            or inode.unlinked
            or parent is None
            or parent.bucket is None
        ):
            return
        await self.lister.ensure_listed(parent)

    async def setattr(
        self,
        ino: int,
        *,
        size: int | None = None,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        mtime_ns: int | None = None,
    ) -> Attributes:
        inode = self.inode(ino)
        changes_metadata = mode is not None or uid is not None or gid is not None
        if size is None and not changes_metadata and mtime_ns is None:
            return self.attributes(inode)  # atime/ctime only: nothing kept
        self._writable(inode)
        if inode.is_dir:
            # Directories are prefixes: their attributes live in memory only.
            if size is not None:
                raise FsError(errno.EISDIR)
            if mode is not None:
                inode.dir_mode = stat.S_IMODE(mode)
            if mtime_ns is not None:
                inode.dir_mtime_ns = mtime_ns
            return self.attributes(inode)
        if size is not None:
            entry = await self._ensure_staged(inode, size_hint=size)
            await self.writeback.truncate(entry, size)
        if changes_metadata or mtime_ns is not None:
            await self._set_file_meta(inode, mode=mode, uid=uid, gid=gid, mtime_ns=mtime_ns)
        return self.attributes(inode)

    async def _set_file_meta(
        self,
        inode: Inode,
        *,
        mode: int | None,
        uid: int | None,
        gid: int | None,
        mtime_ns: int | None,
    ) -> None:
        mode = stat.S_IMODE(mode) if mode is not None else None
        entry = inode.staged
        if entry is not None and (entry.dirty or entry.discarded or inode.remote is None):
            await self.writeback.set_meta(entry, mode=mode, uid=uid, gid=gid, mtime_ns=mtime_ns)
            return
        remote = inode.remote
        if remote is None or inode.bucket is None:
            raise FsError(errno.ENOENT)
        # On B2 already: new metadata means a new version, copied server-side.
        info = dict(remote.info)
        if mode is not None:
            info[INFO_MODE] = str(
                (info_int(info, INFO_MODE) or stat.S_IFREG) & ~0o7777 | mode
                if inode.kind is not Kind.SYMLINK
                else stat.S_IFLNK | 0o777
            )
        if uid is not None:
            info[INFO_UID] = str(uid)
        if gid is not None:
            info[INFO_GID] = str(gid)
        if mtime_ns is not None:
            info["src_last_modified_millis"] = str(mtime_ns // 1_000_000)
        inode.remote = await server_copy(self.store, remote, inode.bucket.id, inode.key, info=info)
        if entry is not None:  # clean but open: keep its row's metadata in step
            row = entry.row
            row.mode = row.mode if mode is None else mode
            row.uid = row.uid if uid is None else uid
            row.gid = row.gid if gid is None else gid
            row.mtime_ns = row.mtime_ns if mtime_ns is None else mtime_ns

    # -- staging --------------------------------------------------------------------------

    async def _ensure_staged(self, inode: Inode, *, size_hint: int | None = None) -> Entry:
        """The inode's staged entry, made on first change: later bytes come from its base."""
        if inode.staged is not None:
            return inode.staged
        if inode.bucket is None:
            raise FsError(errno.EPERM)
        remote = inode.remote
        info = remote.info if remote is not None else {}
        base = remote if remote is not None and size_hint != 0 else None
        stored_mode = info_int(info, INFO_MODE)
        entry = await self.writeback.create(
            inode.bucket,
            inode.key,
            kind="symlink" if inode.kind is Kind.SYMLINK else "file",
            base=base,
            size=base.size if base is not None else 0,
            mtime_ns=self.attributes(inode).mtime_ns,
            mode=stat.S_IMODE(stored_mode)
            if stored_mode is not None
            else self.options.file_permissions,
            uid=_or_unset(info_int(info, INFO_UID)),
            gid=_or_unset(info_int(info, INFO_GID)),
            orphan=inode.unlinked,
        )
        self._attach(inode, entry)
        return entry

    def _attach(self, inode: Inode, entry: Entry) -> None:
        entry.owner = inode
        inode.staged = entry
        for handle in self.handles.of_inode(inode):
            handle.holding = entry
            self.writeback.hold(entry, writer=handle.writable)

    # WriteBackListener ------------------------------------------------------------------

    def uploaded(self, entry: Entry, remote: RemoteFile) -> None:
        inode = entry.owner
        if (
            entry.row.kind != "marker"
            and isinstance(inode, Inode)
            and entry.row.name == remote.name
        ):
            inode.remote = newer(inode.remote, remote)
            self._landed(inode)
        elif entry.row.kind == "marker":
            directory = self._dir_of_marker(entry)
            if directory is not None:
                directory.marker = remote
                self._landed(directory)

    @staticmethod
    def _landed(inode: Inode) -> None:
        """B2 has it now: a listing of it or its parents asked for before may lack it."""
        now = trio.current_time()
        node: Inode | None = inode
        while node is not None:
            node.landed_at = now
            node = None if node.is_top else node.parent

    def released(self, entry: Entry) -> None:
        inode = entry.owner
        if isinstance(inode, Inode) and inode.staged is entry:
            inode.staged = None
            uploaded = entry.uploaded
            if (
                inode.cached_content == ("staged", id(entry), entry.version)
                and uploaded is not None
                and inode.remote is not None
                and uploaded.file_id == inode.remote.file_id
            ):
                inode.cached_content = uploaded.file_id  # the kernel's pages are these bytes
            for handle in self.handles.of_inode(inode):
                handle.holding = None
                handle.pinned = inode.remote

    def _dir_of_marker(self, entry: Entry) -> Inode | None:
        owner = entry.owner
        return owner if isinstance(owner, Inode) else None

    # -- directories ----------------------------------------------------------------------

    async def mkdir(self, parent_ino: int, raw_name: bytes, mode: int) -> Attributes:
        directory = self._changing_dir(parent_ino)
        name = names.decode_component(raw_name)
        if directory is self.root and self.all_buckets:
            return await self._make_bucket(name)
        async with self._locked(directory):
            if await self._child(directory, name) is not None:
                raise FsError(errno.EEXIST)
            key = self._new_key(directory, name, is_dir=True)
            child = self.inodes.new(Kind.DIR, name, directory)
            child.dir_mode = stat.S_IMODE(mode)
            child.listed_at = trio.current_time()  # new: known to be empty
            directory.children[name] = child
            self._changed(directory)
            await self._content_added(directory)
            await self._stage_marker(child, key)
        child.lookups += 1
        return self.attributes(child)

    async def _make_bucket(self, name: str) -> Attributes:
        try:
            bucket = await self.store.create_bucket(name)
        except B2InvalidInput as exc:
            raise FsError(errno.EINVAL, exc.message) from None
        async with self.root.lock:
            child = self.root.children.get(name) or self._add_bucket_dir(bucket)
            child.listed_at = trio.current_time()
        child.lookups += 1
        return self.attributes(child)

    async def _stage_marker(self, directory: Inode, key: str) -> None:
        assert directory.bucket is not None
        entry = await self.writeback.create(
            directory.bucket,
            key + names.MARKER,
            kind="marker",
            base=None,
            size=0,
            mtime_ns=time.time_ns(),
            mode=self.options.file_permissions,
            uid=-1,
            gid=-1,
        )
        entry.owner = directory
        await self.writeback.submit(entry)

    async def _content_added(self, directory: Inode) -> None:
        """The directory got an entry: its empty-directory marker is not needed any more."""
        if directory.bucket is None or not directory.key:
            return
        staged = self.writeback.by_name.get((directory.bucket.id, directory.key + names.MARKER))
        if staged is not None:
            await self.writeback.discard(staged)
        if directory.marker is not None:
            marker, directory.marker = directory.marker, None
            self._spawn(self._remove_marker, directory.bucket, marker)

    async def _remove_marker(self, bucket: BucketRef, marker: RemoteFile) -> None:
        try:
            await self._remove_versions(bucket, marker.name, always_delete=True)
        except Exception as exc:
            log.info("could not remove the marker %s: %s", marker.name, exc)

    async def _content_removed(self, directory: Inode) -> None:
        """The directory lost an entry: if it is now empty, keep it with a marker."""
        if (
            directory.children
            or directory.bucket is None
            or directory.is_top
            or directory.unlinked
            or directory.marker is not None
        ):
            return
        if (directory.bucket.id, directory.key + names.MARKER) in self.writeback.by_name:
            return
        await self._stage_marker(directory, directory.key)

    async def rmdir(self, parent_ino: int, raw_name: bytes) -> None:
        directory = self._changing_dir(parent_ino)
        name = names.decode_component(raw_name)
        if directory is self.root and self.all_buckets:
            await self._remove_bucket(name)
            return
        async with self._locked(directory):
            child = await self._child(directory, name)
            if child is None:
                raise FsError(errno.ENOENT)
            if not child.is_dir:
                raise FsError(errno.ENOTDIR)
            await self.lister.refresh(child)
            if child.children:
                raise FsError(errno.ENOTEMPTY)
            await self._drop_markers(child)
            self.lister.detach(directory, name)
            self._changed(directory)
            await self._content_removed(directory)

    async def _drop_markers(self, directory: Inode) -> None:
        assert directory.bucket is not None
        staged = self.writeback.by_name.get((directory.bucket.id, directory.key + names.MARKER))
        if staged is not None:
            await self.writeback.discard(staged)
            if staged.uploaded is not None:
                directory.marker = staged.uploaded
        if directory.marker is not None:
            await self._remove_versions(directory.bucket, directory.marker.name, always_delete=True)
            directory.marker = None
        elif staged is not None:
            await self._remove_unconfirmed(staged, directory.bucket, staged.row.name)

    async def _remove_bucket(self, name: str) -> None:
        async with self.root.lock:
            await self._list_buckets()
            child = self.root.children.get(name)
            if child is None or child.bucket is None:
                raise FsError(errno.ENOENT)
            await self.lister.refresh(child)
            if child.children:
                raise FsError(errno.ENOTEMPTY)
            if child.marker is not None:
                await self._remove_versions(child.bucket, child.marker.name, always_delete=True)
            await self.store.delete_bucket(child.bucket)
            self.lister.detach(self.root, name)

    async def opendir(self, ino: int) -> int:
        inode = self._dir(ino)
        handle = DirHandle(self.handles.next_fh(), inode)
        self.handles.dirs[handle.fh] = handle
        return handle.fh

    async def readdir(
        self, fh: int, start_id: int, limit: int | None = None
    ) -> list[tuple[bytes, Attributes, int]]:
        """The entries from ``start_id`` on (at most ``limit``), each with the id of the next.
        The kernel takes a few dozen per call: without a limit, every call of a listing of
        30,000 names made the attributes of all the names after it."""
        handle = self.handles.dirs.get(fh)
        if handle is None:
            raise FsError(errno.EBADF)
        if handle.entries is None or start_id == 0:
            await self._walk_ahead(handle.inode)
            await self._ensure_listed(handle.inode)
            handle.entries = sorted(handle.inode.children.items())
        end = len(handle.entries) if limit is None else min(len(handle.entries), start_id + limit)
        result = []
        for index in range(start_id, end):
            name, child = handle.entries[index]
            result.append(
                (name.encode("utf-8", "surrogateescape"), self.attributes(child), index + 1)
            )
        return result

    async def _walk_ahead(self, directory: Inode) -> None:
        """A directory listed right after its parent was listed, when the parent has several
        subdirectories, looks like a recursive walk (ls -R, find, du, rsync): then the
        parent's whole subtree is fetched at once, in the background
        (``DirectoryLister.run_subtree``), and the readdir of each folder below waits only
        until that folder's names are in."""
        now = trio.current_time()
        parent = directory.parent
        if directory.virtual or self.lister.is_fresh(directory):
            directory.readdir_at = now
            return  # nothing to fetch, nor to wait for
        walk = self.lister.walk_covering(directory)
        if (
            walk is None
            and parent is not None
            and parent.bucket is not None
            and now - parent.readdir_at < self.options.dir_timeout
            and sum(1 for child in parent.children.values() if child.is_dir) >= 2
        ):
            walk = self.lister.start_subtree(parent)
            if walk is not None:
                self._spawn(self.lister.run_subtree, parent, walk)
        directory.readdir_at = now
        if walk is not None:
            await walk.wait_for(directory.key)

    async def releasedir(self, fh: int) -> None:
        self.handles.dirs.pop(fh, None)

    # -- files ----------------------------------------------------------------------------

    async def open(self, ino: int, flags: int) -> tuple[int, bool]:
        """Open a file; returns (handle, whether the kernel may keep its cached pages)."""
        inode = self.inode(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        access = flags & os.O_ACCMODE
        writable = access in (os.O_WRONLY, os.O_RDWR)
        if writable:
            self._writable(inode)
        await self._revalidate(inode)
        handle = self._new_handle(inode, readable=access != os.O_WRONLY, writable=writable)
        if writable and flags & os.O_TRUNC:
            entry = await self._ensure_staged(inode, size_hint=0)
            await self.writeback.truncate(entry, 0)
        token = inode.content_token()
        keep_cache = token is not None and token == inode.cached_content
        inode.cached_content = token
        return handle.fh, keep_cache

    def _new_handle(self, inode: Inode, *, readable: bool, writable: bool) -> FileHandle:
        handle = FileHandle(
            fh=self.handles.next_fh(),
            inode=inode,
            readable=readable,
            writable=writable,
            pinned=inode.remote,
            readahead=Readahead(
                max_blocks=max(0, self.options.readahead // self.cache.block_size),
                burst=self.options.download_concurrency,
            ),
        )
        self.handles.add_file(handle)
        if inode.staged is not None:
            handle.holding = inode.staged
            self.writeback.hold(inode.staged, writer=writable)
        return handle

    async def create(
        self, parent_ino: int, raw_name: bytes, mode: int, flags: int, uid: int, gid: int
    ) -> tuple[int, Attributes]:
        directory = self._changing_dir(parent_ino)
        name = names.decode_component(raw_name)
        async with self._locked(directory):
            existing = await self._child(directory, name)
            if existing is not None:
                if flags & os.O_EXCL:
                    raise FsError(errno.EEXIST)
                if existing.is_dir:
                    raise FsError(errno.EISDIR)
                fh, _ = await self.open(existing.ino, flags)
                existing.lookups += 1
                return fh, self.attributes(existing)
            child, _ = await self._new_file(directory, name, Kind.FILE, stat.S_IMODE(mode))
        handle = self._new_handle(
            child, readable=(flags & os.O_ACCMODE) != os.O_WRONLY, writable=True
        )
        child.cached_content = child.content_token()
        child.lookups += 1
        return handle.fh, self.attributes(child)

    async def _new_file(
        self, directory: Inode, name: str, kind: Kind, mode: int, content: bytes = b""
    ) -> tuple[Inode, Entry]:
        """Stage a new file (or symlink) in ``directory`` and link its inode in the tree
        (the caller holds the directory's lock and checked the name is free)."""
        key = self._new_key(directory, name)
        assert directory.bucket is not None
        entry = await self.writeback.create(
            directory.bucket,
            key,
            kind=kind.value,
            base=None,
            size=0,
            mtime_ns=time.time_ns(),
            mode=mode,
            uid=-1,
            gid=-1,
        )
        if content:
            await self.writeback.write(entry, 0, content)
        child = self.inodes.new(kind, name, directory)
        directory.children[name] = child
        self._changed(directory)
        self._attach(child, entry)
        await self._content_added(directory)
        return child, entry

    def _handle(self, fh: int) -> FileHandle:
        handle = self.handles.files.get(fh)
        if handle is None:
            raise FsError(errno.EBADF)
        return handle

    async def read(self, fh: int, offset: int, size: int) -> BlockData:
        """Bytes of an open file: a slice of a cached block when the read stays within one
        (sent to the kernel without a copy)."""
        handle = self._handle(fh)
        inode = handle.inode
        if inode.staged is not None:
            return await inode.staged.file.read(offset, size)
        pinned = handle.pinned
        if pinned is None or pinned.file_id is None:
            return b""
        window = handle.readahead.on_read(offset, size, self.cache.block_size)
        data = await self.fetcher.read(pinned.file_id, pinned.size, offset, size)
        if window:
            last_block = (offset + max(size, 1) - 1) // self.cache.block_size
            self.fetcher.prefetch(pinned.file_id, pinned.size, last_block, window)
        return data

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        handle = self._handle(fh)
        if not handle.writable:
            raise FsError(errno.EBADF)
        entry = await self._ensure_staged(handle.inode)
        written = await self.writeback.write(entry, offset, data)
        handle.inode.cached_content = handle.inode.content_token()
        return written

    async def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        entry = handle.inode.staged
        if handle.writable and entry is not None:
            await self.writeback.flushed(entry)

    async def fsync(self, fh: int) -> None:
        handle = self._handle(fh)
        entry = handle.inode.staged
        if entry is not None:
            await self.writeback.flushed(entry)
            await self.writeback.sync(entry)

    async def release(self, fh: int) -> None:
        handle = self.handles.remove_file(fh)
        if handle is None:
            return
        inode = handle.inode
        if handle.holding is not None:
            await self.writeback.unhold(handle.holding, writer=handle.writable)
        if inode.opens == 0 and inode.delete_up_to_ms is not None:
            await self._finish_unlink(inode)
        self.inodes.maybe_drop(inode)

    async def readlink(self, ino: int) -> bytes:
        inode = self.inode(ino)
        if inode.kind is not Kind.SYMLINK:
            raise FsError(errno.EINVAL)
        if inode.staged is not None:
            return await inode.staged.file.read(0, inode.staged.file.size)
        remote = inode.remote
        if remote is None or remote.file_id is None:
            raise FsError(errno.ENOENT)
        return bytes(await self.fetcher.read(remote.file_id, remote.size, 0, remote.size))

    async def symlink(self, parent_ino: int, raw_name: bytes, target: bytes) -> Attributes:
        directory = self._changing_dir(parent_ino)
        name = names.decode_component(raw_name)
        async with self._locked(directory):
            if await self._child(directory, name) is not None:
                raise FsError(errno.EEXIST)
            child, entry = await self._new_file(
                directory, name, Kind.SYMLINK, stat.S_IFLNK | 0o777, content=target
            )
            await self.writeback.submit(entry)
        child.lookups += 1
        return self.attributes(child)

    async def link(self, ino: int, new_parent_ino: int, raw_name: bytes) -> Attributes:
        raise FsError(errno.EPERM, "hard links are not supported on B2")

    # -- removing -------------------------------------------------------------------------

    async def unlink(self, parent_ino: int, raw_name: bytes) -> None:
        directory = self._dir(parent_ino)
        name = names.decode_component(raw_name)
        if directory.virtual and not self.read_only:
            await self._unhide(directory, name)
            return
        self._writable(directory)
        async with self._locked(directory):
            child = await self._child(directory, name)
            if child is None:
                raise FsError(errno.ENOENT)
            if child.is_dir:
                raise FsError(errno.EISDIR)
            await self._remove_file(child)
            self.lister.detach(directory, name)
            self._changed(directory)
            await self._content_removed(directory)

    async def _unhide(self, directory: Inode, name: str) -> None:
        """Remove a hide marker from the versions view: the file it hid is visible again."""
        assert self.versions is not None and directory.bucket is not None
        entry = await self.versions.unhide(directory, name)
        assert entry.remote is not None
        folder, _, base = entry.remote.name.rpartition("/")
        live = self._live_dir(directory.bucket, folder)
        if live is not None:
            live.listed_at = float("-inf")  # list it again: the name is back
            await self.kernel.forget_name(live.ino, base)  # the kernel may cache its absence

    def _live_dir(self, bucket: BucketRef, folder: str) -> Inode | None:
        """The directory inode of a B2 folder ("a/b"), if the tree has it in memory."""
        directory = self.root
        if self.all_buckets:
            found = self.root.children.get(bucket.name)
            if found is None:
                return None
            directory = found
        if directory.bucket is None or directory.bucket.id != bucket.id:
            return None
        rest = folder + "/" if folder else ""
        if not rest.startswith(directory.key):
            return None
        for part in filter(None, rest[len(directory.key) :].split("/")):
            child = directory.children.get(part)
            if child is None or not child.is_dir:
                return None
            directory = child
        return directory

    async def _remove_file(self, inode: Inode) -> None:
        """Remove a file's name: drop its pending upload and hide or delete it on B2."""
        entry = inode.staged
        if entry is not None:
            self._keep_for_kernel(inode)
            if inode.opens > 0 and self.options.unlink == "delete" and entry.row.base_file_id:
                await entry.file.fill_all()  # its base version is about to be deleted
            await self.writeback.discard(entry)
        inode.unlinked = True
        remote = inode.remote
        if inode.bucket is None:
            return
        if remote is None:
            await self._remove_unconfirmed(entry, inode.bucket, inode.key)
            return
        if self.options.unlink == "delete" and inode.opens > 0:
            # Open handles still read this version: hide the name now, delete at last close.
            marker = await self._remove_name(inode.bucket, inode.key, delete=False)
            inode.delete_up_to_ms = marker.upload_ms if marker else remote.upload_ms
        else:
            await self._remove_name(inode.bucket, inode.key, delete=self.options.unlink == "delete")

    async def _finish_unlink(self, inode: Inode) -> None:
        """The last handle of an unlinked file closed: finish a deferred delete."""
        up_to = inode.delete_up_to_ms
        if up_to is None or inode.remote is None or inode.bucket is None:
            return
        inode.delete_up_to_ms = None
        try:
            await self._remove_versions(inode.bucket, inode.remote.name, up_to_ms=up_to)
        except Exception as exc:
            log.warning("could not delete the old versions of %s: %s", inode.path, exc)

    async def _remove_name(
        self, bucket: BucketRef, name: str, *, delete: bool
    ) -> RemoteFile | None:
        """Make a name vanish on B2: delete every version, or hide it (old versions stay).
        Returns the hide marker when one was made."""
        if delete:
            await self._remove_versions(bucket, name)
            return None
        try:
            return await self.store.hide_file(bucket.id, name)
        except B2NotFound:
            return None  # already hidden or gone

    async def _remove_versions(
        self,
        bucket: BucketRef,
        name: str,
        *,
        always_delete: bool = False,
        up_to_ms: int | None = None,
    ) -> None:
        """Delete every version of ``name`` (up to a time); without deleteFiles, hide it
        when ``always_delete`` (our own markers), else refuse.

        Oldest first: B2 shows a name as its newest version, so while the versions go, what
        others see stays what it was (the current content, or the hide marker of a file
        unlinked while open) until the last one goes. Newest first, an older content (or a
        hidden name) would show for a moment: a listing then could show a removed name."""
        if not self.store.scope.allows("deleteFiles"):
            if always_delete:
                await self._remove_name(bucket, name, delete=False)
                return
            raise FsError(errno.EACCES, "the key may not delete files (deleteFiles)")
        doomed = [
            version
            async for version in self.store.list_versions(bucket.id, name, None)
            if version.name == name
            and version.file_id is not None
            # a newer file of the same name is not ours to delete
            and (up_to_ms is None or version.upload_ms <= up_to_ms)
        ]
        for version in reversed(doomed):  # B2 lists a name's versions newest first
            assert version.file_id is not None
            with suppress(B2NotFound):
                await self.store.delete_version(version.name, version.file_id)

    # -- rename ---------------------------------------------------------------------------

    async def rename(
        self, old_parent_ino: int, old_raw: bytes, new_parent_ino: int, new_raw: bytes, flags: int
    ) -> None:
        old_dir = self._changing_dir(old_parent_ino)
        new_dir = self._changing_dir(new_parent_ino)
        old_name = names.decode_component(old_raw)
        new_name = names.decode_component(new_raw)
        exchange = getattr(os, "RENAME_EXCHANGE", 2)
        noreplace = getattr(os, "RENAME_NOREPLACE", 1)
        if flags & exchange:
            raise FsError(errno.EINVAL, "RENAME_EXCHANGE is not supported")
        if (old_dir is self.root or new_dir is self.root) and self.all_buckets:
            raise FsError(errno.EPERM, "buckets cannot be renamed")
        async with self._locked(old_dir, new_dir):
            source = await self._child(old_dir, old_name)
            if source is None:
                raise FsError(errno.ENOENT)
            target = await self._child(new_dir, new_name)
            if target is source:
                return
            if target is not None and flags & noreplace:
                raise FsError(errno.EEXIST)
            assert new_dir.bucket is not None
            new_key = self._new_key(new_dir, new_name, is_dir=source.is_dir)
            copies: dict[str, RemoteFile] = {}
            if source.is_dir:
                copies = await self._rename_dir(source, target, new_dir.bucket, new_key)
            else:
                await self._rename_file(source, target, new_dir.bucket, new_key)
            if target is not None:
                self.lister.detach(new_dir, new_name)
            del old_dir.children[old_name]
            source.parent, source.name, source.bucket = new_dir, new_name, new_dir.bucket
            new_dir.children[new_name] = source
            if source.is_dir:
                self._follow_copies(source, copies, new_key)
            self._changed(old_dir)
            self._changed(new_dir)
            await self._content_added(new_dir)
            await self._content_removed(old_dir)

    async def _rename_file(
        self, source: Inode, target: Inode | None, bucket: BucketRef, new_key: str
    ) -> None:
        if target is not None:
            if target.is_dir:
                raise FsError(errno.EISDIR)
            if target.staged is not None:
                self._keep_for_kernel(target)
                await self.writeback.discard(target.staged)
            target.unlinked = True
        old_bucket, old_key = source.bucket, source.key
        assert old_bucket is not None
        entry = source.staged
        if entry is not None:
            await self.writeback.settle(entry)  # a copy landing decides: clean or pending
        old_remote = source.remote
        if entry is not None and entry.dirty:
            if self.options.unlink == "delete" and entry.row.base_file_id and old_remote:
                await entry.file.fill_all()  # the base version is about to be deleted
            await self.writeback.retarget(entry, bucket, new_key)
            old_remote = source.remote  # an upload may have landed before the retarget
            # Until the upload lands, B2's version of the new name is the replaced file's:
            # unlinking the file before then must remove that one too, or it comes back.
            source.remote = target.remote if target is not None else None
        elif old_remote is not None:
            source.remote = await server_copy(self.store, old_remote, bucket.id, new_key)
            if entry is not None:
                await self.writeback.retarget(entry, bucket, new_key)
        if old_remote is not None:
            await self._remove_name(old_bucket, old_key, delete=self.options.unlink == "delete")
        else:
            await self._remove_unconfirmed(entry, old_bucket, old_key)

    async def _remove_unconfirmed(self, entry: Entry | None, bucket: BucketRef, key: str) -> None:
        """The name is going and no version of it is known: but if an upload to it was cut
        off while under way, B2 may hold one all the same (see WriteBack)."""
        if entry is None or (bucket.id, key) not in entry.unconfirmed:
            return
        try:
            if entry.row.kind == "marker":
                await self._remove_versions(bucket, key, always_delete=True)
            else:
                await self._remove_name(bucket, key, delete=self.options.unlink == "delete")
        except Exception as exc:  # the name is gone here; do not fail the operation for it
            log.warning(
                "%s/%s may be left on B2 (its upload was cut off): %s", bucket.name, key, exc
            )

    async def _rename_dir(
        self, source: Inode, target: Inode | None, bucket: BucketRef, new_prefix: str
    ) -> dict[str, RemoteFile]:
        """Move a directory's contents on B2; returns the copies made, by new name."""
        if target is not None:
            if not target.is_dir:
                raise FsError(errno.ENOTDIR)
            await self.lister.refresh(target)
            if target.children:
                raise FsError(errno.ENOTEMPTY)
            await self._drop_markers(target)
            target.unlinked = True
        old_bucket, old_prefix = source.bucket, source.key
        assert old_bucket is not None
        delete = self.options.unlink == "delete"
        # Staged files below move with their pending uploads.
        for (bucket_id, name), entry in list(self.writeback.by_name.items()):
            if bucket_id == old_bucket.id and name.startswith(old_prefix):
                await self.writeback.retarget(entry, bucket, new_prefix + name[len(old_prefix) :])
        # Then everything B2 has below it: a server-side copy, then the removal of the old
        # name, for each name; `upload_concurrency` names at once (one after the other, a
        # folder of 200 files took 18.9 s on the WAN profile, 3.0 s so). The first failure
        # stops the rest: each name is then either moved, copied only, or untouched, never
        # lost.
        copies: dict[str, RemoteFile] = {}
        room = trio.Semaphore(self.options.upload_concurrency)

        async def move(remote: RemoteFile, new_name: str) -> None:
            try:
                if (bucket.id, new_name) not in self.writeback.by_name:
                    copies[new_name] = await server_copy(self.store, remote, bucket.id, new_name)
                await self._remove_name(old_bucket, remote.name, delete=delete)
            finally:
                room.release()

        async with trio.open_nursery() as nursery:
            async for remote in self.store.list_names(old_bucket.id, old_prefix, None):
                await room.acquire()
                nursery.start_soon(move, remote, new_prefix + remote.name[len(old_prefix) :])
        return copies

    def _follow_copies(self, directory: Inode, copies: dict[str, RemoteFile], prefix: str) -> None:
        """Point the moved subtree's inodes at their copies and relist it on next use."""
        directory.listed_at = float("-inf")
        directory.marker = None
        for name, child in directory.children.items():
            child.bucket = directory.bucket
            if child.is_dir:
                self._follow_copies(child, copies, prefix + name + "/")
            elif prefix + name in copies:
                child.remote = copies[prefix + name]

    # -- changes made elsewhere (B2 event notifications) ----------------------------------

    def remote_changed(
        self, bucket_id: str, name: str, kind: str, file_id: str | None
    ) -> KernelDrops | None:
        """B2 announced that another client changed ``name``: ``kind`` is ``created`` (a new
        version), ``hidden`` or ``deleted`` (a version deleted), ``file_id`` the version.

        Marks stale exactly what shows it: the listing of its folder (or of the deepest
        folder this mount knows on its path, for a name in a folder new here), the folders
        above that may now be empty (after a removal), and the versions view of the name.
        The next lookup, getattr or readdir lists them again. Returns what the kernel must
        forget (:meth:`forget_in_kernel`, to be awaited outside any request), or None when
        the change is this mount's own (nothing to do) or outside the mount.
        """
        if self.store.own.is_own(file_id):
            return None
        top = self._bucket_top(bucket_id)
        if top is None or not name.startswith(top.key):
            return None
        drops = KernelDrops()
        directory = top
        *folders, leaf = name[len(top.key) :].split("/")
        for part in folders:
            child = directory.children.get(part)
            if child is None or not child.is_dir:
                announce(directory, drops, part)  # a folder new here
                break
            directory = child
        else:
            announce(directory, drops, leaf)
            child = directory.children.get(leaf)
            if child is not None:
                drops.attributes_of(child)
                gone = child.remote is not None and child.remote.file_id == file_id
                if kind == "deleted" and gone and child.staged is None:
                    # The version it shows is gone (even one this mount made, which a listing
                    # would not replace): the name gets a new inode at the next listing.
                    self.lister.detach(directory, leaf)
            if kind != "created":
                # The folder may be empty now: B2 folders exist only through their names.
                while directory is not top and set(directory.children) <= {leaf}:
                    assert directory.parent is not None
                    leaf, directory = directory.name, directory.parent
                    announce(directory, drops, leaf)
        if self.versions is not None:
            self.versions.remote_changed(bucket_id, name, file_id, drops)
        return drops

    def remote_resync(self, bucket_id: str) -> KernelDrops:
        """Announcements of the bucket were lost (the receiver's queue overflowed): every
        listing of it is stale, and the kernel forgets every name and attribute it holds
        from it. (An absent name the kernel remembers is forgotten after attr_timeout.)"""
        drops = KernelDrops()
        top = self._bucket_top(bucket_id)
        pending = [top] if top is not None else []
        if self.versions is not None:
            pending.append(self.versions.root)
        while pending:
            directory = pending.pop()
            announce(directory, drops, None)
            for name, child in directory.children.items():
                drops.name(directory, name)
                drops.attributes_of(child)
                if child.is_dir:
                    pending.append(child)
        return drops

    async def forget_in_kernel(self, drops: KernelDrops) -> None:
        """Tell the kernel to forget ``drops``. Never from a request handler: the kernel takes
        a directory's lock to forget a name in it (see ``fuse_ops.KernelCache``)."""
        for parent_ino, name in sorted(drops.names):
            await self.kernel.forget_name(parent_ino, name)
        for ino in sorted(drops.attributes):
            await self.kernel.forget_attributes(ino)

    def _bucket_top(self, bucket_id: str) -> Inode | None:
        """The directory of a bucket's top (the mount root, or a bucket at the root)."""
        if self.all_buckets:
            return next(
                (c for c in self.root.children.values() if c.bucket and c.bucket.id == bucket_id),
                None,
            )
        return self.root if self.root.bucket and self.root.bucket.id == bucket_id else None

    # -- filesystem-wide ------------------------------------------------------------------

    def statfs(self) -> dict[str, int]:
        block = 4096
        total = (1 << 50) // block  # 1 PiB: B2 has no fixed size; big and sane
        return {
            "f_bsize": block,
            "f_frsize": block,
            "f_blocks": total,
            "f_bfree": total,
            "f_bavail": total,
            "f_files": 1 << 32,
            "f_ffree": 1 << 32,
            "f_favail": 1 << 32,
            "f_namemax": 255,
        }

    # -- extended attributes (read-only facts about the B2 version) ----------------------

    def _xattr_values(self, inode: Inode) -> dict[str, bytes]:
        remote = inode.remote
        if inode.is_dir or remote is None or remote.file_id is None:
            return {}
        values = {
            "action": remote.action if inode.virtual else "",
            "file_id": remote.file_id,
            "content_sha1": remote.sha1 or "",
            "upload_timestamp": str(remote.upload_ms),
            "content_type": remote.content_type or "",
        }
        return {XATTR_PREFIX + k: v.encode() for k, v in values.items() if v}

    async def getxattr(self, ino: int, name: bytes) -> bytes:
        values = self._xattr_values(self.inode(ino))
        value = values.get(name.decode("utf-8", "surrogateescape"))
        if value is None:
            raise FsError(absent_xattr_errno(name))
        return value

    async def listxattr(self, ino: int) -> list[bytes]:
        return [n.encode() for n in self._xattr_values(self.inode(ino))]

    async def setxattr(self, ino: int, name: bytes, value: bytes) -> None:
        if name.decode("utf-8", "surrogateescape").startswith(XATTR_PREFIX):
            raise FsError(errno.EPERM, "b2fs extended attributes are read-only")
        raise FsError(errno.ENOTSUP)

    async def removexattr(self, ino: int, name: bytes) -> None:
        await self.setxattr(ino, name, b"")

    # -- shutting down --------------------------------------------------------------------

    async def drain(self) -> None:
        """Wait until every pending upload is on B2."""
        await self.writeback.drain()


def absent_xattr_errno(name: bytes) -> int:
    """The errno of reading an extended attribute that a file does not have: ENODATA in the
    user. namespace (where b2fs's own names are), ENOTSUP in the namespaces b2fs does not have
    (security., system., trusted.). GNU ls asks for security.selinux and
    system.posix_acl_access, and after ENOTSUP stops asking for the rest of this filesystem
    instead of asking for every file (with ENODATA, those two calls per file were half the
    cost of an ls -lR)."""
    return errno.ENODATA if name.startswith(b"user.") else errno.ENOTSUP


def _or_unset(value: int | None) -> int:
    """-1 stands for "not stored": the mount's uid/gid options apply."""
    return -1 if value is None else value
