"""Checks that refuse bad input before any request is sent (B2-API.md §5, §6, §10).

Design
------
Each ``check_*`` function either returns the normalised value or raises
:class:`~b2fs.b2.errors.B2InvalidInput` with a message that names the problem (and the
offending value when it is not secret: file names are shown, shortened). The rules are B2's
*documented* server rules, not stricter ones: a name the service accepts must not be refused
here (the old "no leading slash" and "no ``//``" rules are no longer on the Files page, so
they are not enforced). Bucket names are checked strictly only when a bucket is created;
elsewhere a name only has to be usable in a URL, so that buckets made by other tools stay
reachable.

Limits: file names 1..1024 UTF-8 bytes without control characters or DEL; at most 10
file-info entries with keys of at most 50 bytes from B2's character set, and the name plus
info headers within 7000 bytes; part numbers 1..10000.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from b2fs.b2 import encoding
from b2fs.b2.errors import B2InvalidInput

MAX_FILE_NAME_BYTES = 1024
MAX_FILE_INFO_ENTRIES = 10
MAX_FILE_INFO_KEY_BYTES = 50
HEADER_BUDGET_BYTES = 7000
MIN_PART_NUMBER = 1
MAX_PART_NUMBER = 10_000
MAX_BUCKET_INFO_ENTRIES = 10
MAX_KEY_VALID_DURATION = 86_400_000
MAX_DOWNLOAD_AUTH_DURATION = 604_800
SETTABLE_BUCKET_TYPES = frozenset({"allPublic", "allPrivate"})
RESERVED_INFO_KEYS = frozenset(
    {
        "b2-content-disposition",
        "b2-content-language",
        "b2-expires",
        "b2-cache-control",
        "b2-content-encoding",
    }
)

_BUCKET_NAME = re.compile(r"[A-Za-z0-9-]{6,63}")
_INFO_KEY = re.compile(r"[A-Za-z0-9\-_.`~!#$%^&*'|+]+")
_KEY_NAME = re.compile(r"[A-Za-z0-9-]{1,100}")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_HEADER_TEXT = re.compile(r"[\x20-\x7e]+")


def _show(name: str, limit: int = 60) -> str:
    """A printable, bounded rendering of a user-supplied string for an error message."""
    text = name if len(name) <= limit else name[:limit] + "..."
    return repr(text)


def check_bucket_name_for_create(name: object, endpoint: str = "") -> str:
    """A new bucket's name: 6..63 letters, digits and '-', not starting with 'b2-'."""
    if not isinstance(name, str):
        raise B2InvalidInput(f"bucket name must be a string, not {type(name).__name__}", endpoint)
    if not 6 <= len(name) <= 63:
        raise B2InvalidInput(
            f"bucket name {_show(name)} must be 6 to 63 characters long (has {len(name)})",
            endpoint,
        )
    if not _BUCKET_NAME.fullmatch(name):
        raise B2InvalidInput(
            f"bucket name {_show(name)} may only contain letters, digits and '-'", endpoint
        )
    if name.lower().startswith("b2-"):
        raise B2InvalidInput(
            f"bucket name {_show(name)} must not start with 'b2-' (reserved)", endpoint
        )
    return name


def check_bucket_name(name: object, endpoint: str = "") -> str:
    """An existing bucket's name, as used in lookups and ``/file/<bucket>/...`` URLs."""
    if not isinstance(name, str):
        raise B2InvalidInput(f"bucket name must be a string, not {type(name).__name__}", endpoint)
    if not name:
        raise B2InvalidInput("bucket name must not be empty", endpoint)
    if len(name) > 63 or not re.fullmatch(r"[A-Za-z0-9.\-_]+", name):
        raise B2InvalidInput(f"{_show(name)} is not a valid bucket name", endpoint)
    return name


def check_bucket_type(bucket_type: object, endpoint: str = "") -> str:
    if bucket_type not in SETTABLE_BUCKET_TYPES:
        raise B2InvalidInput(
            f"bucket type must be 'allPublic' or 'allPrivate', not {bucket_type!r}", endpoint
        )
    assert isinstance(bucket_type, str)
    return bucket_type


def check_file_name(name: object, endpoint: str = "") -> str:
    """A file name: non-empty, at most 1024 UTF-8 bytes, no control characters and no DEL."""
    if not isinstance(name, str):
        raise B2InvalidInput(f"file name must be a string, not {type(name).__name__}", endpoint)
    if not name:
        raise B2InvalidInput("file name must not be empty", endpoint)
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        raise B2InvalidInput(
            f"file name {_show(name)} is not valid Unicode (it contains a lone surrogate)",
            endpoint,
        ) from None
    if size > MAX_FILE_NAME_BYTES:
        raise B2InvalidInput(
            f"file name {_show(name)} is {size} bytes in UTF-8; the limit is {MAX_FILE_NAME_BYTES}",
            endpoint,
        )
    for index, char in enumerate(name):
        code = ord(char)
        if code < 32 or code == 127:
            what = "DEL" if code == 127 else "a control character"
            raise B2InvalidInput(
                f"file name {_show(name)} contains {what} (U+{code:04X}) at position {index}",
                endpoint,
            )
    return name


def check_file_info(info: Mapping[str, str] | None, endpoint: str = "") -> dict[str, str]:
    """File info (custom metadata): at most 10 entries, keys per B2's rules, string values.

    Returns a new dict with the keys lower-cased (as B2 stores them).
    """
    if info is None:
        return {}
    if not isinstance(info, Mapping):
        raise B2InvalidInput(f"file info must be a mapping, not {type(info).__name__}", endpoint)
    if len(info) > MAX_FILE_INFO_ENTRIES:
        raise B2InvalidInput(
            f"file info has {len(info)} entries; B2 allows at most {MAX_FILE_INFO_ENTRIES}",
            endpoint,
        )
    result: dict[str, str] = {}
    for key, value in info.items():
        if not isinstance(key, str):
            raise B2InvalidInput(
                f"file info key {key!r} must be a string, not {type(key).__name__}", endpoint
            )
        if not key:
            raise B2InvalidInput("file info key must not be empty", endpoint)
        if len(key.encode("utf-8", "surrogatepass")) > MAX_FILE_INFO_KEY_BYTES:
            raise B2InvalidInput(
                f"file info key {_show(key)} is longer than {MAX_FILE_INFO_KEY_BYTES} bytes",
                endpoint,
            )
        if not _INFO_KEY.fullmatch(key):
            raise B2InvalidInput(
                f"file info key {_show(key)} may only contain letters, digits and "
                "- _ . ` ~ ! # $ % ^ & * ' | +",
                endpoint,
            )
        lower = key.lower()
        if lower.startswith("b2-") and lower not in RESERVED_INFO_KEYS:
            raise B2InvalidInput(
                f"file info key {_show(key)} starts with the reserved 'b2-' but is not one of "
                f"{', '.join(sorted(RESERVED_INFO_KEYS))}",
                endpoint,
            )
        if lower in result:
            raise B2InvalidInput(
                f"file info key {_show(key)} appears twice (keys are case-insensitive)", endpoint
            )
        if not isinstance(value, str):
            raise B2InvalidInput(
                f"file info value of {_show(key)} must be a string, not {type(value).__name__}",
                endpoint,
            )
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise B2InvalidInput(
                f"file info value of {_show(key)} is not valid Unicode", endpoint
            ) from None
        result[lower] = value
    return result


def header_size(file_name: str, info: Mapping[str, str]) -> int:
    """Bytes the name and info take as upload headers (``name: value`` lines, encoded)."""
    total = len("X-Bz-File-Name: \r\n") + len(encoding.encode(file_name))
    for key, value in info.items():
        total += len(f"X-Bz-Info-{key}: \r\n") + len(encoding.encode(value))
    return total


def check_header_budget(
    file_name: str, info: Mapping[str, str], endpoint: str = "", limit: int = HEADER_BUDGET_BYTES
) -> None:
    size = header_size(file_name, info)
    if size > limit:
        raise B2InvalidInput(
            f"file name and file info take {size} bytes as headers; B2 allows {limit}", endpoint
        )


def check_part_number(part_number: object, endpoint: str = "") -> int:
    if isinstance(part_number, bool) or not isinstance(part_number, int):
        raise B2InvalidInput(
            f"part number must be an integer, not {type(part_number).__name__}", endpoint
        )
    if not MIN_PART_NUMBER <= part_number <= MAX_PART_NUMBER:
        raise B2InvalidInput(
            f"part number {part_number} is outside {MIN_PART_NUMBER}..{MAX_PART_NUMBER}",
            endpoint,
        )
    return part_number


def check_int_range(value: object, low: int, high: int, what: str, endpoint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise B2InvalidInput(f"{what} must be an integer, not {type(value).__name__}", endpoint)
    if not low <= value <= high:
        raise B2InvalidInput(f"{what} {value} is outside {low}..{high}", endpoint)
    return value


def check_id(value: object, what: str, endpoint: str = "") -> str:
    """A B2 identifier (file id, bucket id, key id): a non-empty string of printable ASCII."""
    if not isinstance(value, str):
        raise B2InvalidInput(f"{what} must be a string, not {type(value).__name__}", endpoint)
    if not value or not _HEADER_TEXT.fullmatch(value) or len(value) > 1000:
        raise B2InvalidInput(f"{what} {_show(value)} is not a valid identifier", endpoint)
    return value


def check_sha1(value: object, what: str = "SHA1", endpoint: str = "") -> str:
    if not isinstance(value, str) or not _SHA1.fullmatch(value):
        raise B2InvalidInput(f"{what} must be 40 hexadecimal digits, not {value!r}", endpoint)
    return value.lower()


def check_content_type(value: object, endpoint: str = "") -> str:
    if not isinstance(value, str) or not _HEADER_TEXT.fullmatch(value) or len(value) > 1000:
        raise B2InvalidInput(
            f"content type must be printable ASCII without line breaks, not {value!r}", endpoint
        )
    return value


def check_millis(value: object, what: str, endpoint: str = "") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise B2InvalidInput(f"{what} must be a non-negative integer (ms), not {value!r}", endpoint)
    return value


def check_range(offset: object, length: object, endpoint: str = "") -> tuple[int, int | None]:
    """A byte range given as ``offset`` (>= 0) and ``length`` (>= 0 or None for 'to the end')."""
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise B2InvalidInput(f"offset must be a non-negative integer, not {offset!r}", endpoint)
    if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
        raise B2InvalidInput(f"length must be an integer or None, not {length!r}", endpoint)
    if length is not None and length < 0:
        raise B2InvalidInput(f"length must not be negative ({length})", endpoint)
    return offset, length


def check_key_name(name: object, endpoint: str = "") -> str:
    if not isinstance(name, str) or not _KEY_NAME.fullmatch(name):
        raise B2InvalidInput(f"key name {name!r} must be 1 to 100 letters, digits or '-'", endpoint)
    return name


def check_capabilities(capabilities: Iterable[str], endpoint: str = "") -> list[str]:
    if isinstance(capabilities, str):
        raise B2InvalidInput("capabilities must be a list of strings, not one string", endpoint)
    caps = list(capabilities)
    if not caps:
        raise B2InvalidInput("a key needs at least one capability", endpoint)
    for cap in caps:
        if not isinstance(cap, str) or not re.fullmatch(r"[A-Za-z]+", cap):
            raise B2InvalidInput(f"{cap!r} is not a capability name", endpoint)
    return caps


def check_bucket_info(info: Mapping[str, str] | None, endpoint: str = "") -> dict[str, str] | None:
    if info is None:
        return None
    if not isinstance(info, Mapping):
        raise B2InvalidInput(f"bucket info must be a mapping, not {type(info).__name__}", endpoint)
    if len(info) > MAX_BUCKET_INFO_ENTRIES:
        raise B2InvalidInput(
            f"bucket info has {len(info)} entries; B2 allows at most {MAX_BUCKET_INFO_ENTRIES}",
            endpoint,
        )
    for key, value in info.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise B2InvalidInput("bucket info must map non-empty strings to strings", endpoint)
    return dict(info)
