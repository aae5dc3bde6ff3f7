"""Attributes of inodes: what ``stat`` shows, derived without any request.

Files: size and times come from the staged entry when there is one, else from the B2 version
the last listing carried (listings include file info, so ``ls -l`` costs no request per file).
The mtime is ``src_last_modified_millis`` when the file has it, else the upload time. The mode
comes from the ``mode`` info key (s3fs's convention, file type bits included) when present,
else from the mount options; uid and gid from the ``uid``/``gid`` keys when present (set by a
chown), else from the mount options. A ``mode`` whose type is a symlink makes the object a
symlink whose content is the target (s3fs does the same).

Directories are B2 name prefixes: they have no metadata on B2, so they show the mount's
owner and directory mode, and the mount's start time; chmod and utime on a directory are kept
in memory only (docs/SEMANTICS.md).
"""

from __future__ import annotations

import stat
from collections.abc import Mapping
from dataclasses import dataclass

from b2fs.fs.inodes import Inode, Kind
from b2fs.objectstore import INFO_GID, INFO_MODE, INFO_MTIME, INFO_UID, RemoteFile
from b2fs.options import MountOptions


@dataclass(frozen=True)
class Attributes:
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    blksize: int

    @property
    def blocks(self) -> int:
        return (self.size + 511) // 512


def info_int(info: Mapping[str, str], key: str) -> int | None:
    value = info.get(key)
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


def remote_kind(remote: RemoteFile) -> Kind:
    mode = info_int(remote.info, INFO_MODE)
    if mode is not None and stat.S_ISLNK(mode):
        return Kind.SYMLINK
    return Kind.FILE


def remote_mtime_ns(remote: RemoteFile) -> int:
    millis = info_int(remote.info, INFO_MTIME)
    return (millis if millis is not None else remote.upload_ms) * 1_000_000


class AttributeMaker:
    def __init__(self, options: MountOptions, mount_time_ns: int, block_size: int) -> None:
        self.options = options
        self.mount_time_ns = mount_time_ns
        self.block_size = block_size

    def of(self, inode: Inode) -> Attributes:
        if inode.is_dir:
            return self._dir(inode)
        if inode.virtual and inode.remote is not None:
            return self._version(inode, inode.remote)
        entry = inode.staged
        if entry is not None:
            row = entry.row
            return self._make(
                inode,
                self._file_mode(inode.kind, row.mode),
                row.uid if row.uid >= 0 else self.options.uid,
                row.gid if row.gid >= 0 else self.options.gid,
                entry.file.size,
                row.mtime_ns,
            )
        remote = inode.remote
        info: Mapping[str, str] = remote.info if remote is not None else {}
        uid = info_int(info, INFO_UID)
        gid = info_int(info, INFO_GID)
        return self._make(
            inode,
            self._file_mode(inode.kind, info_int(info, INFO_MODE)),
            self.options.uid if uid is None else uid,
            self.options.gid if gid is None else gid,
            remote.size if remote is not None else 0,
            remote_mtime_ns(remote) if remote is not None else self.mount_time_ns,
        )

    def _version(self, inode: Inode, version: RemoteFile) -> Attributes:
        """An entry of the versions view: read-only, dated by its upload."""
        stored = info_int(version.info, INFO_MODE)
        permissions = stat.S_IMODE(stored) if stored is not None else self.options.file_permissions
        uid = info_int(version.info, INFO_UID)
        gid = info_int(version.info, INFO_GID)
        return self._make(
            inode,
            stat.S_IFREG | (permissions & 0o555),
            self.options.uid if uid is None else uid,
            self.options.gid if gid is None else gid,
            version.size,
            version.upload_ms * 1_000_000,
        )

    def _dir(self, inode: Inode) -> Attributes:
        permissions = inode.dir_mode if inode.dir_mode is not None else self.options.dir_permissions
        return self._make(
            inode,
            stat.S_IFDIR | permissions,
            self.options.uid,
            self.options.gid,
            0,
            inode.dir_mtime_ns or self.mount_time_ns,
            nlink=1,  # unknown subdirectory count: tells find not to use the leaf optimisation
        )

    def _file_mode(self, kind: Kind, stored: int | None) -> int:
        if kind is Kind.SYMLINK:
            return stat.S_IFLNK | 0o777
        if stored is None:
            return stat.S_IFREG | self.options.file_permissions
        return stat.S_IFREG | stat.S_IMODE(stored)

    def _make(
        self, inode: Inode, mode: int, uid: int, gid: int, size: int, mtime_ns: int, nlink: int = 1
    ) -> Attributes:
        return Attributes(
            ino=inode.ino,
            mode=mode,
            nlink=nlink,
            uid=uid,
            gid=gid,
            size=size,
            mtime_ns=mtime_ns,
            blksize=self.block_size,
        )
