"""Buckets: create, list, update, delete (§6.2-6.5, §4.2)."""

from __future__ import annotations

from typing import Any

from .. import ids, shapes
from ..call import Call
from ..errors import B2Error, bad_request, unauthorized
from ..models import Bucket
from ..names import check_bucket_name
from .registry import operation

SETTABLE_TYPES = ("allPublic", "allPrivate")
ALL_TYPES = ("allPublic", "allPrivate", "restricted", "snapshot", "shared")
# A freshly created bucket reported revision 2 in recorded traffic (B2-API.md §4.2 [R]).
INITIAL_REVISION = 2


def _check_account(call: Call) -> None:
    if call.params.req_str("accountId") != call.app.account_id:
        raise unauthorized("accountId does not match the authorization token")


def _bucket_type(value: object) -> str:
    if value not in SETTABLE_TYPES:
        raise bad_request(f"bucketType must be one of {', '.join(SETTABLE_TYPES)}")
    assert isinstance(value, str)
    return value


def _bucket_info(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise bad_request("bucketInfo must be an object of strings")
    if len(value) > 10:
        raise bad_request("bucketInfo may hold at most 10 entries")
    return dict(value)


def _lifecycle(value: object) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise bad_request("lifecycleRules must be an array")
    seen: set[str] = set()
    out = []
    for rule in value:
        if not isinstance(rule, dict) or not isinstance(rule.get("fileNamePrefix"), str):
            raise bad_request("each lifecycle rule needs a fileNamePrefix string")
        prefix = rule["fileNamePrefix"]
        if prefix in seen:
            raise bad_request(f"duplicate lifecycle rule for prefix {prefix!r}")
        seen.add(prefix)
        clean: dict[str, Any] = {"fileNamePrefix": prefix}
        for field in (
            "daysFromHidingToDeleting",
            "daysFromUploadingToHiding",
            "daysFromStartingToCancelingUnfinishedLargeFiles",
        ):
            days = rule.get(field)
            if days is not None and (
                isinstance(days, bool) or not isinstance(days, int) or days < 1
            ):
                raise bad_request(f"{field} must be a positive integer or null")
            clean[field] = days
        out.append(clean)
    return out


def _cors(value: object) -> list[Any]:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise bad_request("corsRules must be an array of objects")
    if len(value) > 100:
        raise bad_request("at most 100 CORS rules")
    for rule in value:
        if not isinstance(rule.get("corsRuleName"), str):
            raise bad_request("each CORS rule needs a corsRuleName")
        age = rule.get("maxAgeSeconds")
        if age is not None and (not isinstance(age, int) or not 0 <= age <= 86400):
            raise bad_request("maxAgeSeconds must be 0..86400")
    return list(value)


def _default_sse(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("defaultServerSideEncryption must be an object")
    mode = value.get("mode")
    if mode in (None, "none"):
        return {"algorithm": None, "mode": None}
    if mode == "SSE-B2":
        if value.get("algorithm", "AES256") != "AES256":
            raise bad_request("SSE-B2 algorithm must be AES256")
        return {"algorithm": "AES256", "mode": "SSE-B2"}
    raise bad_request(f"invalid default encryption mode: {mode}")


def _default_retention(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("defaultRetention must be an object")
    mode = value.get("mode")
    period = value.get("period")
    if mode is None:
        return {"mode": None, "period": None}
    if mode not in ("governance", "compliance"):
        raise bad_request(f"invalid retention mode: {mode}")
    if (
        not isinstance(period, dict)
        or period.get("unit") not in ("days", "years")
        or not isinstance(period.get("duration"), int)
        or period["duration"] < 1
    ):
        raise bad_request("defaultRetention.period needs a positive duration and days|years")
    return {"mode": mode, "period": {"duration": period["duration"], "unit": period["unit"]}}


def _apply_common(call: Call, b: Bucket) -> None:
    p = call.params
    who = call.principal()
    if "bucketInfo" in p:
        b.info = _bucket_info(p.raw("bucketInfo"))
    if "corsRules" in p:
        b.cors = _cors(p.raw("corsRules"))
    if "lifecycleRules" in p:
        b.lifecycle = _lifecycle(p.raw("lifecycleRules"))
    if "defaultServerSideEncryption" in p:
        who.require("writeBucketEncryption")
        b.default_sse = _default_sse(p.raw("defaultServerSideEncryption"))
    if "replicationConfiguration" in p:
        who.require("writeBucketReplications")
        b.replication = p.opt_dict("replicationConfiguration")


@operation("b2_create_bucket")
def create_bucket(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeBuckets")
    p = call.params
    _check_account(call)
    name = check_bucket_name(p.req_str("bucketName"))
    b = Bucket(
        bucket_id=ids.bucket_id(),
        name=name,
        type=_bucket_type(p.raw("bucketType")),
        info={},
        cors=[],
        lifecycle=[],
        revision=INITIAL_REVISION,
    )
    _apply_common(call, b)
    if p.opt_bool("fileLockEnabled"):
        who.require("writeBucketRetentions")
        b.file_lock = True
    store = call.app.store
    with store.atomic():
        if store.get_bucket_by_name(name) is not None:
            raise B2Error(400, "duplicate_bucket_name", "Bucket name is already in use.")
        if len(store.list_buckets()) >= call.app.config.max_buckets:
            raise B2Error(400, "too_many_buckets", "Account has too many buckets")
        b.seq = store.next_seq()
        store.put_bucket(b)
    return shapes.bucket(b, call.app.account_id, who)


@operation("b2_list_buckets")
def list_buckets(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("listBuckets")
    p = call.params
    _check_account(call)
    bucket_id = p.opt_str("bucketId")
    bucket_name = p.opt_str("bucketName")
    types = p.opt_list("bucketTypes")
    if types is None:
        wanted: set[str] = {"allPublic", "allPrivate", "snapshot"}
    else:
        if not types or ("all" in types and len(types) > 1):
            raise bad_request("bucketTypes must be ['all'] or a non-empty list of types")
        if types == ["all"]:
            wanted = set(ALL_TYPES)
        else:
            for t in types:
                if t not in ALL_TYPES:
                    raise bad_request(f"unknown bucket type: {t}")
            wanted = set(types)
    if who.key.bucket_ids is not None:
        if bucket_id is None and bucket_name is None:
            raise unauthorized("this key is restricted to a bucket: pass its bucketId or name")
        if bucket_id is not None:
            who.check_bucket(bucket_id)
        if bucket_name is not None:
            named = call.app.store.get_bucket_by_name(bucket_name)
            if named is not None and not who.allows_bucket(named.bucket_id):
                raise unauthorized(f"key is not allowed to access bucket {bucket_name}")
    out = []
    for b in call.app.store.list_buckets():
        if bucket_id is not None and b.bucket_id != bucket_id:
            continue
        if bucket_name is not None and b.name != bucket_name:
            continue
        if b.type not in wanted or not who.allows_bucket(b.bucket_id):
            continue
        out.append(shapes.bucket(b, call.app.account_id, who))
    return {"buckets": out}


@operation("b2_update_bucket")
def update_bucket(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeBuckets")
    p = call.params
    _check_account(call)
    store = call.app.store
    with store.atomic():
        b = call.app.bucket(p.raw("bucketId"), who)
        expected = p.opt_int("ifRevisionIs")
        if expected is not None and expected != b.revision:
            raise B2Error(409, "conflict", "simultaneous updates to bucket")
        if "bucketType" in p:
            b.type = _bucket_type(p.raw("bucketType"))
        _apply_common(call, b)
        lock = p.opt_bool("fileLockEnabled")
        if lock is not None:
            who.require("writeBucketRetentions")
            if not lock and b.file_lock:
                raise B2Error(
                    400,
                    "file_lock_conflict",
                    "fileLockEnabled value of false is not allowed "
                    "when bucket is already file lock enabled.",
                )
            if (
                lock
                and not b.file_lock
                and b.replication
                and b.replication.get("asReplicationSource")
            ):
                raise B2Error(
                    400,
                    "source_replication_conflict",
                    "Turning on file lock for an existing bucket having source replication "
                    "configuration is not allowed.",
                )
            b.file_lock = b.file_lock or lock
        if "defaultRetention" in p:
            who.require("writeBucketRetentions")
            retention = _default_retention(p.raw("defaultRetention"))
            if retention["mode"] is not None and not b.file_lock:
                raise bad_request("defaultRetention needs a file-lock-enabled bucket")
            b.default_retention = retention
        b.revision += 1
        store.put_bucket(b)
    return shapes.bucket(b, call.app.account_id, who)


@operation("b2_delete_bucket")
def delete_bucket(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("deleteBuckets")
    p = call.params
    _check_account(call)
    store = call.app.store
    with store.atomic():
        bucket_id = p.req_str("bucketId")
        who.check_bucket(bucket_id)
        b = store.get_bucket(bucket_id)
        if b is None:
            raise B2Error(400, "bad_bucket_id", f"Bucket {bucket_id} does not exist")
        if not store.bucket_is_empty(bucket_id):
            raise B2Error(400, "cannot_delete_non_empty_bucket", "Cannot delete non-empty bucket")
        store.delete_bucket(bucket_id)
    b.revision += 1
    return shapes.bucket(b, call.app.account_id, who)
