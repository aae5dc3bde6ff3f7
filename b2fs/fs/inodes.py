"""Inodes: the filesystem core's view of every name the kernel knows about.

An inode is a node of a tree; its B2 name (``key``) is derived from its parent chain, so
renaming a directory moves its whole subtree in memory by changing one link. A directory's
key is the B2 prefix of its contents (ending in "/", or "" at a bucket's top, or the mount's
prefix at the mount root).

A file inode shows, in order of preference: its staged entry (content being written or kept
open locally, ``staged``), else the newest B2 version known (``remote``). A directory keeps its
children, the time they were last listed from B2, and a ``generation`` bumped by every local
change of its entries (and every change B2 announces, counted in ``announced`` too), so that a
listing that was in flight during a change is not applied over it.

Inode numbers are never reused while the mount lives (the kernel may still hold an old one).
An inode leaves the table when the kernel has forgotten it (lookup count 0), nothing has it
open, and it is no longer in the tree.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import trio

from b2fs.objectstore import BucketRef, RemoteFile

if TYPE_CHECKING:
    from b2fs.transfer.writeback import Entry

ROOT_INODE = 1


class Kind(enum.Enum):
    DIR = "dir"
    FILE = "file"
    SYMLINK = "symlink"


@dataclass(eq=False)
class Inode:
    ino: int
    kind: Kind
    name: str
    parent: Inode | None
    bucket: BucketRef | None
    top_key: str = ""  # for a bucket's top or the mount root: the key it stands for
    is_top: bool = False  # the mount root, or a bucket directory at the root
    remote: RemoteFile | None = None
    staged: Entry | None = None
    lookups: int = 0
    opens: int = 0
    write_opens: int = 0  # of the open handles, those that may write
    unlinked: bool = False
    virtual: str | None = None  # set in the versions view (see fs/versions.py)
    delete_up_to_ms: int | None = None  # unlink=delete deferred until the last close
    # Trio time B2 confirmed an upload of this mount: of this file, or for a directory, of
    # anything below it. A listing taken before then may lack the name (see fs/dirlist.py).
    landed_at: float = -math.inf
    # A removed file's staged content, held while the kernel may still open the inode (it
    # resolved the name just before the removal): as on a local disk, that open sees it.
    kept: Entry | None = None
    # Directories only.
    children: dict[str, Inode] = field(default_factory=dict)
    listed_at: float = -math.inf  # trio time of the last listing applied
    generation: int = 0
    announced: int = 0  # changes B2 announced in it (event notifications)
    marker: RemoteFile | None = None  # the .bzEmpty object seen in the last listing
    readdir_at: float = -math.inf  # trio time of the last readdir (spots recursive walks)
    subtree_too_big: bool = False  # too many names below to list the subtree at once
    subtree_failed_at: float = -math.inf  # trio time a listing of the subtree last failed
    # Attributes set locally on a directory (not kept on B2).
    dir_mode: int | None = None
    dir_mtime_ns: int | None = None
    # Files: what the kernel's page cache holds (see Filesystem.open).
    cached_content: object = None

    # Directories' locks are made on first use (``functools.cached_property``): a listing of
    # 10,000 files would otherwise make 20,000 locks nobody takes.

    @cached_property
    def lock(self) -> trio.Lock:
        """Held while the namespace of this directory changes."""
        return trio.Lock()

    @cached_property
    def list_lock(self) -> trio.Lock:
        """Held by a listing of this directory (one at a time)."""
        return trio.Lock()

    @property
    def is_dir(self) -> bool:
        return self.kind is Kind.DIR

    @property
    def key(self) -> str:
        if self.is_top or self.parent is None:
            return self.top_key
        suffix = "/" if self.is_dir else ""
        return self.parent.key + self.name + suffix

    @property
    def path(self) -> str:
        """A readable path for messages: bucket/key."""
        bucket = self.bucket.name if self.bucket else ""
        return f"{bucket}/{self.key}" if bucket else "/"

    def content_token(self) -> object:
        """Identifies the content: equal tokens mean the same bytes."""
        if self.staged is not None:
            return ("staged", id(self.staged), self.staged.version)
        return self.remote.file_id if self.remote is not None else None


class InodeTable:
    def __init__(self) -> None:
        self._inodes: dict[int, Inode] = {}
        self._next = ROOT_INODE + 1

    def add_root(self, root: Inode) -> None:
        self._inodes[ROOT_INODE] = root

    def new(
        self,
        kind: Kind,
        name: str,
        parent: Inode,
        *,
        bucket: BucketRef | None = None,
        remote: RemoteFile | None = None,
    ) -> Inode:
        inode = Inode(
            ino=self._next,
            kind=kind,
            name=name,
            parent=parent,
            bucket=bucket if bucket is not None else parent.bucket,
            remote=remote,
        )
        self._next += 1
        self._inodes[inode.ino] = inode
        return inode

    def get(self, ino: int) -> Inode | None:
        return self._inodes.get(ino)

    def __len__(self) -> int:
        return len(self._inodes)

    def values(self) -> list[Inode]:
        return list(self._inodes.values())

    def forget(self, inode: Inode, count: int) -> None:
        inode.lookups = max(0, inode.lookups - count)
        self.maybe_drop(inode)

    def maybe_drop(self, inode: Inode) -> None:
        """Drop an inode nobody can reach any more."""
        if inode.ino == ROOT_INODE or inode.lookups > 0 or inode.opens > 0:
            return
        parent = inode.parent
        attached = parent is not None and parent.children.get(inode.name) is inode
        if not attached or inode.unlinked:
            self._inodes.pop(inode.ino, None)
