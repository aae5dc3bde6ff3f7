"""b2_upload_file and b2_upload_part: streamed, hashed while streaming, then committed
(§6.7, §6.18, §7).

The body goes through :class:`BlobWriter` (SHA1 + MD5 on the fly, into a temp file) in 1 MiB
chunks, so memory stays flat whatever the size. Only when the body is complete and its SHA1
verified is the blob renamed into place and the row inserted: an upload is all there or not
at all. An upload URL's token serves one upload at a time (``400 auth_token_limit``).
"""

from __future__ import annotations

import json
from typing import Any

from .. import shapes
from ..auth import Principal, now_ms
from ..blobs import BlobWriter
from ..call import Call
from ..errors import B2Error, bad_auth_token, bad_request, not_found
from ..models import FileVersion, Part
from ..names import (
    check_file_info,
    check_file_name,
    check_header_budget,
    check_info_key,
    is_hex40,
    percent_decode,
    resolve_content_type,
)
from ..protection import (
    check_sse_c_access,
    default_retention,
    legal_hold_param,
    presented_key_md5_from_headers,
    retention_param,
    sse_from_headers,
)
from .large import MAX_PARTS, store_part, unfinished
from .registry import operation

# 1 MiB chunks: measured with 8 parallel part uploads, smaller chunks (256 KiB, 64 KiB) cost
# the emulator more CPU per byte (more GIL hand-offs and syscalls per byte).
CHUNK = 1 << 20
FORBIDDEN_HEADERS = (
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Location",
    "Content-Range",
    "Expires",
)


class ClientGone(Exception):
    """The client closed the connection before sending the whole body."""


def _upload_principal(call: Call, kind: str, target_field: str) -> Principal:
    if len(call.path_args) != 2:
        raise not_found("unknown upload URL")
    target, nonce = call.path_args
    who = call.app.auth.resolve(call.header("Authorization"), kinds=(kind,))
    if who.data.get("nonce") != nonce or who.data.get(target_field) != target:
        raise bad_auth_token()
    who.require("writeFiles")
    return who


def _sha1_mode(call: Call, allow_unverified: bool) -> str:
    value = call.header("X-Bz-Content-Sha1")
    if value is None:
        raise bad_request("Missing header: X-Bz-Content-Sha1")
    value = value.strip()
    if value in ("hex_digits_at_end", "do_not_verify") or is_hex40(value):
        if value == "do_not_verify" and not allow_unverified:
            raise bad_request("X-Bz-Content-Sha1: do_not_verify is not accepted here")
        return value.lower() if is_hex40(value) else value
    raise bad_request(f"Invalid X-Bz-Content-Sha1: {value}")


def _content_length(call: Call, sha1_mode: str, limit: int) -> int:
    if call.header("Transfer-Encoding") is not None:
        raise bad_request("chunked transfer encoding is not supported: send Content-Length")
    raw = call.header("Content-Length")
    if raw is None or not raw.strip().isdigit():
        raise bad_request("Missing or invalid header: Content-Length")
    total = int(raw)
    data = total - 40 if sha1_mode == "hex_digits_at_end" else total
    if data < 0:
        raise bad_request("Content-Length is shorter than the 40 trailing SHA1 digits")
    if data > limit:
        raise bad_request(f"Content-Length {data} is more than the maximum {limit}")
    return data


def _receive(call: Call, size: int, sha1_mode: str, writer: BlobWriter) -> str:
    """Stream the body into ``writer``; returns the stored contentSha1 value."""
    buf = bytearray(min(CHUNK, max(size, 1)))
    view = memoryview(buf)
    left = size
    conn = call.conn
    while left:
        n = conn.readinto_body(view[: min(left, len(buf))])
        if n <= 0:
            raise ClientGone()
        writer.write(view[:n])
        left -= n
    computed = writer.sha1.hexdigest()
    if sha1_mode == "hex_digits_at_end":
        trailer = b""
        while len(trailer) < 40:
            chunk = conn.read_body(40 - len(trailer))
            if not chunk:
                raise ClientGone()
            trailer += chunk
        expected = trailer.decode("ascii", "replace").lower()
        if not is_hex40(expected):
            raise bad_request("the last 40 bytes of the body are not a hex SHA1")
    elif sha1_mode == "do_not_verify":
        return f"unverified:{computed}"
    else:
        expected = sha1_mode
    if expected != computed:
        raise bad_request(f"Sha1 did not match data received: expected {expected}, got {computed}")
    return computed


def _info_headers(call: Call) -> dict[str, str]:
    info: dict[str, str] = {}
    for name, value in call.headers.items():
        if name.lower().startswith("x-bz-info-"):
            key = check_info_key(name[len("x-bz-info-") :])
            info[key] = percent_decode(value, name)
    if len(info) > 10:
        raise bad_request("Too many X-Bz-Info-* headers: at most 10")
    return check_file_info(info)  # b2-* values are validated there


def _send(call: Call, doc: dict[str, Any]) -> None:
    body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
    call.conn.start_response(
        200,
        [
            ("Content-Type", "application/json;charset=UTF-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "max-age=0, no-cache, no-store"),
        ],
        body,
    )


@operation("b2_upload_file", kind="upload", methods=("POST",), streaming=True)
def upload_file(call: Call) -> None:
    app = call.app
    who = _upload_principal(call, "upload", "bucketId")
    bucket = app.bucket(call.path_args[0], who)
    sha1_mode = _sha1_mode(call, allow_unverified=True)
    size = _content_length(call, sha1_mode, app.config.max_simple_file_size)
    raw_name = call.header("X-Bz-File-Name")
    if raw_name is None:
        raise bad_request("Missing header: X-Bz-File-Name")
    name = check_file_name(
        percent_decode(raw_name, "X-Bz-File-Name"), strict=app.config.strict_names
    )
    who.check_name(name)
    raw_type = call.header("Content-Type")
    if raw_type is None:
        raise bad_request("Missing header: Content-Type")
    content_type = resolve_content_type(raw_type.strip(), name)
    for forbidden in FORBIDDEN_HEADERS:
        if call.header(forbidden) is not None:
            raise bad_request(f"{forbidden} must not be sent: use X-Bz-Info-b2-* instead")
    info = _info_headers(call)
    sse = sse_from_headers(call.headers, bucket)
    check_header_budget(name, info, advanced=bool(sse.get("mode")) or bucket.file_lock)
    retention = None
    mode = call.header("X-Bz-File-Retention-Mode")
    if mode is not None:
        until = call.header("X-Bz-File-Retention-Retain-Until-Timestamp") or ""
        retention = retention_param(
            {"mode": mode, "retainUntilTimestamp": int(until) if until.isdigit() else None},
            bucket,
            who,
        )
    legal_hold = legal_hold_param(call.header("X-Bz-File-Legal-Hold"), bucket, who)
    custom_ts = call.header("X-Bz-Custom-Upload-Timestamp")
    ts_ms: int | None = None
    if custom_ts is not None:
        if not custom_ts.isdigit() or int(custom_ts) > now_ms():
            raise bad_request("X-Bz-Custom-Upload-Timestamp must be a past time in milliseconds")
        ts_ms = int(custom_ts)
    with app.uploading(who.token.token):
        writer = app.store.blobs.writer()
        try:
            sha1 = _receive(call, size, sha1_mode, writer)
            blob = writer.commit()
        except BaseException:
            writer.abort()
            raise
    file_id, ts, seq = app.new_version(bucket.bucket_id, large=False, ts_ms=ts_ms)
    f = FileVersion(
        file_id=file_id,
        bucket_id=bucket.bucket_id,
        name=name,
        action="upload",
        ts=ts,
        seq=seq,
        length=size,
        sha1=sha1,
        md5=writer.md5.hexdigest(),
        content_type=content_type,
        info=info,
        blob=blob,
        sse=sse,
        retention=retention or default_retention(bucket, ts),
        legal_hold=legal_hold,
    )
    try:
        with app.store.atomic():
            app.bucket(bucket.bucket_id)
            app.store.put_file(f)
    except BaseException:
        app.store.blobs.delete([blob])
        raise
    app.notifier.emit(bucket, "b2:ObjectCreated:Upload", f)
    _send(call, shapes.file(call.version, f, app.account_id, who))


@operation("b2_upload_part", kind="upload", methods=("POST",), streaming=True)
def upload_part(call: Call) -> None:
    app = call.app
    who = _upload_principal(call, "part", "fileId")
    large = unfinished(call, who, call.path_args[0])
    raw_number = call.header("X-Bz-Part-Number")
    if raw_number is None or not raw_number.strip().isdigit():
        raise bad_request("Missing or invalid header: X-Bz-Part-Number")
    number = int(raw_number)
    if not 1 <= number <= MAX_PARTS:
        raise bad_request(f"X-Bz-Part-Number must be 1..{MAX_PARTS}, not {number}")
    sha1_mode = _sha1_mode(call, allow_unverified=True)
    size = _content_length(call, sha1_mode, app.config.max_part_size)
    if large.sse and large.sse.get("mode") == "SSE-C":
        check_sse_c_access(large.sse, presented_key_md5_from_headers(call.headers))
    with app.uploading(who.token.token):
        writer = app.store.blobs.writer()
        try:
            sha1 = _receive(call, size, sha1_mode, writer)
            blob = writer.commit()
        except BaseException:
            writer.abort()
            raise
    part = Part(
        file_id=large.file_id,
        number=number,
        length=size,
        sha1=sha1.removeprefix("unverified:"),
        md5=writer.md5.hexdigest(),
        ts=app.store.next_ts(now_ms()),
        blob=blob,
    )
    store_part(call, part)
    _send(call, shapes.part(part, large.sse))


__all__ = ["B2Error", "ClientGone"]
