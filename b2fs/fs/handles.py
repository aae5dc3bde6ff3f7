"""Open handles: what one open() of a file or a directory holds.

A file handle pins the B2 version it opened (``pinned``), so reads through it never mix two
versions even if the name changes on B2 meanwhile; once the file has staged content (a write
through any handle of this mount), all handles read that instead, as on a local disk. A handle
on a file with staged content *holds* the entry, which keeps the staging file alive.

A directory handle keeps the entries it listed at its first readdir, so that offsets stay
valid while the directory changes (pyfuse3's rule: no entry skipped or repeated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from b2fs.fs.inodes import Inode
from b2fs.objectstore import RemoteFile
from b2fs.transfer.prefetch import Readahead
from b2fs.transfer.writeback import Entry


@dataclass(eq=False)
class FileHandle:
    fh: int
    inode: Inode
    readable: bool
    writable: bool
    pinned: RemoteFile | None
    readahead: Readahead
    holding: Entry | None = None


@dataclass(eq=False)
class DirHandle:
    fh: int
    inode: Inode
    entries: list[tuple[str, Inode]] | None = None


@dataclass
class HandleTable:
    files: dict[int, FileHandle] = field(default_factory=dict)
    dirs: dict[int, DirHandle] = field(default_factory=dict)
    by_inode: dict[int, set[FileHandle]] = field(default_factory=dict)
    _next: int = 1

    def next_fh(self) -> int:
        self._next += 1
        return self._next

    def add_file(self, handle: FileHandle) -> None:
        self.files[handle.fh] = handle
        self.by_inode.setdefault(handle.inode.ino, set()).add(handle)
        handle.inode.opens += 1
        handle.inode.write_opens += handle.writable

    def remove_file(self, fh: int) -> FileHandle | None:
        handle = self.files.pop(fh, None)
        if handle is not None:
            handles = self.by_inode.get(handle.inode.ino)
            if handles is not None:
                handles.discard(handle)
                if not handles:
                    del self.by_inode[handle.inode.ino]
            handle.inode.opens -= 1
            handle.inode.write_opens -= handle.writable
        return handle

    def of_inode(self, inode: Inode) -> set[FileHandle]:
        return self.by_inode.get(inode.ino, set())
