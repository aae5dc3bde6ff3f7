"""Names: from the kernel's bytes to B2 file names, and which B2 names can be shown as files.

A path component arrives from the kernel as bytes. B2 names are UTF-8, so a component that is
not valid UTF-8 is refused (EINVAL), as is one that B2 itself would refuse (control characters,
DEL: B2's rules live in ``b2fs.b2.validation``, the one place that knows them). A full name over
B2's 1024-byte limit is ENAMETOOLONG. All of this happens before anything is staged or sent.

The other direction: B2 names may contain things a directory tree cannot show: an empty
component ("a//b"), "." or "..", or a trailing "/". Such names are skipped, with one warning
per name (``skip_warning``), and stay untouched on B2.
"""

from __future__ import annotations

import errno
import logging

from b2fs.b2 import validation
from b2fs.b2.errors import B2InvalidInput
from b2fs.fs.errors import FsError

log = logging.getLogger(__name__)

MARKER = ".bzEmpty"  # an empty directory's placeholder object (Backblaze web console's convention)

_warned: set[str] = set()


def decode_component(raw: bytes) -> str:
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FsError(errno.EINVAL, f"name {raw!r} is not UTF-8, which B2 requires") from None
    if name in ("", ".", "..") or "/" in name:
        raise FsError(errno.EINVAL, f"{name!r} is not a usable name")
    return name


def check_b2_name(full_name: str) -> None:
    """Refuse a B2 file name B2 would refuse: ENAMETOOLONG past 1024 bytes, else EINVAL."""
    if len(full_name.encode("utf-8", "surrogatepass")) > validation.MAX_FILE_NAME_BYTES:
        raise FsError(
            errno.ENAMETOOLONG,
            f"the B2 name would be longer than {validation.MAX_FILE_NAME_BYTES} bytes",
        )
    try:
        validation.check_file_name(full_name)
    except B2InvalidInput as exc:
        raise FsError(errno.EINVAL, exc.message) from None


_UNSHOWABLE = frozenset(("", ".", ".."))


def is_showable(component: str) -> bool:
    return component not in _UNSHOWABLE


def all_showable(components: list[str]) -> bool:
    return _UNSHOWABLE.isdisjoint(components)


def skip_warning(full_name: str, why: str) -> None:
    """Warn once per name that a B2 name cannot be shown in the tree."""
    if full_name in _warned:
        return
    _warned.add(full_name)
    log.warning("skipping B2 name %r: %s; it stays on B2 untouched", full_name, why)
