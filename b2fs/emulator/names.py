"""Name, file-info and percent-encoding rules (B2-API.md §5), in one place.

Validators raise :class:`B2Error` (``400 bad_request``) with a descriptive message. File names
follow the current lenient server rules by default (1..1024 UTF-8 bytes, no control characters,
no DEL); ``strict=True`` adds the older rules that b2sdk still checks client-side. Percent
decoding treats ``+`` as space; encoding for response headers writes ``%20`` and ``%2B`` so
that both ``unquote_plus`` and ``decodeURIComponent`` clients round-trip.
"""

from __future__ import annotations

import email.utils
import mimetypes
import re
from urllib.parse import quote, unquote_plus

from .errors import bad_request

MAX_FILE_NAME_BYTES = 1024
MAX_INFO_ITEMS = 10
MAX_INFO_KEY_BYTES = 50
HEADER_BUDGET = 7000
HEADER_BUDGET_ADVANCED = 2048

_INFO_KEY_RE = re.compile(r"^[A-Za-z0-9\-_.`~!#$%^&*'|+]+$")
_BUCKET_NAME_RE = re.compile(r"^[A-Za-z0-9-]{6,63}$")
_KEY_NAME_RE = re.compile(r"^[A-Za-z0-9-]{1,100}$")
_HEX40_RE = re.compile(r"^[0-9a-fA-F]{40}$")
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
# Characters B2 never needs encoded (string_encoding test vectors), besides alphanumerics.
_SAFE = "-._~!$'()*;=:@/"

# file-info names with a meaning: emitted as real headers on download.
B2_HEADER_INFO = {
    "b2-content-disposition": "Content-Disposition",
    "b2-content-language": "Content-Language",
    "b2-expires": "Expires",
    "b2-cache-control": "Cache-Control",
    "b2-content-encoding": "Content-Encoding",
}


def is_hex40(value: str) -> bool:
    return bool(_HEX40_RE.match(value))


def percent_decode(value: str, what: str) -> str:
    """Decode a header/path/query value (``+`` is a space); invalid UTF-8 is a 400."""
    try:
        return unquote_plus(value, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise bad_request(f"{what} is not valid percent-encoded UTF-8") from None


def percent_encode(value: str) -> str:
    """Encode for a response header or URL path: ``%20`` for space, ``%2B`` for plus."""
    return quote(value.encode("utf-8"), safe=_SAFE)


def utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(f"{what} is not valid UTF-8") from None


def check_file_name(name: str, *, strict: bool = False) -> str:
    raw = utf8(name, "File name")
    if not raw:
        raise bad_request("File names must contain at least one character")
    if len(raw) > MAX_FILE_NAME_BYTES:
        raise bad_request(f"File names in UTF8 must be no more than {MAX_FILE_NAME_BYTES} bytes")
    for ch in name:
        if ord(ch) < 32:
            raise bad_request(f"File names must not contain characters below 32 (found {ord(ch)})")
        if ch == "\x7f":
            raise bad_request("File names must not contain DEL")
    if strict:
        if name.startswith("/") or name.endswith("/"):
            raise bad_request("File names must not start or end with '/'")
        if "//" in name:
            raise bad_request("File names must not contain '//'")
        if "\\" in name:
            raise bad_request("File names must not contain '\\'")
        if any(len(seg.encode("utf-8")) > 250 for seg in name.split("/")):
            raise bad_request("File name segments must be no more than 250 bytes")
    return name


def check_bucket_name(name: str) -> str:
    if not _BUCKET_NAME_RE.match(name):
        raise bad_request("Bucket name must be 6 to 63 characters: letters, digits and '-' only")
    if name.lower().startswith("b2-"):
        raise bad_request("Bucket names starting with 'b2-' are reserved")
    return name


def check_key_name(name: str) -> str:
    if not _KEY_NAME_RE.match(name):
        raise bad_request("keyName must be 1 to 100 characters: letters, digits and '-' only")
    return name


def check_header_value(key: str, value: str) -> None:
    """Values that become real response headers: printable ASCII only (RFC 6266 and 2616
    extended values are percent-encoded ASCII too)."""
    if not value or any(not 32 <= ord(c) <= 126 for c in value):
        raise bad_request(f"Invalid value for {key}: printable ASCII only")


def _check_b2_info_value(key: str, value: str) -> None:
    check_header_value(key, value)
    if key == "b2-expires":
        try:
            email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise bad_request(f"Invalid value for {key}: not an HTTP date") from None
    elif key == "b2-content-disposition":
        disposition_type = value.split(";", 1)[0].strip()
        if not _TOKEN_RE.match(disposition_type):
            raise bad_request(f"Invalid value for {key}")
        if "*0" in value:  # RFC 2231 parameter continuations are not accepted
            raise bad_request(f"Invalid value for {key}: parameter continuations")


def check_file_info(info: object) -> dict[str, str]:
    """Validate a fileInfo map; returns it with keys lower-cased."""
    if info is None:
        return {}
    if not isinstance(info, dict):
        raise bad_request("fileInfo must be an object")
    if len(info) > MAX_INFO_ITEMS:
        raise bad_request(f"Too many file info entries: at most {MAX_INFO_ITEMS}")
    out: dict[str, str] = {}
    for key, value in info.items():
        if not isinstance(value, str):
            raise bad_request(f"fileInfo value for {key} must be a string")
        k = check_info_key(key)
        utf8(value, f"fileInfo value for {key}")
        if k.startswith("b2-"):
            _check_b2_info_value(k, value)
        out[k] = value
    return out


def check_info_key(key: str) -> str:
    if len(utf8(key, "fileInfo name")) > MAX_INFO_KEY_BYTES or not _INFO_KEY_RE.match(key):
        raise bad_request(f"Invalid fileInfo name: {key}")
    k = key.lower()
    if k.startswith("b2-") and k not in B2_HEADER_INFO:
        raise bad_request(f"Unknown b2- fileInfo name: {key}")
    return k


def check_header_budget(name: str, info: dict[str, str], advanced: bool) -> None:
    """File name plus file info must fit B2's header budget (7000, or 2048 with SSE/lock)."""
    size = len(name.encode("utf-8")) + sum(
        len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in info.items()
    )
    limit = HEADER_BUDGET_ADVANCED if advanced else HEADER_BUDGET
    if size > limit:
        raise bad_request(f"File name and file info are too large: {size} bytes, limit {limit}")


def http_date(epoch_seconds: float) -> str:
    return email.utils.formatdate(epoch_seconds, usegmt=True)


def resolve_content_type(value: str, file_name: str) -> str:
    """``b2/x-auto`` becomes the type for the name's extension (octet-stream if unknown)."""
    if value == "b2/x-auto":
        guessed, _ = mimetypes.guess_type(file_name, strict=False)
        return guessed or "application/octet-stream"
    if not value or any(ord(c) < 32 or ord(c) > 126 for c in value) or "/" not in value:
        raise bad_request(f"Invalid content type: {value!r}")
    return value
