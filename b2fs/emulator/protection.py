"""Server-side encryption settings and Object Lock (retention, legal hold) rules.

Content is never actually encrypted: SSE settings are recorded and echoed, and an SSE-C
version can only be read or copied by a caller presenting the same customer key (checked by
its MD5), as B2 requires. Object Lock: retention and legal hold are stored per version and
deleting a protected version is refused (``401 access_denied``; governance mode yields to
``bypassGovernance`` with that capability).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from .auth import Principal
from .errors import B2Error, bad_request
from .models import Bucket, FileVersion

SSE_NONE: dict[str, Any] = {"algorithm": None, "mode": None}


def _key_md5(key_b64: str, given_md5: str | None) -> str:
    try:
        raw = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request("SSE-C customer key is not valid base64") from None
    if len(raw) != 32:
        raise bad_request("SSE-C customer key must be 256 bits")
    md5 = base64.b64encode(hashlib.md5(raw).digest()).decode()
    if given_md5 is not None and given_md5 != md5:
        raise bad_request("SSE-C customer key MD5 does not match the key")
    return md5


def sse_from_headers(headers: Mapping[str, str], bucket: Bucket) -> dict[str, Any]:
    """The encryption of an upload: from its headers, else the bucket default."""
    customer_alg = headers.get("X-Bz-Server-Side-Encryption-Customer-Algorithm")
    if customer_alg is not None:
        if customer_alg != "AES256":
            raise bad_request("SSE-C algorithm must be AES256")
        key = headers.get("X-Bz-Server-Side-Encryption-Customer-Key")
        if not key:
            raise bad_request("SSE-C needs X-Bz-Server-Side-Encryption-Customer-Key")
        md5 = _key_md5(key, headers.get("X-Bz-Server-Side-Encryption-Customer-Key-Md5"))
        return {"algorithm": "AES256", "mode": "SSE-C", "customerKeyMd5": md5}
    mode = headers.get("X-Bz-Server-Side-Encryption")
    if mode is not None:
        if mode != "AES256":
            raise bad_request("X-Bz-Server-Side-Encryption must be AES256")
        return {"algorithm": "AES256", "mode": "SSE-B2"}
    return dict(bucket.default_sse) if bucket.default_sse.get("mode") else dict(SSE_NONE)


def sse_from_json(value: object, bucket: Bucket | None) -> dict[str, Any]:
    """Encryption from a JSON parameter (start_large_file, copy destination)."""
    if value is None:
        if bucket is not None and bucket.default_sse.get("mode"):
            return dict(bucket.default_sse)
        return dict(SSE_NONE)
    if not isinstance(value, dict):
        raise bad_request("serverSideEncryption must be an object")
    mode = value.get("mode")
    if mode in (None, "none"):
        return dict(SSE_NONE)
    if value.get("algorithm", "AES256") != "AES256":
        raise bad_request("encryption algorithm must be AES256")
    if mode == "SSE-B2":
        return {"algorithm": "AES256", "mode": "SSE-B2"}
    if mode == "SSE-C":
        key = value.get("customerKey")
        if not isinstance(key, str):
            raise bad_request("SSE-C needs customerKey")
        md5 = _key_md5(key, value.get("customerKeyMd5"))
        return {"algorithm": "AES256", "mode": "SSE-C", "customerKeyMd5": md5}
    raise bad_request(f"invalid encryption mode: {mode}")


def check_sse_c_access(stored: dict[str, Any] | None, presented_md5: str | None) -> None:
    """An SSE-C version needs the same customer key to be read."""
    if stored and stored.get("mode") == "SSE-C" and presented_md5 != stored.get("customerKeyMd5"):
        raise B2Error(
            403, "access_denied", "The object was stored using SSE-C: the same key is required"
        )


def presented_key_md5_from_headers(headers: Mapping[str, str]) -> str | None:
    key = headers.get("X-Bz-Server-Side-Encryption-Customer-Key")
    if not key:
        return None
    return _key_md5(key, headers.get("X-Bz-Server-Side-Encryption-Customer-Key-Md5"))


def presented_key_md5_from_json(value: object) -> str | None:
    if not isinstance(value, dict) or value.get("mode") != "SSE-C":
        return None
    key = value.get("customerKey")
    if not isinstance(key, str):
        raise bad_request("SSE-C needs customerKey")
    return _key_md5(key, value.get("customerKeyMd5"))


# -- Object Lock ---------------------------------------------------------------------------


def retention_param(value: object, bucket: Bucket, who: Principal) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise bad_request("fileRetention must be an object")
    mode = value.get("mode")
    until = value.get("retainUntilTimestamp")
    if mode is None:
        return {"mode": None, "retainUntilTimestamp": None}
    if not bucket.file_lock:
        raise B2Error(400, "bucket_missing_file_lock", "The bucket is not file lock enabled")
    who.require("writeFileRetentions")
    if mode not in ("governance", "compliance"):
        raise bad_request(f"invalid retention mode: {mode}")
    if isinstance(until, bool) or not isinstance(until, int) or until <= time.time() * 1000:
        raise bad_request("retainUntilTimestamp must be a future time in milliseconds")
    return {"mode": mode, "retainUntilTimestamp": until}


def default_retention(bucket: Bucket, ts_ms: int) -> dict[str, Any] | None:
    rule = bucket.default_retention
    if not bucket.file_lock or not rule or rule.get("mode") is None:
        return None
    period = rule["period"]
    days = period["duration"] * (365 if period["unit"] == "years" else 1)
    return {"mode": rule["mode"], "retainUntilTimestamp": ts_ms + days * 86_400_000}


def legal_hold_param(value: object, bucket: Bucket, who: Principal) -> str | None:
    if value is None:
        return None
    if value not in ("on", "off"):
        raise bad_request("legalHold must be 'on' or 'off'")
    if not bucket.file_lock:
        raise B2Error(400, "bucket_missing_file_lock", "The bucket is not file lock enabled")
    who.require("writeFileLegalHolds")
    assert isinstance(value, str)
    return value


def retention_active(f: FileVersion) -> str | None:
    r = f.retention or {}
    until = r.get("retainUntilTimestamp")
    if r.get("mode") and until and until > time.time() * 1000:
        return str(r["mode"])
    return None


def check_delete_allowed(f: FileVersion, who: Principal, bypass: bool) -> None:
    if f.legal_hold == "on":
        raise B2Error(401, "access_denied", "file version is under legal hold")
    mode = retention_active(f)
    if mode == "compliance":
        raise B2Error(401, "access_denied", "file version is under compliance retention")
    if mode == "governance":
        if not bypass:
            raise B2Error(401, "access_denied", "file version is under governance retention")
        who.require("bypassGovernance")
