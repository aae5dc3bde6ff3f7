"""The FUSE adapter: pyfuse3 operations on top of the filesystem core.

The only module that imports pyfuse3 and raises ``FUSEError``. Each operation unpacks the
kernel's arguments, awaits the core, and packs the answer; any exception is turned into an
errno by ``fs.errors.to_fs_error`` (the one table) and logged at the level it names, so an
ENOENT from a lookup stays quiet and a refused key does not. ``forget`` never raises.

Kernel caching: entries and attributes are cached for ``attr_timeout``; a missing name is
answered with a negative entry (inode 0) cached as long, so repeated lookups of absent names
(shells, compilers, git) do not reach B2 or even b2fs.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pyfuse3
import trio

from b2fs.fs.attrs import Attributes
from b2fs.fs.errors import FsError, to_fs_error
from b2fs.fs.filesystem import XATTR_PREFIX, Filesystem, absent_xattr_errno

log = logging.getLogger(__name__)

_XATTR_PREFIX = XATTR_PREFIX.encode()
# Directory entries made per batch while a readdir fills the kernel's buffer (which takes a
# few dozen): the work of a call stays bounded however big the directory.
READDIR_BATCH = 256


def _fail(operation: str, exc: BaseException) -> pyfuse3.FUSEError:
    error = to_fs_error(exc)
    if log.isEnabledFor(error.level):
        log.log(error.level, "%s: %s", operation, error, exc_info=error.level >= logging.ERROR)
    return pyfuse3.FUSEError(error.errno)


class KernelCache:
    """The core's ``KernelNotifier``: makes the kernel drop cached names and attributes.

    The notification is sent from a worker thread and awaited, so that when the request that
    caused it returns, the kernel has already forgotten. The kernel takes the directory's lock
    to drop a name: never call ``forget_name`` for a directory the current request changes
    (the kernel holds that lock already, and would wait for us forever)."""

    async def forget_name(self, parent_ino: int, name: str) -> None:
        with contextlib.suppress(OSError):  # not cached: nothing to drop
            await trio.to_thread.run_sync(
                pyfuse3.invalidate_entry,
                pyfuse3.InodeT(parent_ino),
                pyfuse3.FileNameT(name.encode("utf-8", "surrogateescape")),
            )

    async def forget_attributes(self, ino: int) -> None:
        with contextlib.suppress(OSError):  # unknown to the kernel: nothing to drop
            await trio.to_thread.run_sync(pyfuse3.invalidate_inode, pyfuse3.InodeT(ino), True)


class Operations(pyfuse3.Operations):
    def __init__(self, fs: Filesystem, *, attr_timeout: float) -> None:
        super().__init__()
        self.fs = fs
        self.attr_timeout = attr_timeout
        fs.kernel = KernelCache()
        # Called once the kernel's INIT has been answered (mount.py tunes the mount then).
        self.after_init: Callable[[], None] | None = None

    def init(self) -> None:
        if self.after_init is not None:
            self.after_init()

    def _entry(self, attrs: Attributes) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = pyfuse3.InodeT(attrs.ino)
        entry.generation = 0
        entry.entry_timeout = self.attr_timeout
        entry.attr_timeout = self.attr_timeout
        entry.st_mode = pyfuse3.ModeT(attrs.mode)
        entry.st_nlink = attrs.nlink
        entry.st_uid = attrs.uid
        entry.st_gid = attrs.gid
        entry.st_rdev = 0
        entry.st_size = attrs.size
        entry.st_blksize = attrs.blksize
        entry.st_blocks = attrs.blocks
        entry.st_atime_ns = attrs.mtime_ns
        entry.st_ctime_ns = attrs.mtime_ns
        entry.st_mtime_ns = attrs.mtime_ns
        return entry

    # -- names ----------------------------------------------------------------------------

    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        try:
            return self._entry(await self.fs.lookup(parent_inode, name))
        except FsError as exc:
            if exc.errno == errno.ENOENT:
                negative = pyfuse3.EntryAttributes()
                negative.st_ino = pyfuse3.InodeT(0)
                negative.entry_timeout = self.attr_timeout
                return negative
            raise _fail("lookup", exc) from None
        except Exception as exc:
            raise _fail("lookup", exc) from None

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for inode, count in inode_list:
            try:
                self.fs.forget(inode, count)
            except Exception:  # forget must never raise
                log.exception("forget of inode %d failed", inode)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        try:
            return self._entry(await self.fs.getattr(inode))
        except Exception as exc:
            raise _fail("getattr", exc) from None

    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        try:
            attrs = await self.fs.setattr(
                inode,
                size=attr.st_size if fields.update_size else None,
                mode=attr.st_mode if fields.update_mode else None,
                uid=attr.st_uid if fields.update_uid else None,
                gid=attr.st_gid if fields.update_gid else None,
                mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            )
            return self._entry(attrs)
        except Exception as exc:
            raise _fail("setattr", exc) from None

    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        try:
            return await self.fs.readlink(inode)
        except Exception as exc:
            raise _fail("readlink", exc) from None

    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise _fail("mknod", FsError(errno.EPERM, "device files and FIFOs cannot live on B2"))

    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        try:
            return self._entry(await self.fs.mkdir(parent_inode, name, mode & ~ctx.umask))
        except Exception as exc:
            raise _fail("mkdir", exc) from None

    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        try:
            await self.fs.unlink(parent_inode, name)
        except Exception as exc:
            raise _fail("unlink", exc) from None

    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        try:
            await self.fs.rmdir(parent_inode, name)
        except Exception as exc:
            raise _fail("rmdir", exc) from None

    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        try:
            return self._entry(await self.fs.symlink(parent_inode, name, target))
        except Exception as exc:
            raise _fail("symlink", exc) from None

    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        try:
            await self.fs.rename(parent_inode_old, name_old, parent_inode_new, name_new, flags)
        except Exception as exc:
            raise _fail("rename", exc) from None

    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        try:
            return self._entry(await self.fs.link(inode, new_parent_inode, new_name))
        except Exception as exc:
            raise _fail("link", exc) from None

    # -- files ----------------------------------------------------------------------------

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        try:
            fh, keep_cache = await self.fs.open(inode, flags)
        except Exception as exc:
            raise _fail("open", exc) from None
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh), keep_cache=keep_cache)

    async def create(
        self,
        parent_inode: int,
        name: bytes,
        mode: int,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        try:
            fh, attrs = await self.fs.create(
                parent_inode, name, mode & ~ctx.umask, flags, ctx.uid, ctx.gid
            )
        except Exception as exc:
            raise _fail("create", exc) from None
        return pyfuse3.FileInfo(fh=pyfuse3.FileHandleT(fh)), self._entry(attrs)

    # pyfuse3 declares bytes, and takes any contiguous buffer (PyObject_GetBuffer): a slice
    # of a cached block goes to the kernel without a copy.
    async def read(self, fh: int, off: int, size: int) -> bytes | memoryview:  # type: ignore[override]
        try:
            return await self.fs.read(fh, off, size)
        except Exception as exc:
            raise _fail("read", exc) from None

    async def write(self, fh: int, off: int, buf: bytes) -> int:
        try:
            return await self.fs.write(fh, off, buf)
        except Exception as exc:
            raise _fail("write", exc) from None

    async def flush(self, fh: int) -> None:
        try:
            await self.fs.flush(fh)
        except Exception as exc:
            raise _fail("flush", exc) from None

    async def release(self, fh: int) -> None:
        try:
            await self.fs.release(fh)
        except Exception as exc:
            raise _fail("release", exc) from None

    async def fsync(self, fh: int, datasync: bool) -> None:
        try:
            await self.fs.fsync(fh)
        except Exception as exc:
            raise _fail("fsync", exc) from None

    # -- directories ----------------------------------------------------------------------

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        try:
            return pyfuse3.FileHandleT(await self.fs.opendir(inode))
        except Exception as exc:
            raise _fail("opendir", exc) from None

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        while True:  # batches until the kernel's buffer is full or the directory ends
            try:
                entries = await self.fs.readdir(fh, start_id, READDIR_BATCH)
            except Exception as exc:
                raise _fail("readdir", exc) from None
            for name, attrs, next_id in entries:
                if not pyfuse3.readdir_reply(
                    token, pyfuse3.FileNameT(name), self._entry(attrs), next_id
                ):
                    return
                self.fs.remember(attrs.ino)
            if len(entries) < READDIR_BATCH:
                return
            start_id = entries[-1][2]

    async def releasedir(self, fh: int) -> None:
        await self.fs.releasedir(fh)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # directory changes are made on B2 (or journalled) before they return

    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        data = pyfuse3.StatvfsData()
        for key, value in self.fs.statfs().items():
            setattr(data, key, value)
        return data

    # -- extended attributes --------------------------------------------------------------

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if not name.startswith(_XATTR_PREFIX):
            # Not one of b2fs's names: answered here, without the core or the error machinery
            # (the kernel asks for security.capability before every write).
            raise pyfuse3.FUSEError(absent_xattr_errno(name))
        try:
            return await self.fs.getxattr(inode, name)
        except Exception as exc:
            raise _fail("getxattr", exc) from None

    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Any:
        try:
            return [pyfuse3.XAttrNameT(n) for n in await self.fs.listxattr(inode)]
        except Exception as exc:
            raise _fail("listxattr", exc) from None

    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        try:
            await self.fs.setxattr(inode, name, value)
        except Exception as exc:
            raise _fail("setxattr", exc) from None

    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        try:
            await self.fs.removexattr(inode, name)
        except Exception as exc:
            raise _fail("removexattr", exc) from None
