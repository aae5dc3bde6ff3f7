"""Downloads by id and by name, GET and HEAD, with ranges (§6.11, §6.12, §8).

Authorization: none needed for ``allPublic`` buckets; otherwise an account token with
``readFiles`` (bucket and prefix restrictions apply) or a download-authorization token whose
bucket and name prefix cover the file, from the ``Authorization`` header or query parameter.
Override parameters (``b2ContentDisposition`` ...) replace the matching response headers; a
download-authorization token bound to such a value requires the request to carry it.

Ranges: one ``bytes=a-b``/``bytes=a-``/``bytes=-n`` range. A satisfiable range that covers
the whole file is answered ``200`` without ``Content-Range`` (as b2sdk observed the service
doing); a partial one ``206``; a start beyond the end ``416`` with a JSON body. Content goes
out with ``os.sendfile`` straight from the blob files.
"""

from __future__ import annotations

import os
import re

from ..call import Call
from ..content import ranges, segments
from ..errors import B2Error, bad_request, missing_auth_token, not_found, unauthorized
from ..models import Bucket, FileVersion
from ..names import B2_HEADER_INFO, check_header_value, percent_decode, percent_encode
from ..protection import check_sse_c_access, presented_key_md5_from_headers, retention_active
from .keys import OVERRIDE_PARAMS
from .registry import operation

_RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")
_OVERRIDE_HEADERS = {
    "b2ContentDisposition": "Content-Disposition",
    "b2ContentLanguage": "Content-Language",
    "b2Expires": "Expires",
    "b2CacheControl": "Cache-Control",
    "b2ContentEncoding": "Content-Encoding",
    "b2ContentType": "Content-Type",
}


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive range asked for, None to send everything; 416 if unsatisfiable."""
    if value is None:
        return None
    m = _RANGE_RE.match(value.strip())
    if not m or (not m[1] and not m[2]):
        return None  # not a single byte range: ignored, as HTTP allows
    if not m[1]:
        n = int(m[2])
        if n == 0 or size == 0:
            raise _unsatisfiable(value, size)
        return max(0, size - n), size - 1
    start = int(m[1])
    if start >= size:
        raise _unsatisfiable(value, size)
    end = int(m[2]) if m[2] else size - 1
    if end < start:
        return None  # syntactically invalid (last < first): ignored, as HTTP says
    return start, min(end, size - 1)


def _unsatisfiable(value: str, size: int) -> B2Error:
    return B2Error(
        416,
        "range_not_satisfiable",
        f"The range {value} is not satisfiable for a file of {size} bytes",
        {"Content-Range": f"bytes */{size}"},
    )


def _overrides(call: Call) -> dict[str, str]:
    out = {}
    for name in OVERRIDE_PARAMS:
        value = call.params.raw(name)
        if value is not None:
            if not isinstance(value, str):
                raise bad_request(f"{name} must be a string")
            check_header_value(name, value)
            out[name] = value
    return out


def _authorize(call: Call, bucket: Bucket, name: str, overrides: dict[str, str]) -> bool:
    """Checks the caller may read ``name``; returns whether it may read retention headers."""
    token = call.header("Authorization")
    if not token:
        query_token = call.params.raw("Authorization")
        token = query_token if isinstance(query_token, str) else None
    if not token:
        if bucket.type == "allPublic":
            return False
        raise missing_auth_token()
    who = call.app.auth.resolve(token, kinds=("account", "download"))
    if bucket.type == "allPublic":
        return who.token.kind == "account" and who.has("readFileRetentions")
    if who.token.kind == "download":
        data = who.data
        if data.get("bucketId") != bucket.bucket_id or not name.startswith(data.get("prefix", "")):
            raise unauthorized("download authorization does not cover this file")
        for param, value in (data.get("overrides") or {}).items():
            if overrides.get(param) != value:
                raise unauthorized(f"download authorization requires {param}={value}")
        return False
    who.require("readFiles")
    who.check_bucket(bucket.bucket_id)
    who.check_name(name)
    return who.has("readFileRetentions")


def _headers(
    f: FileVersion, bucket: Bucket, overrides: dict[str, str], can_read_lock: bool
) -> list[tuple[str, str]]:
    h: list[tuple[str, str]] = [
        ("Content-Type", f.content_type or "application/octet-stream"),
        ("X-Bz-File-Id", f.file_id),
        ("X-Bz-File-Name", percent_encode(f.name)),
        ("X-Bz-Content-Sha1", f.sha1 or "none"),
        ("X-Bz-Upload-Timestamp", str(f.ts)),
        ("Accept-Ranges", "bytes"),
    ]
    real: dict[str, str] = {}
    bucket_cache = bucket.info.get("Cache-Control", "")
    if bucket_cache and all(32 <= ord(c) <= 126 for c in bucket_cache):
        real["Cache-Control"] = bucket_cache
    for key, value in sorted(f.info.items()):
        if key in B2_HEADER_INFO:
            real[B2_HEADER_INFO[key]] = value
        else:
            h.append((f"X-Bz-Info-{key}", percent_encode(value)))
    for param, value in overrides.items():
        real[_OVERRIDE_HEADERS[param]] = value
    if "Content-Type" in real:
        h[0] = ("Content-Type", real.pop("Content-Type"))
    h.extend(sorted(real.items()))
    sse = f.sse or {}
    if sse.get("mode") == "SSE-B2":
        h.append(("X-Bz-Server-Side-Encryption", "AES256"))
    elif sse.get("mode") == "SSE-C":
        h.append(("X-Bz-Server-Side-Encryption-Customer-Algorithm", "AES256"))
        h.append(("X-Bz-Server-Side-Encryption-Customer-Key-Md5", sse.get("customerKeyMd5", "")))
    if bucket.file_lock:
        if can_read_lock:
            if retention_active(f) and f.retention:
                h.append(("X-Bz-File-Retention-Mode", f.retention["mode"]))
                h.append(
                    (
                        "X-Bz-File-Retention-Retain-Until-Timestamp",
                        str(f.retention["retainUntilTimestamp"]),
                    )
                )
            if f.legal_hold:
                h.append(("X-Bz-File-Legal-Hold", f.legal_hold))
        else:
            h.append(
                (
                    "X-Bz-Client-Unauthorized-To-Read",
                    "X-Bz-File-Retention-Mode,X-Bz-File-Retention-Retain-Until-Timestamp,"
                    "X-Bz-File-Legal-Hold",
                )
            )
    return h


def _serve(call: Call, f: FileVersion, bucket: Bucket) -> None:
    overrides = _overrides(call)
    can_read_lock = _authorize(call, bucket, f.name, overrides)
    if f.action != "upload":
        raise not_found(f"File not present: {f.name}")
    check_sse_c_access(f.sse, presented_key_md5_from_headers(call.headers))

    segs = segments(call.app.store, f)
    wanted = parse_range(call.header("Range"), f.length)
    if wanted is None or wanted == (0, f.length - 1):
        start, end, status = 0, f.length - 1, 200
    else:
        start, end, status = wanted[0], wanted[1], 206
    pieces = list(ranges(segs, start, end))
    if not all(os.path.exists(path) for path, _, _ in pieces):
        raise not_found(f"File not present: {f.name}")  # deleted while we looked it up
    headers = _headers(f, bucket, overrides, can_read_lock)
    headers.append(("Content-Length", str(end - start + 1)))
    if status == 206:
        headers.append(("Content-Range", f"bytes {start}-{end}/{f.length}"))
    call.conn.start_response(status, headers)
    if call.method == "HEAD":
        return
    # Blobs are opened one at a time (a large file may have 10 000 parts). One deleted in the
    # middle of the transfer raises here, and the server drops the connection.
    for path, offset, count in pieces:
        fd = os.open(path, os.O_RDONLY)
        try:
            call.conn.sendfile(fd, offset, count)
        finally:
            os.close(fd)


@operation(
    "b2_download_file_by_id", kind="download", methods=("GET", "HEAD", "POST"), streaming=True
)
def download_file_by_id(call: Call) -> None:
    file_id = call.params.raw("fileId")
    if not isinstance(file_id, str) or not file_id:
        raise bad_request("required field fileId is missing")
    f = call.app.store.get_file(file_id)
    if f is None:
        raise not_found(f"File not present: {file_id}")
    bucket = call.app.store.get_bucket(f.bucket_id)
    if bucket is None:
        raise not_found(f"File not present: {file_id}")
    _serve(call, f, bucket)


@operation("b2_download_file_by_name", kind="download", methods=("GET", "HEAD"), streaming=True)
def download_file_by_name(call: Call) -> None:
    if len(call.path_args) != 2 or not call.path_args[1]:
        raise not_found("unknown path")
    bucket_name = percent_decode(call.path_args[0], "bucket name")
    name = percent_decode(call.path_args[1], "file name")
    bucket = call.app.store.get_bucket_by_name(bucket_name)
    if bucket is None or bucket.name != bucket_name:
        raise not_found(f"Bucket not found: {bucket_name}")
    f = call.app.store.latest_version(bucket.bucket_id, name)
    if f is None or f.action != "upload":
        # Authorization is still checked first, so a missing file does not reveal anything.
        _authorize(call, bucket, name, _overrides(call))
        raise not_found(f"File not present: {name}")
    _serve(call, f, bucket)
