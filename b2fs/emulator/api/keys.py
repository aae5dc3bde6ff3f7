"""Account authorization and application keys (§6.1, §6.24-6.26, §6.29 download auth)."""

from __future__ import annotations

from typing import Any

from .. import ids, shapes
from ..auth import check_capabilities, now_ms
from ..call import Call
from ..errors import B2Error, bad_request
from ..models import Key
from ..names import check_header_value, check_key_name
from .registry import operation

OVERRIDE_PARAMS = (
    "b2ContentDisposition",
    "b2ContentLanguage",
    "b2Expires",
    "b2CacheControl",
    "b2ContentEncoding",
    "b2ContentType",
)


@operation("b2_authorize_account", kind="auth")
def authorize_account(call: Call) -> dict[str, Any]:
    app = call.app
    key = app.auth.key_from_basic(call.header("Authorization"))
    if call.version < 4 and key.bucket_ids is not None and len(key.bucket_ids) > 1:
        raise B2Error(401, "unsupported", "this key is restricted to several buckets: use API v4")
    token = app.auth.issue(key, "account")
    names: dict[str, str | None] = {}
    for bucket_id in key.bucket_ids or []:
        b = app.store.get_bucket(bucket_id)
        names[bucket_id] = b.name if b else None
    return shapes.authorize(
        call.version,
        account_id=app.account_id,
        token=token.token,
        url=app.url,
        key=key,
        bucket_names=names,
        min_part_size=app.config.min_part_size,
        recommended_part_size=app.config.recommended_part_size,
    )


def _check_account(call: Call) -> None:
    account = call.params.req_str("accountId")
    if account != call.app.account_id:
        raise B2Error(401, "unauthorized", "accountId does not match the authorization token")


@operation("b2_create_key")
def create_key(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeKeys")
    p = call.params
    _check_account(call)
    name = check_key_name(p.req_str("keyName"))
    duration = p.opt_int("validDurationInSeconds", 1, 86_400_000)
    bucket_ids: list[str] | None = None
    if "bucketIds" in p:
        raw = p.opt_list("bucketIds") or []
        if not all(isinstance(b, str) for b in raw):
            raise bad_request("bucketIds must be a list of strings")
        bucket_ids = list(dict.fromkeys(raw)) or None
    elif "bucketId" in p:
        bucket_ids = [p.req_str("bucketId")]
    if bucket_ids and len(bucket_ids) > 1 and call.version < 4:
        raise bad_request("keys for several buckets need API v4")
    for bucket_id in bucket_ids or []:
        if call.app.store.get_bucket(bucket_id) is None:
            raise B2Error(400, "bad_bucket_id", f"Invalid bucketId: {bucket_id}")
    prefix = p.opt_str("namePrefix")
    if prefix is not None and not bucket_ids:
        raise bad_request("namePrefix requires a bucket restriction")
    caps = check_capabilities(p.raw("capabilities"), bucket_restricted=bool(bucket_ids))
    store = call.app.store
    seq = store.next_seq()
    key = Key(
        key_id=ids.key_id(call.app.account_id, seq),
        secret=ids.key_secret(),
        name=name,
        capabilities=caps,
        bucket_ids=bucket_ids,
        name_prefix=prefix or None,
        expires_ms=now_ms() + duration * 1000 if duration else None,
        seq=seq,
    )
    store.put_key(key)
    return shapes.key(call.version, key, call.app.account_id, secret=True)


@operation("b2_list_keys")
def list_keys(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("listKeys")
    p = call.params
    _check_account(call)
    limit = p.opt_int("maxKeyCount", 0, 10_000, code="out_of_range") or 100
    start = p.opt_str("startApplicationKeyId")
    keys = call.app.store.list_keys(start, 1_000_000)
    if call.version < 4:
        keys = [k for k in keys if not (k.bucket_ids and len(k.bucket_ids) > 1)]
    page, rest = keys[:limit], keys[limit:]
    return {
        "keys": [shapes.key(call.version, k, call.app.account_id) for k in page],
        "nextApplicationKeyId": rest[0].key_id if rest else None,
    }


@operation("b2_delete_key")
def delete_key(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("deleteKeys")
    key_id = call.params.req_str("applicationKeyId")
    store = call.app.store
    key = store.get_key(key_id)
    if key is None or key.is_master:
        raise bad_request(f"application key does not exist: {key_id}")
    if call.version < 4 and key.bucket_ids and len(key.bucket_ids) > 1:
        raise bad_request("keys for several buckets can only be deleted with API v4")
    store.delete_key(key_id)
    return shapes.key(call.version, key, call.app.account_id)


@operation("b2_get_download_authorization")
def get_download_authorization(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("shareFiles")
    p = call.params
    bucket = call.app.bucket(p.raw("bucketId"), who)
    prefix = p.req_str("fileNamePrefix")
    if who.key.name_prefix and not prefix.startswith(who.key.name_prefix):
        who.check_list_prefix(prefix)
    duration = p.opt_int("validDurationInSeconds", 1, 604_800)
    if duration is None:
        raise bad_request("required field validDurationInSeconds is missing")
    overrides: dict[str, str] = {}
    for name in OVERRIDE_PARAMS:
        value = p.opt_str(name)
        if value is not None:
            check_header_value(name, value)
            overrides[name] = value
    token = call.app.auth.issue(
        who.key,
        "download",
        {"bucketId": bucket.bucket_id, "prefix": prefix, "overrides": overrides},
        ttl_ms=duration * 1000,
    )
    return {
        "authorizationToken": token.token,
        "bucketId": bucket.bucket_id,
        "fileNamePrefix": prefix,
    }
