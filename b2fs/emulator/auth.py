"""Keys, tokens and what a token may do (B2-API.md §1.5, §3).

:class:`Auth` issues account, upload and download-authorization tokens and resolves an
``Authorization`` value back to a :class:`Principal`. A principal carries the key's
capabilities, bucket restriction and name prefix, and answers the checks every handler makes:
:meth:`Principal.require` (capability), :meth:`Principal.check_bucket` and
:meth:`Principal.check_name` (restrictions), all failing with ``401 unauthorized``. Token
problems fail with ``missing_auth_token``, ``bad_auth_token`` or ``expired_auth_token``.

Tokens are persisted with the rest of the store so that clients survive an emulator restart.
A key's token dies with the key.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import Any

from . import ids
from .errors import B2Error, bad_auth_token, expired_auth_token, missing_auth_token, unauthorized
from .models import Key, Token
from .store import Store

ALL_CAPABILITIES = [
    "listKeys",
    "writeKeys",
    "deleteKeys",
    "listBuckets",
    "listAllBucketNames",
    "readBuckets",
    "writeBuckets",
    "deleteBuckets",
    "readBucketEncryption",
    "writeBucketEncryption",
    "readBucketRetentions",
    "writeBucketRetentions",
    "readFileRetentions",
    "writeFileRetentions",
    "readFileLegalHolds",
    "writeFileLegalHolds",
    "readBucketReplications",
    "writeBucketReplications",
    "bypassGovernance",
    "listFiles",
    "readFiles",
    "shareFiles",
    "writeFiles",
    "deleteFiles",
    "readBucketNotifications",
    "writeBucketNotifications",
    "readBucketLogging",
    "writeBucketLogging",
]

BUCKET_CAPABILITIES = {
    "listAllBucketNames",
    "listBuckets",
    "readBuckets",
    "readBucketEncryption",
    "writeBucketEncryption",
    "readBucketRetentions",
    "writeBucketRetentions",
    "readBucketNotifications",
    "writeBucketNotifications",
    "listFiles",
    "readFiles",
    "shareFiles",
    "writeFiles",
    "deleteFiles",
    "readFileLegalHolds",
    "writeFileLegalHolds",
    "readFileRetentions",
    "writeFileRetentions",
    "bypassGovernance",
    "readBucketLogging",
    "writeBucketLogging",
}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Principal:
    """Who is calling: a key (through one of its tokens) and the token's kind and data."""

    key: Key
    token: Token
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def capabilities(self) -> list[str]:
        return self.key.capabilities

    def has(self, capability: str) -> bool:
        return capability in self.key.capabilities

    def require(self, *capabilities: str) -> None:
        for cap in capabilities:
            if cap not in self.key.capabilities:
                raise unauthorized(f"key does not have the capability {cap}")

    def allows_bucket(self, bucket_id: str) -> bool:
        return self.key.bucket_ids is None or bucket_id in self.key.bucket_ids

    def check_bucket(self, bucket_id: str) -> None:
        if not self.allows_bucket(bucket_id):
            raise unauthorized(f"key is not allowed to access bucket {bucket_id}")

    def allows_name(self, name: str) -> bool:
        return not self.key.name_prefix or name.startswith(self.key.name_prefix)

    def check_name(self, name: str) -> None:
        if not self.allows_name(name):
            raise unauthorized(f"key is restricted to names starting with {self.key.name_prefix}")

    def check_list_prefix(self, prefix: str) -> None:
        """Listing calls (v2+) must ask for a prefix inside the key's prefix."""
        if self.key.name_prefix and not prefix.startswith(self.key.name_prefix):
            raise unauthorized(
                f"key is restricted to names starting with {self.key.name_prefix}; "
                "pass a prefix within it"
            )


class Auth:
    def __init__(self, store: Store, token_ttl: float) -> None:
        self.store = store
        self.token_ttl_ms = int(token_ttl * 1000)

    # -- account authorization ---------------------------------------------------------------

    def key_from_basic(self, header: str | None) -> Key:
        """The key named by a ``Basic`` Authorization header, or 401."""
        if not header:
            raise missing_auth_token()
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise unauthorized("authorization must use Basic authentication")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthorized("malformed Basic authorization") from None
        key_id, sep, secret = decoded.partition(":")
        if not sep:
            raise unauthorized("malformed Basic authorization")
        key = self.store.get_key(key_id)
        if key is None and key_id == self.store.get_meta("account_id"):
            key = self.store.master_key()  # the account id works as the master key id
        if key is None or key.secret != secret:
            # What the real service answered in recorded traffic (B2-API.md §6.1 [R]).
            raise B2Error(
                401,
                "bad_auth_token",
                "invalid application key id or secret",
                {"WWW-Authenticate": 'BASIC realm="authorize_account"'},
            )
        if key.expires_ms is not None and key.expires_ms <= now_ms():
            raise unauthorized("application key has expired")
        return key

    def issue(
        self, key: Key, kind: str, data: dict[str, Any] | None = None, ttl_ms: int | None = None
    ) -> Token:
        ttl = self.token_ttl_ms if ttl_ms is None else ttl_ms
        expires = now_ms() + ttl
        if key.expires_ms is not None:
            expires = min(expires, key.expires_ms)
        tag = {"account": "acct", "upload": "upld", "part": "upld", "download": "dnld"}[kind]
        token = Token(ids.token(key.key_id, tag), kind, key.key_id, expires, dict(data or {}))
        self.store.put_token(token)
        return token

    # -- resolving tokens --------------------------------------------------------------------

    def resolve(self, value: str | None, kinds: tuple[str, ...] = ("account",)) -> Principal:
        """The principal behind a token of one of ``kinds``, or the matching 401."""
        if not value:
            raise missing_auth_token()
        token = self.store.get_token(value.strip())
        if token is None or token.kind not in kinds:
            raise bad_auth_token()
        if token.expires_ms <= now_ms():
            raise expired_auth_token()
        key = self.store.get_key(token.key_id)
        if key is None:
            raise bad_auth_token()
        return Principal(key=key, token=token, data=token.data)

    def expire_account_tokens(self) -> None:
        self.store.expire_tokens("account", now_ms())


def check_capabilities(caps: object, bucket_restricted: bool) -> list[str]:
    if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
        raise B2Error(400, "bad_request", "capabilities must be a non-empty list of strings")
    for cap in caps:
        if cap not in ALL_CAPABILITIES:
            raise B2Error(400, "bad_request", f"unknown capability: {cap}")
        if bucket_restricted and cap not in BUCKET_CAPABILITIES:
            raise B2Error(
                400, "bad_request", f"capability {cap} is not allowed for a bucket-restricted key"
            )
    return list(dict.fromkeys(caps))
