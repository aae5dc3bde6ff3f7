"""JSON shapes of responses, and the only place where API versions differ (B2-API.md §1.1, §4).

* authorize: v1/v2 flat with a top-level ``allowed``; v3 ``apiInfo.storageApi`` flat with
  ``bucketId``/``bucketName``/``capabilities``/``namePrefix``/``infoType``; v4
  ``storageApi.allowed.buckets`` (flat ``capabilities``/``namePrefix`` are kept there too, which
  clients ignore).
* keys: ``bucketId`` (v1-v3) vs ``bucketIds`` (v4).
* file objects: v1 also carries ``size`` (== ``contentLength``).
Everything else is the same in every version. Fields a token may not read come back as
``{"isClientAuthorizedToRead": false}``.
"""

from __future__ import annotations

from typing import Any

from .auth import Principal
from .models import Bucket, FileVersion, Key, Part

EMPTY_SHA1 = "da39a3ee5e6b4b0d3255bfef95601890afd80709"
EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"
HIDE_MARKER_TYPE = "application/x-bz-hide-marker"

JSON = dict[str, Any]


def authorize(
    version: int,
    *,
    account_id: str,
    token: str,
    url: str,
    key: Key,
    bucket_names: dict[str, str | None],
    min_part_size: int,
    recommended_part_size: int,
) -> JSON:
    """``bucket_names`` maps each of the key's bucket ids to its name (None once deleted)."""
    caps = list(key.capabilities)
    prefix = key.name_prefix
    expiry = key.expires_ms
    single_id = key.bucket_ids[0] if key.bucket_ids else None
    single_name = bucket_names.get(single_id) if single_id else None
    if version <= 2:
        out: JSON = {
            "absoluteMinimumPartSize": min_part_size,
            "accountId": account_id,
            "allowed": {
                "bucketId": single_id,
                "bucketName": single_name,
                "capabilities": caps,
                "namePrefix": prefix,
            },
            "apiUrl": url,
            "authorizationToken": token,
            "downloadUrl": url,
            "recommendedPartSize": recommended_part_size,
            "s3ApiUrl": url,
        }
        if version == 1:
            out["minimumPartSize"] = recommended_part_size
        return out
    storage: JSON = {
        "absoluteMinimumPartSize": min_part_size,
        "apiUrl": url,
        "downloadUrl": url,
        "recommendedPartSize": recommended_part_size,
        "s3ApiUrl": url,
    }
    if version == 3:
        storage.update(
            bucketId=single_id,
            bucketName=single_name,
            capabilities=caps,
            infoType="storageApi",
            namePrefix=prefix,
        )
    else:
        buckets = (
            None
            if key.bucket_ids is None
            else [{"id": b, "name": bucket_names.get(b)} for b in key.bucket_ids]
        )
        storage["allowed"] = {"buckets": buckets, "capabilities": caps, "namePrefix": prefix}
        storage["capabilities"] = caps
        storage["namePrefix"] = prefix
    return {
        "accountId": account_id,
        "apiInfo": {"storageApi": dict(sorted(storage.items()))},
        "applicationKeyExpirationTimestamp": expiry,
        "authorizationToken": token,
    }


def key(version: int, k: Key, account_id: str, secret: bool = False) -> JSON:
    out: JSON = {
        "accountId": account_id,
        "applicationKeyId": k.key_id,
        "capabilities": list(k.capabilities),
        "expirationTimestamp": k.expires_ms,
        "keyName": k.name,
        "namePrefix": k.name_prefix,
        "options": ["s3"],
    }
    if version >= 4:
        out["bucketIds"] = list(k.bucket_ids) if k.bucket_ids is not None else None
    else:
        out["bucketId"] = k.bucket_ids[0] if k.bucket_ids else None
    if secret:
        out["applicationKey"] = k.secret
    return dict(sorted(out.items()))


def _guarded(allowed: bool, value: Any) -> JSON:
    if not allowed:
        return {"isClientAuthorizedToRead": False, "value": None}
    return {"isClientAuthorizedToRead": True, "value": value}


def bucket(b: Bucket, account_id: str, who: Principal | None) -> JSON:
    def can(cap: str) -> bool:
        return who is None or who.has(cap)

    return {
        "accountId": account_id,
        "bucketId": b.bucket_id,
        "bucketInfo": dict(b.info),
        "bucketName": b.name,
        "bucketType": b.type,
        "corsRules": list(b.cors),
        "defaultServerSideEncryption": _guarded(can("readBucketEncryption"), dict(b.default_sse)),
        "fileLockConfiguration": _guarded(
            can("readBucketRetentions"),
            {"defaultRetention": dict(b.default_retention), "isFileLockEnabled": b.file_lock},
        ),
        "lifecycleRules": list(b.lifecycle),
        "options": list(b.options),
        "replicationConfiguration": _guarded(
            can("readBucketReplications"),
            b.replication or {"asReplicationDestination": None, "asReplicationSource": None},
        ),
        "revision": b.revision,
    }


def sse(value: dict[str, Any] | None) -> JSON:
    if not value or value.get("mode") in (None, "none"):
        return {"algorithm": None, "mode": None}
    out: JSON = {"algorithm": value.get("algorithm", "AES256"), "mode": value["mode"]}
    if value.get("mode") == "SSE-C":
        out["customerKeyMd5"] = value.get("customerKeyMd5")
    return out


def file(
    version: int, f: FileVersion, account_id: str, who: Principal | None, action: str | None = None
) -> JSON:
    out: JSON = {
        "accountId": account_id,
        "action": action or f.action,
        "bucketId": f.bucket_id,
        "contentLength": f.length,
        "contentMd5": f.md5,
        "contentSha1": f.sha1,
        "contentType": f.content_type,
        "fileId": f.file_id,
        "fileInfo": dict(f.info),
        "fileName": f.name,
        "uploadTimestamp": f.ts,
    }
    if f.action != "hide":
        out["fileRetention"] = _guarded(
            who is None or who.has("readFileRetentions"),
            f.retention or {"mode": None, "retainUntilTimestamp": None},
        )
        out["legalHold"] = _guarded(who is None or who.has("readFileLegalHolds"), f.legal_hold)
        out["serverSideEncryption"] = sse(f.sse)
    if version == 1:
        out["size"] = f.length
    return out


def folder(version: int, name: str, bucket_id: str, account_id: str) -> JSON:
    out: JSON = {
        "accountId": account_id,
        "action": "folder",
        "bucketId": bucket_id,
        "contentLength": 0,
        "contentMd5": None,
        "contentSha1": None,
        "contentType": None,
        "fileId": None,
        "fileInfo": {},
        "fileName": name,
        "uploadTimestamp": 0,
    }
    if version == 1:
        out["size"] = 0
    return out


def part(p: Part, sse_value: dict[str, Any] | None) -> JSON:
    return {
        "contentLength": p.length,
        "contentMd5": p.md5,
        "contentSha1": p.sha1,
        "fileId": p.file_id,
        "partNumber": p.number,
        "serverSideEncryption": sse(sse_value),
        "uploadTimestamp": p.ts,
    }


def rule(r: dict[str, Any]) -> JSON:
    return dict(sorted(r.items()))
