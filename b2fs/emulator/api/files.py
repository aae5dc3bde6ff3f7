"""Files: listing, info, hide, delete, copy, upload URLs, retention.

B2-API.md §6.6, §6.8-6.10, §6.13-6.15 and §6.29.
"""

from __future__ import annotations

import re
from typing import Any

from .. import ids, shapes
from ..auth import Principal
from ..call import Call
from ..content import copy_range, segments
from ..errors import B2Error, bad_request, not_found
from ..listing import Entry, collect
from ..models import Bucket, FileVersion
from ..names import check_file_info, check_file_name, check_header_budget, resolve_content_type
from ..protection import (
    check_delete_allowed,
    check_sse_c_access,
    default_retention,
    legal_hold_param,
    presented_key_md5_from_json,
    retention_active,
    retention_param,
    sse_from_json,
)
from .registry import operation

_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d+)$")


def list_prefix(call: Call, who: Principal, prefix: str) -> str | None:
    """Apply the key's name prefix to a listing prefix: 401 in v2+, filtering in v1.

    Returns the prefix to use, or None when nothing can match (v1 only).
    """
    key_prefix = who.key.name_prefix
    if not key_prefix or prefix.startswith(key_prefix):
        return prefix
    if call.version >= 2:
        who.check_list_prefix(prefix)
    return key_prefix if key_prefix.startswith(prefix) else None


def _page(entries: list[Entry], limit: int) -> tuple[list[Entry], Entry | None]:
    return entries[:limit], (entries[limit] if len(entries) > limit else None)


def _entry_json(call: Call, e: Entry, bucket: Bucket, who: Principal) -> dict[str, Any]:
    if isinstance(e, str):
        return shapes.folder(call.version, e, bucket.bucket_id, call.app.account_id)
    return shapes.file(call.version, e, call.app.account_id, who)


def _listing_args(call: Call) -> tuple[Principal, Bucket, str | None, str | None, int]:
    who = call.principal()
    p = call.params
    who.require("listFiles")
    bucket = call.app.bucket(p.raw("bucketId"), who, code="invalid_bucket_id")
    prefix = p.opt_str("prefix") or ""
    delimiter = p.opt_str("delimiter") or None
    limit = p.opt_int("maxFileCount", 0, 10_000, code="out_of_range") or 100
    return who, bucket, list_prefix(call, who, prefix), delimiter, limit


@operation("b2_list_file_names")
def list_file_names(call: Call) -> dict[str, Any]:
    who, bucket, prefix, delimiter, limit = _listing_args(call)
    start = call.params.opt_str("startFileName")
    if prefix is None:
        return {"files": [], "nextFileName": None}
    store = call.app.store
    entries = collect(
        lambda s, _k, end, n: store.scan_names(bucket.bucket_id, s, end, n),
        prefix=prefix,
        delimiter=delimiter,
        start_name=start,
        start_key=None,
        limit=limit,
        versions=False,
    )
    page, nxt = _page(entries, limit)
    return {
        "files": [_entry_json(call, e, bucket, who) for e in page],
        "nextFileName": None if nxt is None else (nxt if isinstance(nxt, str) else nxt.name),
    }


@operation("b2_list_file_versions")
def list_file_versions(call: Call) -> dict[str, Any]:
    who, bucket, prefix, delimiter, limit = _listing_args(call)
    p = call.params
    start = p.opt_str("startFileName")
    start_id = p.opt_str("startFileId")
    start_key: tuple[int, int] | None = None
    if start_id is not None:
        if start is None:
            raise bad_request("startFileId requires startFileName")
        parsed = ids.parse_file_id(start_id)
        if parsed is None:
            raise B2Error(400, "invalid_file_id", f"Invalid startFileId: {start_id}")
        start_key = (parsed.ts_ms, parsed.seq)
    if prefix is None:
        return {"files": [], "nextFileName": None, "nextFileId": None}
    store = call.app.store
    entries = collect(
        lambda s, k, end, n: store.scan_versions(bucket.bucket_id, s, k, end, n),
        prefix=prefix,
        delimiter=delimiter,
        start_name=start,
        start_key=start_key,
        limit=limit,
        versions=True,
    )
    page, nxt = _page(entries, limit)
    if nxt is None:
        next_name, next_id = None, None
    elif isinstance(nxt, str):
        next_name, next_id = nxt, None
    else:
        next_name, next_id = nxt.name, nxt.file_id
    return {
        "files": [_entry_json(call, e, bucket, who) for e in page],
        "nextFileId": next_id,
        "nextFileName": next_name,
    }


def readable_file(call: Call, who: Principal, file_id: object) -> FileVersion:
    """A finished version the caller may read; 404 for unknown or unfinished ids."""
    if isinstance(file_id, str) and file_id and ids.parse_file_id(file_id) is None:
        raise bad_request(f"Invalid fileId: {file_id}")
    f = call.app.file(file_id, missing="not_found")
    who.check_bucket(f.bucket_id)
    who.check_name(f.name)
    if f.action == "start":
        raise not_found(f"File not present: {f.file_id} (unfinished large file)")
    return f


@operation("b2_get_file_info")
def get_file_info(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("readFiles")
    f = readable_file(call, who, call.params.raw("fileId"))
    return shapes.file(call.version, f, call.app.account_id, who)


@operation("b2_get_upload_url")
def get_upload_url(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    bucket = call.app.bucket(call.params.raw("bucketId"), who)
    nonce = ids.nonce()
    token = call.app.auth.issue(who.key, "upload", {"bucketId": bucket.bucket_id, "nonce": nonce})
    return {
        "authorizationToken": token.token,
        "bucketId": bucket.bucket_id,
        "uploadUrl": f"{call.app.url}/b2api/v{call.version}/b2_upload_file/"
        f"{bucket.bucket_id}/{nonce}",
    }


@operation("b2_hide_file")
def hide_file(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    p = call.params
    app = call.app
    bucket = app.bucket(p.raw("bucketId"), who)
    name = check_file_name(p.req_str("fileName"), strict=app.config.strict_names)
    who.check_name(name)
    with app.store.atomic():
        latest = app.store.latest_version(bucket.bucket_id, name)
        if latest is None:
            raise B2Error(400, "no_such_file", f"File not present: {name}")
        if latest.action == "hide":
            raise B2Error(400, "already_hidden", f"File already hidden: {name}")
        file_id, ts, seq = app.new_version(bucket.bucket_id, large=False)
        marker = FileVersion(
            file_id=file_id,
            bucket_id=bucket.bucket_id,
            name=name,
            action="hide",
            ts=ts,
            seq=seq,
            length=0,
            sha1=shapes.EMPTY_SHA1,
            md5=shapes.EMPTY_MD5,
            content_type=shapes.HIDE_MARKER_TYPE,
            info={},
        )
        app.store.put_file(marker)
    app.notifier.emit(bucket, "b2:HideMarkerCreated:Hide", marker)
    return shapes.file(call.version, marker, app.account_id, who)


@operation("b2_delete_file_version")
def delete_file_version(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("deleteFiles")
    p = call.params
    app = call.app
    file_id = p.req_str("fileId")
    name = p.req_str("fileName")
    bypass = bool(p.opt_bool("bypassGovernance"))
    with app.store.atomic():
        f = app.store.get_file(file_id)
        if f is None or f.name != name:
            raise B2Error(400, "file_not_present", f"File not present: {name} {file_id}")
        who.check_bucket(f.bucket_id)
        who.check_name(f.name)
        check_delete_allowed(f, who, bypass)
        blobs = app.store.delete_file(file_id)
    app.store.blobs.delete(blobs)
    if f.action != "start":
        bucket = app.store.get_bucket(f.bucket_id)
        if bucket is not None:
            app.notifier.emit(bucket, "b2:ObjectDeleted:Delete", f)
    return {"fileId": f.file_id, "fileName": f.name}


def parse_copy_range(value: str | None, size: int) -> tuple[int, int]:
    """Inclusive byte range of a copy (``bytes=a-b``; the end is clipped to the size)."""
    if value is None:
        return 0, size - 1
    m = _RANGE_RE.match(value)
    if not m:
        raise bad_request(f"Invalid range: {value}")
    start, end = int(m[1]), int(m[2])
    if start > end:
        raise bad_request(f"Invalid range: {value}")
    if start >= size:
        raise B2Error(416, "range_not_satisfiable", f"Range {value} is beyond the source size")
    return start, min(end, size - 1)


def read_source(call: Call, who: Principal, source_id: object) -> tuple[FileVersion, Bucket]:
    """A copy source the caller may read (readFiles needed when its bucket is private)."""
    app = call.app
    if isinstance(source_id, str) and source_id and ids.parse_file_id(source_id) is None:
        raise bad_request(f"Invalid sourceFileId: {source_id}")
    if not isinstance(source_id, str) or not source_id:
        raise bad_request("required field sourceFileId is missing")
    f = app.store.get_file(source_id)
    if f is None or f.action != "upload":
        raise not_found(f"Source file not present: {source_id}")
    who.check_bucket(f.bucket_id)
    bucket = app.bucket(f.bucket_id)
    if bucket.type != "allPublic":
        who.require("readFiles")
    check_sse_c_access(
        f.sse, presented_key_md5_from_json(call.params.raw("sourceServerSideEncryption"))
    )
    return f, bucket


@operation("b2_copy_file")
def copy_file(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFiles")
    p = call.params
    app = call.app
    source, _src_bucket = read_source(call, who, p.raw("sourceFileId"))
    dest_bucket = app.bucket(p.opt_str("destinationBucketId") or source.bucket_id, who)
    name = check_file_name(p.req_str("fileName"), strict=app.config.strict_names)
    who.check_name(name)
    directive = p.opt_str("metadataDirective") or "COPY"
    if directive == "COPY":
        if "contentType" in p or "fileInfo" in p:
            raise bad_request("contentType and fileInfo must not be given with COPY")
        content_type = source.content_type or "application/octet-stream"
        info = dict(source.info)
    elif directive == "REPLACE":
        content_type = resolve_content_type(p.req_str("contentType"), name)
        info = check_file_info(p.opt_dict("fileInfo") or {})
    else:
        raise bad_request(f"metadataDirective must be COPY or REPLACE, not {directive}")
    start, end = parse_copy_range(p.opt_str("range"), source.length) if source.length else (0, -1)
    size = end - start + 1
    if size > app.config.max_simple_file_size:
        raise B2Error(400, "source_too_large", f"Copy source too big: {size}")
    sse = sse_from_json(p.raw("destinationServerSideEncryption"), dest_bucket)
    retention = retention_param(p.raw("fileRetention"), dest_bucket, who)
    legal_hold = legal_hold_param(p.raw("legalHold"), dest_bucket, who)
    check_header_budget(name, info, advanced=bool(sse.get("mode")) or dest_bucket.file_lock)
    writer = app.store.blobs.writer()
    try:
        try:
            copy_range(segments(app.store, source), start, end, writer)
        except FileNotFoundError:
            raise not_found(f"Source file not present: {source.file_id}") from None
        blob = writer.commit()
    except BaseException:
        writer.abort()
        raise
    file_id, ts, seq = app.new_version(dest_bucket.bucket_id, large=False)
    f = FileVersion(
        file_id=file_id,
        bucket_id=dest_bucket.bucket_id,
        name=name,
        action="upload",
        ts=ts,
        seq=seq,
        length=writer.size,
        sha1=writer.sha1.hexdigest(),
        md5=writer.md5.hexdigest(),
        content_type=content_type,
        info=info,
        blob=blob,
        sse=sse,
        retention=retention or default_retention(dest_bucket, ts),
        legal_hold=legal_hold,
    )
    try:
        with app.store.atomic():
            if app.store.get_bucket(dest_bucket.bucket_id) is None:
                raise B2Error(400, "bad_bucket_id", f"Invalid bucketId: {dest_bucket.bucket_id}")
            app.store.put_file(f)
    except BaseException:
        app.store.blobs.delete([blob])
        raise
    app.notifier.emit(dest_bucket, "b2:ObjectCreated:Copy", f)
    return shapes.file(call.version, f, app.account_id, who, action="copy")


def _retention_target(call: Call, who: Principal) -> tuple[FileVersion, Bucket]:
    p = call.params
    f = call.app.file(p.req_str("fileId"))
    if f.name != p.req_str("fileName") or f.action == "start":
        raise B2Error(400, "file_not_present", f"File not present: {f.name} {f.file_id}")
    who.check_bucket(f.bucket_id)
    who.check_name(f.name)
    bucket = call.app.bucket(f.bucket_id)
    if not bucket.file_lock:
        raise B2Error(400, "bucket_missing_file_lock", "The bucket is not file lock enabled")
    return f, bucket


@operation("b2_update_file_retention")
def update_file_retention(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFileRetentions")
    p = call.params
    with call.app.store.atomic():
        f, bucket = _retention_target(call, who)
        new = retention_param(p.opt_dict("fileRetention"), bucket, who)
        if new is None:
            raise bad_request("required field fileRetention is missing")
        current = retention_active(f)
        old_until = (f.retention or {}).get("retainUntilTimestamp") or 0
        weaker = new["mode"] is None or (new["retainUntilTimestamp"] or 0) < old_until
        if current == "compliance" and (weaker or new["mode"] != "compliance"):
            raise B2Error(401, "access_denied", "compliance retention cannot be reduced")
        if current == "governance" and (weaker or new["mode"] is None):
            if not p.opt_bool("bypassGovernance"):
                raise B2Error(401, "access_denied", "governance retention needs bypassGovernance")
            who.require("bypassGovernance")
        f.retention = new
        call.app.store.put_file(f)
    return {"fileId": f.file_id, "fileName": f.name, "fileRetention": new}


@operation("b2_update_file_legal_hold")
def update_file_legal_hold(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeFileLegalHolds")
    with call.app.store.atomic():
        f, bucket = _retention_target(call, who)
        hold = legal_hold_param(call.params.raw("legalHold"), bucket, who)
        if hold is None:
            raise bad_request("required field legalHold is missing")
        f.legal_hold = hold
        call.app.store.put_file(f)
    return {"fileId": f.file_id, "fileName": f.name, "legalHold": hold}
