"""Filesystem errors and the one table that maps every failure to an errno and a log level.

The core raises :class:`FsError` for what it decides itself (ENOENT from a lookup, ENOTEMPTY,
EROFS...). Failures from below (B2 errors from the client, OSError from the cache disk) are
turned into an FsError by :func:`to_fs_error`, through ``_B2_TABLE``; nothing else in b2fs
chooses an errno for them. fuse_ops raises the errno to the kernel and logs at the level given
here: an ENOENT from a lookup is routine (DEBUG), a refused key is not (ERROR).
"""

from __future__ import annotations

import errno
import logging

from b2fs.b2 import errors as b2e


class FsError(Exception):
    def __init__(self, errno_: int, message: str = "", level: int = logging.DEBUG) -> None:
        super().__init__(errno_, message)
        self.errno = errno_
        self.message = message or errno.errorcode.get(errno_, str(errno_))
        self.level = level

    def __str__(self) -> str:
        return f"{errno.errorcode.get(self.errno, self.errno)}: {self.message}"


# B2 error class -> (errno, log level). Looked up along the class's MRO, most specific first.
_B2_TABLE: dict[type[b2e.B2Error], tuple[int, int]] = {
    b2e.B2NotFound: (errno.ENOENT, logging.DEBUG),
    b2e.B2AlreadyHidden: (errno.ENOENT, logging.DEBUG),
    b2e.B2DuplicateBucketName: (errno.EEXIST, logging.INFO),
    b2e.B2BucketNotEmpty: (errno.ENOTEMPTY, logging.DEBUG),
    b2e.B2AccessDenied: (errno.EACCES, logging.WARNING),
    b2e.B2BadCredentials: (errno.EACCES, logging.ERROR),
    b2e.B2AuthTokenError: (errno.EACCES, logging.ERROR),
    b2e.B2CapExceeded: (errno.EDQUOT, logging.ERROR),
    b2e.B2InvalidInput: (errno.EINVAL, logging.INFO),
    b2e.B2RangeNotSatisfiable: (errno.EIO, logging.ERROR),
    b2e.B2ChecksumMismatch: (errno.EIO, logging.ERROR),
    # Retryable failures reach the filesystem only once the retry budget is spent.
    b2e.B2ServiceError: (errno.EIO, logging.WARNING),
    b2e.B2TooManyRequests: (errno.EIO, logging.WARNING),
    b2e.B2RequestTimeout: (errno.EIO, logging.WARNING),
    b2e.B2ConnectionError: (errno.EIO, logging.WARNING),
    b2e.B2Error: (errno.EIO, logging.ERROR),
}

# Local disk errors (the cache directory) keep their errno; these get a louder log level.
_OS_LEVELS = {errno.ENOSPC: logging.WARNING, errno.EDQUOT: logging.WARNING}


def first_error(exc: BaseException) -> BaseException:
    """The exception that decides, for one raised by calls made at once (a trio nursery's
    exception group): its first real failure, not "Exceptions from Trio nursery"."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def to_fs_error(exc: BaseException) -> FsError:
    """The FsError for any exception raised while serving a request."""
    exc = first_error(exc)
    if isinstance(exc, FsError):
        return exc
    if isinstance(exc, b2e.B2Error):
        for cls in type(exc).__mro__:
            if cls in _B2_TABLE:
                number, level = _B2_TABLE[cls]
                return FsError(number, str(exc), level)
    if isinstance(exc, OSError) and exc.errno:
        return FsError(exc.errno, str(exc), _OS_LEVELS.get(exc.errno, logging.ERROR))
    return FsError(errno.EIO, f"{type(exc).__name__}: {exc}", logging.ERROR)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth trying again later (B2 outage, network, rate limit)."""
    return isinstance(exc, b2e.B2Error) and exc.retryable
