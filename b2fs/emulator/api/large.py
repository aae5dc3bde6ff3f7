"""Large files: start, part URLs, finish, cancel, list parts and unfinished, copy_part
(§6.16-6.23, §10).

Part-size rules are enforced when finishing (a part cannot know it is the last when it is
uploaded): at least 2 parts, numbered 1..N without gaps, each but the last at least
``absoluteMinimumPartSize``, SHA1s equal to ``partSha1Array``.
"""

from __future__ import annotations

from typing import Any

from .. import ids, shapes
from ..auth import Principal, now_ms
from ..call import Call
from ..content import copy_range, segments
from ..errors import B2Error, bad_request
from ..models import FileVersion, Part
from ..names import check_file_info, check_file_name, check_header_budget, resolve_content_type
from ..protection import (
    default_retention,
    legal_hold_param,
    presented_key_md5_from_json,
    retention_param,
    sse_from_json,
)
from .files import list_prefix, parse_copy_range, read_source
from .registry import operation

MAX_PARTS = 10_000
MAX_LARGE_FILE = 10 * 1000**4


def unfinished(call: Call, who: Principal, file_id: object) -> FileVersion:
    """An unfinished large file the caller may write to, or 400."""
    if not isinstance(file_id, str) or not file_id:
        raise bad_request("required field fileId is missing")
    f = call.app.store.get_file(file_id)
    if f is None or f.action != "start":
        raise bad_request(f"Invalid fileId: {file_id}")
    who.check_bucket(f.bucket_id)
    who.check_name(f.name)
    return f


@operation("b2_start_large_file")
def start_large_file(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    p = call.params
    app = call.app
    bucket = app.bucket(p.raw("bucketId"), who)
    name = check_file_name(p.req_str("fileName"), strict=app.config.strict_names)
    who.check_name(name)
    content_type = resolve_content_type(p.req_str("contentType"), name)
    info = check_file_info(p.opt_dict("fileInfo"))
    sse = sse_from_json(p.raw("serverSideEncryption"), bucket)
    check_header_budget(name, info, advanced=bool(sse.get("mode")) or bucket.file_lock)
    retention = retention_param(p.raw("fileRetention"), bucket, who)
    legal_hold = legal_hold_param(p.raw("legalHold"), bucket, who)
    custom = p.opt_int("customUploadTimestamp", 0, now_ms())
    if custom is None:
        custom = p.opt_int("custom_upload_timestamp", 0, now_ms())  # b2sdk's spelling
    file_id, ts, seq = app.new_version(bucket.bucket_id, large=True, ts_ms=custom)
    f = FileVersion(
        file_id=file_id,
        bucket_id=bucket.bucket_id,
        name=name,
        action="start",
        ts=ts,
        seq=seq,
        length=0,
        sha1="none",
        md5=None,
        content_type=content_type,
        info=info,
        large=True,
        sse=sse,
        retention=retention or default_retention(bucket, ts),
        legal_hold=legal_hold,
    )
    with app.store.atomic():
        app.bucket(bucket.bucket_id)
        app.store.put_file(f)
    return shapes.file(call.version, f, app.account_id, who)


@operation("b2_get_upload_part_url")
def get_upload_part_url(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    f = unfinished(call, who, call.params.raw("fileId"))
    nonce = ids.nonce()
    token = call.app.auth.issue(who.key, "part", {"fileId": f.file_id, "nonce": nonce})
    return {
        "authorizationToken": token.token,
        "fileId": f.file_id,
        "uploadUrl": f"{call.app.url}/b2api/v{call.version}/b2_upload_part/{f.file_id}/{nonce}",
    }


@operation("b2_finish_large_file")
def finish_large_file(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    p = call.params
    app = call.app
    sha1s = p.opt_list("partSha1Array")
    if sha1s is None:
        raise bad_request("required field partSha1Array is missing")
    if not all(isinstance(s, str) for s in sha1s):
        raise bad_request("partSha1Array must be a list of strings")
    with app.store.atomic():
        f = unfinished(call, who, p.raw("fileId"))
        parts = app.store.list_parts(f.file_id)
        by_number = {part.number: part for part in parts}
        for number, sha1 in enumerate(sha1s, start=1):
            part = by_number.get(number)
            if part is None:
                raise B2Error(400, "missing_part", f"Part number {number} has not been uploaded")
            if part.sha1 != sha1.lower():
                raise B2Error(
                    400, "part_sha1_mismatch", f"Part number {number} has SHA1 {part.sha1}"
                )
        if len(parts) > len(sha1s):
            raise bad_request(
                f"{len(parts)} parts were uploaded but partSha1Array lists {len(sha1s)}"
            )
        if len(parts) < 2:
            raise bad_request("large files must have at least 2 parts")
        minimum = app.config.min_part_size
        for part in parts[:-1]:
            if part.length < minimum:
                raise bad_request(
                    f"Part number {part.number} is smaller than the minimum part size "
                    f"({part.length} < {minimum})"
                )
        total = sum(part.length for part in parts)
        if total > MAX_LARGE_FILE:
            raise bad_request("large file is bigger than 10 TB")
        f.action = "upload"
        f.length = total
        app.store.put_file(f)
        bucket = app.bucket(f.bucket_id)
    app.notifier.emit(bucket, "b2:ObjectCreated:MultipartUpload", f)
    return shapes.file(call.version, f, app.account_id, who)


@operation("b2_cancel_large_file")
def cancel_large_file(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    app = call.app
    with app.store.atomic():
        f = unfinished(call, who, call.params.raw("fileId"))
        blobs = app.store.delete_file(f.file_id)
    app.store.blobs.delete(blobs)
    return {
        "accountId": app.account_id,
        "bucketId": f.bucket_id,
        "fileId": f.file_id,
        "fileName": f.name,
    }


@operation("b2_list_parts")
def list_parts(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    p = call.params
    f = unfinished(call, who, p.raw("fileId"))
    start = p.opt_int("startPartNumber", 1, MAX_PARTS) or 1
    limit = p.opt_int("maxPartCount", 0, 1000, code="out_of_range") or 100
    parts = call.app.store.list_parts(f.file_id, start, limit + 1)
    page, rest = parts[:limit], parts[limit:]
    out = []
    for part in page:
        item = shapes.part(part, f.sse)
        item["uploadTimestamp"] = part.ts // 1000 * 1000  # as recorded: seconds precision
        out.append(item)
    return {"nextPartNumber": rest[0].number if rest else None, "parts": out}


@operation("b2_list_unfinished_large_files")
def list_unfinished_large_files(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("listFiles")
    p = call.params
    bucket = call.app.bucket(p.raw("bucketId"), who)
    prefix = list_prefix(call, who, p.opt_str("namePrefix") or "")
    limit = p.opt_int("maxFileCount", 0, 100, code="out_of_range") or 100
    start_id = p.opt_str("startFileId")
    start_seq = 0
    if start_id is not None:
        parsed = ids.parse_file_id(start_id)
        if parsed is None:
            raise bad_request(f"Invalid startFileId: {start_id}")
        start_seq = parsed.seq
    if prefix is None:
        return {"files": [], "nextFileId": None, "nextFileName": None}
    rows = call.app.store.scan_unfinished(bucket.bucket_id, prefix, start_seq, limit + 1)
    page, rest = rows[:limit], rows[limit:]
    return {
        "files": [shapes.file(call.version, f, call.app.account_id, who) for f in page],
        "nextFileId": rest[0].file_id if rest else None,
        "nextFileName": None,
    }


@operation("b2_copy_part")
def copy_part(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    p = call.params
    app = call.app
    source, _ = read_source(call, who, p.raw("sourceFileId"))
    large = unfinished(call, who, p.raw("largeFileId"))
    number = p.req_int("partNumber", 1, MAX_PARTS)
    if large.sse and large.sse.get("mode") == "SSE-C":
        given = presented_key_md5_from_json(p.raw("destinationServerSideEncryption"))
        if given != large.sse.get("customerKeyMd5"):
            raise bad_request("destinationServerSideEncryption must match the large file's")
    start, end = parse_copy_range(p.opt_str("range"), source.length) if source.length else (0, -1)
    if end - start + 1 > app.config.max_part_size:
        raise B2Error(400, "source_too_large", f"Copy source too big: {end - start + 1}")
    writer = app.store.blobs.writer()
    try:
        copy_range(segments(app.store, source), start, end, writer)
        blob = writer.commit()
    except BaseException:
        writer.abort()
        raise
    part = Part(
        file_id=large.file_id,
        number=number,
        length=writer.size,
        sha1=writer.sha1.hexdigest(),
        md5=writer.md5.hexdigest(),
        ts=app.store.next_ts(now_ms()),
        blob=blob,
    )
    return shapes.part(store_part(call, part), large.sse)


def store_part(call: Call, part: Part) -> Part:
    """Record a part whose blob is committed; re-checks that the file is still unfinished."""
    store = call.app.store
    try:
        with store.atomic():
            f = store.get_file(part.file_id)
            if f is None or f.action != "start":
                raise bad_request(f"Invalid fileId: {part.file_id}")
            replaced = store.put_part(part)
    except BaseException:
        store.blobs.delete([part.blob])
        raise
    if replaced and replaced != part.blob:
        store.blobs.delete([replaced])
    return part
