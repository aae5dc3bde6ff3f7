"""The versions view: every version of every file, browsable and restorable, read-only.

A directory at the mount root (``versions_dir``, ``.versions`` by default; not listed at the
root, reachable by name) mirrors the tree *including* names that are now hidden or deleted.
Inside it each file name is a directory of that file's versions, one entry per version:

    <upload time, UTC, ms>_<12 hex of sha1(fileId)><original extension>
    2026-11-26T12:00:00.123Z_3f2a9c0d1b7e.txt

so entries sort by time and never collide (a fileId's own first characters are the bucket id,
the same for every file, hence the hash). A hide marker is a zero-size entry ending in
``.hidden`` instead of the extension. Entry mtime is the upload time; the xattrs
``user.b2.file_id``, ``user.b2.content_sha1``, ``user.b2.upload_timestamp`` and
``user.b2.action`` say which version it is.

Cost: one paged ``list_file_versions`` (prefix and delimiter "/") per directory listed, which
also fills the version directories of the files in it; a file's version directory looked up on
its own costs one listing of that name. Never a request per version. Listings are trusted as
the tree's are (``dirlist.Freshness``), dropped as soon as this mount changes anything on B2,
and, for the name a B2 event notification is about, at once (:meth:`VersionsView.remote_changed`).

Everything here is read-only (EROFS) except unhiding: removing a hide-marker entry deletes that
hide marker on B2 (``b2_delete_file_version``), so an older version becomes the current one
again. Restoring is copying: ``cp .versions/a/b.txt/<entry> a/b.txt``. Reading an entry
downloads exactly that fileId, through the block cache.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import time
from dataclasses import dataclass

import trio

from b2fs.fs import names
from b2fs.fs.dirlist import Freshness, KernelDrops, announce, scoped_prefix
from b2fs.fs.errors import FsError
from b2fs.fs.inodes import Inode, InodeTable, Kind
from b2fs.objectstore import BucketRef, ObjectStore, RemoteFile

FOLDER = "folder"  # a prefix: holds folders and files' version directories
FILE = "file"  # one file name: holds its versions
VERSION = "version"  # one version (or hide marker)
BUCKETS = "buckets"  # the versions root when every bucket is mounted


def entry_name(version: RemoteFile) -> str:
    seconds, millis = divmod(version.upload_ms, 1000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"
    digest = hashlib.sha1((version.file_id or "").encode()).hexdigest()[:12]
    if version.action == "hide":
        suffix = ".hidden"
    else:
        suffix = os.path.splitext(version.name.rsplit("/", 1)[-1])[1]
        suffix = suffix if len(suffix) <= 16 else ""
    return f"{stamp}_{digest}{suffix}"


@dataclass
class _Listing:
    folders: set[str]
    files: dict[str, list[RemoteFile]]  # file name (component) -> versions, newest first


class VersionsView:
    def __init__(
        self,
        store: ObjectStore,
        inodes: InodeTable,
        parent: Inode,
        name: str,
        freshness: Freshness,
    ) -> None:
        self.store = store
        self.inodes = inodes
        self.freshness = freshness
        self.root = inodes.new(Kind.DIR, name, parent, bucket=parent.bucket)
        self.root.virtual = BUCKETS if parent.bucket is None else FOLDER
        self.root.is_top = True
        self.root.top_key = parent.top_key
        self.list_calls = 0
        self._seen_mutations = -1

    def _fresh(self, directory: Inode) -> bool:
        if self._seen_mutations != self.store.mutations:
            # This mount changed something on B2: every versions listing may be incomplete.
            self._seen_mutations = self.store.mutations
            self._expire(self.root)
        return self.freshness.is_fresh(directory)

    def _expire(self, directory: Inode) -> None:
        directory.listed_at = -math.inf
        for child in directory.children.values():
            if child.is_dir:
                self._expire(child)

    async def ensure_listed(self, directory: Inode) -> None:
        if self._fresh(directory):
            return
        async with directory.list_lock:
            if self._fresh(directory):
                return
            announced = directory.announced
            if directory.virtual == BUCKETS:
                await self._list_buckets(directory)
            elif directory.virtual == FOLDER:
                await self._list_folder(directory)
            elif directory.virtual == FILE:
                await self._list_file(directory)
            if directory.announced == announced:
                directory.listed_at = trio.current_time()
            else:  # B2 announced a change meanwhile: what came may predate it
                self._expire(directory)

    def remote_changed(
        self, bucket_id: str, name: str, file_id: str | None, drops: KernelDrops
    ) -> None:
        """B2 announced a change of ``name`` (a new version, a hide marker or a deletion):
        the listings that show its versions are stale, and ``drops`` gets the names the kernel
        must forget (see ``Filesystem.remote_changed``)."""
        node: Inode | None = self.root
        if self.root.virtual == BUCKETS:
            node = next(
                (c for c in self.root.children.values() if c.bucket and c.bucket.id == bucket_id),
                None,
            )
        if node is None or node.bucket is None or node.bucket.id != bucket_id:
            return
        if not name.startswith(node.key):
            return
        *folders, leaf = name[len(node.key) :].split("/")
        for part in folders:
            child = node.children.get(part)
            if child is None or child.virtual != FOLDER:
                announce(node, drops, part)  # a folder it does not show yet
                return
            node = child
        announce(node, drops, leaf)
        versions = node.children.get(leaf)
        if versions is not None and versions.virtual == FILE:
            announce(versions, drops, None)
            for version_name, version in versions.children.items():
                if version.remote is not None and version.remote.file_id == file_id:
                    drops.name(versions, version_name)  # a version deleted

    async def _list_buckets(self, directory: Inode) -> None:
        buckets = {b.name: b for b in await self.store.list_buckets()}
        self._replace(directory, {name: (FOLDER, b, None) for name, b in buckets.items()})

    async def _list_folder(self, directory: Inode) -> None:
        assert directory.bucket is not None
        key = directory.key
        listing = _Listing(set(), {})
        prefix, synthetic = scoped_prefix(key, self.store.scope.name_prefix)
        if synthetic is not None:
            listing.folders.add(synthetic)
        if prefix is not None:
            self.list_calls += 1
            async for version in self.store.list_versions(directory.bucket.id, prefix, "/"):
                self._add_row(listing, version, key)
        self._fill_folder(directory, listing)

    @staticmethod
    def _add_row(listing: _Listing, version: RemoteFile, key: str) -> None:
        rest = version.name[len(key) :]
        if version.is_folder:
            component = rest[:-1]
            if names.is_showable(component) and "/" not in component:
                listing.folders.add(component)
        elif version.action in ("upload", "hide") and names.is_showable(rest):
            listing.files.setdefault(rest, []).append(version)

    def _fill_folder(self, directory: Inode, listing: _Listing) -> None:
        wanted: dict[str, tuple[str, BucketRef | None, list[RemoteFile] | None]] = {}
        for component, versions in listing.files.items():
            if component != names.MARKER:
                wanted[component] = (FILE, directory.bucket, versions)
        for component in listing.folders:
            wanted[component] = (FOLDER, directory.bucket, None)  # a folder wins, as in the tree
        self._replace(directory, wanted)

    async def _list_file(self, directory: Inode) -> None:
        assert directory.bucket is not None
        key = directory.key
        self.list_calls += 1
        versions = [
            v
            async for v in self.store.list_versions(directory.bucket.id, key, None)
            if v.name == key and v.action in ("upload", "hide")
        ]
        self._fill_versions(directory, versions)

    def _replace(
        self,
        directory: Inode,
        wanted: dict[str, tuple[str, BucketRef | None, list[RemoteFile] | None]],
    ) -> None:
        for name in list(directory.children):
            old = directory.children[name]
            if name not in wanted or wanted[name][0] != old.virtual:
                del directory.children[name]
                old.unlinked = True
                self.inodes.maybe_drop(old)
        now = trio.current_time()
        for name, (virtual, bucket, versions) in wanted.items():
            child = directory.children.get(name)
            if child is None:
                child = self.inodes.new(Kind.DIR, name, directory, bucket=bucket)
                child.virtual = virtual
                child.is_top = True
                if virtual == FOLDER:
                    child.top_key = (
                        "" if directory.virtual == BUCKETS else directory.key + name + "/"
                    )
                else:
                    child.top_key = directory.key + name
                directory.children[name] = child
            if versions is not None:
                self._fill_versions(child, versions)
                child.listed_at = now

    def _fill_versions(self, directory: Inode, versions: list[RemoteFile]) -> None:
        wanted = {entry_name(v): v for v in versions}
        for name in list(directory.children):
            if name not in wanted:
                child = directory.children.pop(name)
                child.unlinked = True
                self.inodes.maybe_drop(child)
        for name, version in wanted.items():
            if name not in directory.children:
                child = self.inodes.new(Kind.FILE, name, directory, remote=version)
                child.virtual = VERSION
                directory.children[name] = child

    async def unhide(self, directory: Inode, name: str) -> Inode:
        """Remove a hide-marker entry: delete that hide marker on B2. Returns its inode."""
        if directory.virtual != FILE:
            raise FsError(errno.EROFS, "the versions directory is read-only")
        await self.ensure_listed(directory)
        entry = directory.children.get(name)
        if entry is None:
            raise FsError(errno.ENOENT)
        version = entry.remote
        if version is None or version.action != "hide" or version.file_id is None:
            raise FsError(errno.EROFS, "only hide markers can be removed from the versions view")
        await self.store.delete_version(version.name, version.file_id)
        del directory.children[name]
        entry.unlinked = True
        self.inodes.maybe_drop(entry)
        return entry
