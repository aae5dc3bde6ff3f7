"""Typed, immutable results of B2 calls (B2-API.md §4).

Design
------
Each model is a frozen dataclass with a ``from_json`` classmethod that reads the API's JSON
object (camelCase) into Python names (snake_case). Parsing is strict about what the client
needs (an ``action`` or ``fileName`` missing is a :class:`B2UnexpectedResponse`) and lenient
about the rest (optional and authorization-filtered fields become ``None``), because B2 adds
fields over time. The JSON object itself is kept in ``raw`` (excluded from ``repr`` and
equality) for the fields not modelled here (replication, retention details, ...).

Mappings (``file_info``, ``bucket_info``, ``raw``) are read-only views. Views of JSON objects
are not copies: ``from_json`` takes over the object it is given (the client hands it each
answer just parsed and keeps no other reference), which matters in listings of 10,000 files.
Secrets (upload and download tokens, a new key's secret) are fields with ``repr=False``:
printing a model never shows one.
The account's own authorization token is not in any model; ``auth.py`` keeps it.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, TypeVar

from b2fs.b2.errors import B2UnexpectedResponse

__all__ = [
    "AccountAuthorization",
    "Allowed",
    "ApplicationKey",
    "Bucket",
    "CancelledLargeFile",
    "ContentRange",
    "DeletedFileVersion",
    "DownloadAuthorization",
    "DownloadInfo",
    "FileAction",
    "FileVersion",
    "FileVersionCursor",
    "LifecycleRule",
    "NewApplicationKey",
    "NotificationRule",
    "Page",
    "Part",
    "UploadUrl",
    "WebhookTarget",
]

JSON = dict[str, Any]
T = TypeVar("T")
C = TypeVar("C")

_EMPTY: Mapping[str, str] = MappingProxyType({})


def _empty_map() -> Mapping[str, Any]:
    return _EMPTY


_HEX40 = re.compile(r"[0-9a-f]{40}")


def _req(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = data.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise B2UnexpectedResponse(
            200, "unexpected_response", f"{what} has no valid {key!r} field", ""
        )
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def _str_map(value: Any) -> Mapping[str, str]:
    if not isinstance(value, Mapping) or not value:
        return _EMPTY
    return MappingProxyType({str(k): str(v) for k, v in value.items()})


def _opt_map(value: Any) -> Mapping[str, Any] | None:
    if not isinstance(value, Mapping):
        return None
    return MappingProxyType(value)


def _str_tuple(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(str(v) for v in value)


class Page(NamedTuple, Generic[T, C]):
    """One page of a list call: its ``items`` and the cursor to pass for the next page
    (``None`` when this was the last page). Unpacks as ``items, next_cursor = page``."""

    items: list[T]
    next_cursor: C | None


class FileVersionCursor(NamedTuple):
    """Where ``list_file_versions`` continues: ``nextFileName`` and ``nextFileId``."""

    file_name: str
    file_id: str | None


# --- account ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    """What the application key may do: capabilities and its bucket / name-prefix restriction."""

    capabilities: frozenset[str]
    bucket_id: str | None = None
    bucket_name: str | None = None
    name_prefix: str | None = None

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


@dataclass(frozen=True)
class AccountAuthorization:
    """The v3 ``b2_authorize_account`` result (B2-API.md §4.1), without the token."""

    account_id: str
    api_url: str
    download_url: str
    s3_api_url: str | None
    recommended_part_size: int
    absolute_minimum_part_size: int
    allowed: Allowed
    application_key_expiration_timestamp: int | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @classmethod
    def from_v3_json(cls, data: Mapping[str, Any]) -> tuple[AccountAuthorization, str]:
        """Parse the v3 shape; returns the authorization and the account token separately."""
        what = "b2_authorize_account response"
        token = _req(data, "authorizationToken", str, what)
        api_info = data.get("apiInfo")
        storage = api_info.get("storageApi") if isinstance(api_info, dict) else None
        if not isinstance(storage, dict):
            raise B2UnexpectedResponse(
                200,
                "unexpected_response",
                f"{what} has no apiInfo.storageApi (is the endpoint speaking API v3?)",
                "b2_authorize_account",
            )
        what = "apiInfo.storageApi"
        capabilities = storage.get("capabilities")
        if not isinstance(capabilities, list):
            raise B2UnexpectedResponse(
                200, "unexpected_response", f"{what} has no capabilities list", ""
            )
        allowed = Allowed(
            capabilities=frozenset(str(c) for c in capabilities),
            bucket_id=_opt_str(storage, "bucketId"),
            bucket_name=_opt_str(storage, "bucketName"),
            name_prefix=_opt_str(storage, "namePrefix"),
        )
        auth = cls(
            account_id=_req(data, "accountId", str, "b2_authorize_account response"),
            api_url=_req(storage, "apiUrl", str, what).rstrip("/"),
            download_url=_req(storage, "downloadUrl", str, what).rstrip("/"),
            s3_api_url=_opt_str(storage, "s3ApiUrl"),
            recommended_part_size=_req(storage, "recommendedPartSize", int, what),
            absolute_minimum_part_size=_req(storage, "absoluteMinimumPartSize", int, what),
            allowed=allowed,
            application_key_expiration_timestamp=_opt_int(
                data, "applicationKeyExpirationTimestamp"
            ),
            raw=MappingProxyType({k: v for k, v in data.items() if k != "authorizationToken"}),
        )
        return auth, token


# --- buckets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LifecycleRule:
    """A bucket lifecycle rule (B2-API.md §4.2); ``None`` days mean 'never'."""

    file_name_prefix: str = ""
    days_from_uploading_to_hiding: int | None = None
    days_from_hiding_to_deleting: int | None = None
    days_from_starting_to_canceling_unfinished_large_files: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LifecycleRule:
        return cls(
            file_name_prefix=_opt_str(data, "fileNamePrefix") or "",
            days_from_uploading_to_hiding=_opt_int(data, "daysFromUploadingToHiding"),
            days_from_hiding_to_deleting=_opt_int(data, "daysFromHidingToDeleting"),
            days_from_starting_to_canceling_unfinished_large_files=_opt_int(
                data, "daysFromStartingToCancelingUnfinishedLargeFiles"
            ),
        )

    def to_json(self) -> JSON:
        out: JSON = {
            "fileNamePrefix": self.file_name_prefix,
            "daysFromUploadingToHiding": self.days_from_uploading_to_hiding,
            "daysFromHidingToDeleting": self.days_from_hiding_to_deleting,
        }
        if self.days_from_starting_to_canceling_unfinished_large_files is not None:
            out["daysFromStartingToCancelingUnfinishedLargeFiles"] = (
                self.days_from_starting_to_canceling_unfinished_large_files
            )
        return out


@dataclass(frozen=True)
class Bucket:
    """A bucket (B2-API.md §4.2). ``cors_rules`` and the authorization-filtered settings are
    kept as the JSON B2 sent."""

    bucket_id: str
    bucket_name: str
    bucket_type: str
    account_id: str | None = None
    bucket_info: Mapping[str, str] = field(default_factory=_empty_map)
    revision: int | None = None
    lifecycle_rules: tuple[LifecycleRule, ...] = ()
    cors_rules: tuple[Mapping[str, Any], ...] = ()
    options: tuple[str, ...] = ()
    default_server_side_encryption: Mapping[str, Any] | None = None
    file_lock_configuration: Mapping[str, Any] | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Bucket:
        what = "bucket"
        rules = data.get("lifecycleRules")
        cors = data.get("corsRules")
        return cls(
            bucket_id=_req(data, "bucketId", str, what),
            bucket_name=_req(data, "bucketName", str, what),
            bucket_type=_req(data, "bucketType", str, what),
            account_id=_opt_str(data, "accountId"),
            bucket_info=_str_map(data.get("bucketInfo")),
            revision=_opt_int(data, "revision"),
            lifecycle_rules=tuple(LifecycleRule.from_json(r) for r in rules if isinstance(r, dict))
            if isinstance(rules, list)
            else (),
            cors_rules=tuple(MappingProxyType(dict(r)) for r in cors if isinstance(r, dict))
            if isinstance(cors, list)
            else (),
            options=_str_tuple(data.get("options")),
            default_server_side_encryption=_opt_map(data.get("defaultServerSideEncryption")),
            file_lock_configuration=_opt_map(data.get("fileLockConfiguration")),
            raw=MappingProxyType(dict(data)),
        )


# --- files ------------------------------------------------------------------------------------


class FileAction(enum.StrEnum):
    """What a file version is (B2-API.md §4.3). ``UNKNOWN`` stands for values B2 may add."""

    UPLOAD = "upload"
    HIDE = "hide"
    START = "start"
    FOLDER = "folder"
    COPY = "copy"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: str) -> FileAction:
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN


_FILE_ACTIONS = {action.value: action for action in FileAction}


@dataclass(frozen=True)
class FileVersion:
    """A file version, hide marker, unfinished large file or folder row (B2-API.md §4.3).

    ``content_sha1`` is what B2 sent: 40 hex digits, ``"none"`` (large files),
    ``"unverified:<hex>"``, or ``None``; :attr:`sha1` gives the usable digest. ``file_id`` is
    ``None`` only for folder rows.
    """

    file_name: str
    action: FileAction
    file_id: str | None = None
    bucket_id: str | None = None
    account_id: str | None = None
    content_length: int = 0
    content_sha1: str | None = None
    content_md5: str | None = None
    content_type: str | None = None
    file_info: Mapping[str, str] = field(default_factory=_empty_map)
    upload_timestamp: int = 0
    server_side_encryption: Mapping[str, Any] | None = None
    file_retention: Mapping[str, Any] | None = None
    legal_hold: Mapping[str, Any] | None = None
    replication_status: str | None = None
    raw: Mapping[str, Any] = field(default_factory=_empty_map, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileVersion:
        # Called once per name of a listing (10,000 per page): the optional fields are read
        # inline rather than through the helpers above, which costs a third of the time.
        what = "file version"
        get = data.get
        action = _FILE_ACTIONS.get(_req(data, "action", str, what), FileAction.UNKNOWN)
        file_id = get("fileId")
        if not isinstance(file_id, str):
            if action is not FileAction.FOLDER:
                raise B2UnexpectedResponse(
                    200, "unexpected_response", f"{what} has no valid 'fileId' field", ""
                )
            file_id = None
        length = _opt_int(data, "contentLength")
        if length is None:
            length = _opt_int(data, "size") or 0
        sha1, md5, content_type = get("contentSha1"), get("contentMd5"), get("contentType")
        encryption, retention, hold = (
            get("serverSideEncryption"),
            get("fileRetention"),
            get("legalHold"),
        )
        return cls(
            file_name=_req(data, "fileName", str, what),
            action=action,
            file_id=file_id,
            bucket_id=_opt_str(data, "bucketId"),
            account_id=_opt_str(data, "accountId"),
            content_length=length,
            content_sha1=sha1 if isinstance(sha1, str) else None,
            content_md5=md5 if isinstance(md5, str) else None,
            content_type=content_type if isinstance(content_type, str) else None,
            file_info=_str_map(get("fileInfo")),
            upload_timestamp=_opt_int(data, "uploadTimestamp") or 0,
            server_side_encryption=_opt_map(encryption) if encryption is not None else None,
            file_retention=_opt_map(retention) if retention is not None else None,
            legal_hold=_opt_map(hold) if hold is not None else None,
            replication_status=_opt_str(data, "replicationStatus"),
            raw=MappingProxyType(data),
        )

    @property
    def is_folder(self) -> bool:
        return self.action is FileAction.FOLDER

    @property
    def is_hide_marker(self) -> bool:
        return self.action is FileAction.HIDE

    @property
    def sha1(self) -> str | None:
        """The content's SHA1 as 40 lowercase hex digits, if known: the ``contentSha1``
        (with any ``unverified:`` prefix removed) or, for large files, ``large_file_sha1``."""
        return usable_sha1(self.content_sha1, self.file_info)

    @property
    def sha1_verified(self) -> bool:
        """True when B2 itself checked :attr:`sha1` at upload (not ``unverified:``, not a
        client-supplied ``large_file_sha1``)."""
        value = (self.content_sha1 or "").lower()
        return bool(_HEX40.fullmatch(value))

    @property
    def src_last_modified_millis(self) -> int | None:
        value = self.file_info.get("src_last_modified_millis")
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            return None


def usable_sha1(content_sha1: str | None, file_info: Mapping[str, str]) -> str | None:
    """The 40-hex SHA1 from a ``contentSha1`` value or, failing that, ``large_file_sha1``."""
    value = (content_sha1 or "").lower()
    if value.startswith("unverified:"):
        value = value[len("unverified:") :]
    if _HEX40.fullmatch(value):
        return value
    large = file_info.get("large_file_sha1", "").lower()
    if _HEX40.fullmatch(large):
        return large
    return None


@dataclass(frozen=True)
class DeletedFileVersion:
    """The result of ``b2_delete_file_version``."""

    file_id: str
    file_name: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DeletedFileVersion:
        what = "b2_delete_file_version response"
        return cls(
            file_id=_req(data, "fileId", str, what), file_name=_req(data, "fileName", str, what)
        )


@dataclass(frozen=True)
class CancelledLargeFile:
    """The result of ``b2_cancel_large_file``."""

    file_id: str
    file_name: str
    bucket_id: str | None = None
    account_id: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CancelledLargeFile:
        what = "b2_cancel_large_file response"
        return cls(
            file_id=_req(data, "fileId", str, what),
            file_name=_req(data, "fileName", str, what),
            bucket_id=_opt_str(data, "bucketId"),
            account_id=_opt_str(data, "accountId"),
        )


@dataclass(frozen=True)
class Part:
    """A part of a large file (B2-API.md §4.4)."""

    file_id: str
    part_number: int
    content_length: int
    content_sha1: str
    content_md5: str | None = None
    upload_timestamp: int = 0
    server_side_encryption: Mapping[str, Any] | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Part:
        what = "part"
        return cls(
            file_id=_req(data, "fileId", str, what),
            part_number=_req(data, "partNumber", int, what),
            content_length=_req(data, "contentLength", int, what),
            content_sha1=_req(data, "contentSha1", str, what),
            content_md5=_opt_str(data, "contentMd5"),
            upload_timestamp=_opt_int(data, "uploadTimestamp") or 0,
            server_side_encryption=_opt_map(data.get("serverSideEncryption")),
        )


@dataclass(frozen=True)
class UploadUrl:
    """An upload URL and its token, for ``b2_upload_file`` (``bucket_id`` set) or
    ``b2_upload_part`` (``file_id`` set). Use by one upload at a time. The URL and the token
    are not shown by ``repr``."""

    upload_url: str = field(repr=False)
    authorization_token: str = field(repr=False)
    bucket_id: str | None = None
    file_id: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadUrl:
        what = "upload URL response"
        return cls(
            upload_url=_req(data, "uploadUrl", str, what),
            authorization_token=_req(data, "authorizationToken", str, what),
            bucket_id=_opt_str(data, "bucketId"),
            file_id=_opt_str(data, "fileId"),
        )


class ContentRange(NamedTuple):
    """A ``Content-Range: bytes start-end/total`` (``end`` inclusive)."""

    start: int
    end: int
    total: int


@dataclass(frozen=True)
class DownloadInfo:
    """What the headers of a download response say (B2-API.md §8.2).

    ``content_length`` is the length of *this* response's body; ``size`` the whole file's
    (from ``Content-Range`` on a 206, else the body length). ``file_info`` holds the decoded
    ``X-Bz-Info-*`` headers; ``headers`` the standard ones B2 derives from ``b2-*`` info
    (``Cache-Control``, ``Content-Disposition``, ...).
    """

    file_id: str
    file_name: str
    content_length: int
    size: int
    content_type: str | None
    content_sha1: str | None
    upload_timestamp: int | None
    file_info: Mapping[str, str] = field(default_factory=_empty_map)
    content_range: ContentRange | None = None
    headers: Mapping[str, str] = field(default_factory=_empty_map)

    @property
    def sha1(self) -> str | None:
        """The whole file's SHA1 if B2 knows it (see :func:`usable_sha1`)."""
        return usable_sha1(self.content_sha1, self.file_info)


@dataclass(frozen=True)
class DownloadAuthorization:
    """A token for downloading names under ``file_name_prefix`` of a (private) bucket."""

    bucket_id: str
    file_name_prefix: str
    authorization_token: str = field(repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DownloadAuthorization:
        what = "b2_get_download_authorization response"
        return cls(
            bucket_id=_req(data, "bucketId", str, what),
            file_name_prefix=_req(data, "fileNamePrefix", str, what),
            authorization_token=_req(data, "authorizationToken", str, what),
        )


# --- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplicationKey:
    """An application key without its secret (B2-API.md §4.5, v3 shape)."""

    application_key_id: str
    key_name: str
    capabilities: tuple[str, ...]
    account_id: str | None = None
    bucket_id: str | None = None
    name_prefix: str | None = None
    expiration_timestamp: int | None = None
    options: tuple[str, ...] = ()

    @classmethod
    def _fields_from_json(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        what = "application key"
        return {
            "application_key_id": _req(data, "applicationKeyId", str, what),
            "key_name": _req(data, "keyName", str, what),
            "capabilities": _str_tuple(data.get("capabilities")),
            "account_id": _opt_str(data, "accountId"),
            "bucket_id": _opt_str(data, "bucketId"),
            "name_prefix": _opt_str(data, "namePrefix"),
            "expiration_timestamp": _opt_int(data, "expirationTimestamp"),
            "options": _str_tuple(data.get("options")),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ApplicationKey:
        return cls(**cls._fields_from_json(data))


@dataclass(frozen=True)
class NewApplicationKey(ApplicationKey):
    """A key just created: the only time B2 shows its secret, ``application_key`` (not in
    ``repr``)."""

    application_key: str = field(default="", repr=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NewApplicationKey:
        fields = cls._fields_from_json(data)
        fields["application_key"] = _req(data, "applicationKey", str, "b2_create_key response")
        return cls(**fields)


# --- event notifications ----------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookTarget:
    """Where a notification rule delivers: a webhook URL (B2-API.md §4.6, §11)."""

    url: str
    custom_headers: tuple[tuple[str, str], ...] = ()
    hmac_sha256_signing_secret: str | None = field(default=None, repr=False)
    max_events_per_batch: int | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WebhookTarget:
        headers = data.get("customHeaders")
        return cls(
            url=_req(data, "url", str, "targetConfiguration"),
            custom_headers=tuple(
                (str(h.get("name")), str(h.get("value"))) for h in headers if isinstance(h, dict)
            )
            if isinstance(headers, list)
            else (),
            hmac_sha256_signing_secret=_opt_str(data, "hmacSha256SigningSecret"),
            max_events_per_batch=_opt_int(data, "maxEventsPerBatch"),
        )

    def to_json(self) -> JSON:
        out: JSON = {"targetType": "webhook", "url": self.url}
        if self.custom_headers:
            out["customHeaders"] = [{"name": n, "value": v} for n, v in self.custom_headers]
        if self.hmac_sha256_signing_secret is not None:
            out["hmacSha256SigningSecret"] = self.hmac_sha256_signing_secret
        if self.max_events_per_batch is not None:
            out["maxEventsPerBatch"] = self.max_events_per_batch
        return out


@dataclass(frozen=True)
class NotificationRule:
    """A bucket event-notification rule. ``is_suspended`` and ``suspension_reason`` are set by
    B2 (ignored when setting rules)."""

    name: str
    event_types: tuple[str, ...]
    target: WebhookTarget
    object_name_prefix: str = ""
    is_enabled: bool = True
    max_events_per_batch: int | None = None
    is_suspended: bool = False
    suspension_reason: str = ""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NotificationRule:
        what = "event notification rule"
        target = _req(data, "targetConfiguration", dict, what)
        return cls(
            name=_req(data, "name", str, what),
            event_types=_str_tuple(data.get("eventTypes")),
            target=WebhookTarget.from_json(target),
            object_name_prefix=_opt_str(data, "objectNamePrefix") or "",
            is_enabled=bool(data.get("isEnabled", True)),
            max_events_per_batch=_opt_int(data, "maxEventsPerBatch"),
            is_suspended=bool(data.get("isSuspended", False)),
            suspension_reason=_opt_str(data, "suspensionReason") or "",
        )

    def to_json(self) -> JSON:
        out: JSON = {
            "name": self.name,
            "eventTypes": list(self.event_types),
            "objectNamePrefix": self.object_name_prefix,
            "isEnabled": self.is_enabled,
            "targetConfiguration": self.target.to_json(),
        }
        if self.max_events_per_batch is not None:
            out["maxEventsPerBatch"] = self.max_events_per_batch
        return out


def parse_list(data: Mapping[str, Any], key: str, parser: Any, what: str) -> list[Any]:
    """Parse ``data[key]`` (a JSON array of objects) with ``parser``."""
    items = data.get(key)
    if not isinstance(items, list):
        raise B2UnexpectedResponse(
            200, "unexpected_response", f"{what} response has no {key!r} list", ""
        )
    return [parser(item) for item in items if isinstance(item, dict)]
