"""The emulator's records: plain dataclasses shared by the store and the handlers.

JSON shapes for the wire are built from these in :mod:`shapes`; the store persists them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Key:
    key_id: str
    secret: str
    name: str
    capabilities: list[str]
    bucket_ids: list[str] | None
    name_prefix: str | None
    expires_ms: int | None
    seq: int
    is_master: bool = False


@dataclass
class Token:
    token: str
    kind: str  # "account" | "upload" | "part" | "download"
    key_id: str
    expires_ms: int
    # upload: {"bucketId", "nonce"}; part: {"fileId", "nonce"};
    # download: {"bucketId", "prefix", "overrides": {...}}
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Bucket:
    bucket_id: str
    name: str
    type: str
    info: dict[str, str]
    cors: list[Any]
    lifecycle: list[Any]
    revision: int
    file_lock: bool = False
    default_retention: dict[str, Any] = field(
        default_factory=lambda: {"mode": None, "period": None}
    )
    default_sse: dict[str, Any] = field(default_factory=lambda: {"algorithm": None, "mode": None})
    replication: dict[str, Any] | None = None
    rules: list[dict[str, Any]] = field(default_factory=list)
    options: list[str] = field(default_factory=lambda: ["s3"])
    seq: int = 0


@dataclass
class FileVersion:
    file_id: str
    bucket_id: str
    name: str
    action: str  # "upload" | "hide" | "start"
    ts: int
    seq: int
    length: int
    sha1: str | None
    md5: str | None
    content_type: str | None
    info: dict[str, str]
    large: bool = False
    blob: str | None = None
    sse: dict[str, Any] | None = None
    retention: dict[str, Any] | None = None
    legal_hold: str | None = None


@dataclass
class Part:
    file_id: str
    number: int
    length: int
    sha1: str
    md5: str
    ts: int
    blob: str
