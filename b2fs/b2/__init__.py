"""The async B2 Native API client (API v3) on trio and httpx.

Start with :class:`B2Client` (``await B2Client.connect(key_id, key, endpoint=...)``); results
are the models of :mod:`b2fs.b2.models`, failures the errors of :mod:`b2fs.b2.errors`. The
package shares no code with ``b2fs.emulator``: the two meet only on the wire.

Modules, one job each: ``client`` (one method per API call), ``auth`` (authorization and its
single-flight renewal), ``transport`` (the httpx session and typed errors), ``retry`` (the
retry policy), ``models``, ``errors``, ``encoding`` (B2's percent-encoding), ``validation``
(refusals before any request), ``sources`` (upload data), ``downloads`` (download streams),
``upload_pool`` (upload URL leases), ``credentials`` (where the key comes from), ``stats``
(counters).
"""

from b2fs.b2.client import B2Client, Pager
from b2fs.b2.credentials import (
    DEFAULT_ENDPOINT,
    Credentials,
    load_credentials,
    resolve_endpoint,
)
from b2fs.b2.downloads import DownloadStream
from b2fs.b2.errors import (
    B2AccessDenied,
    B2AlreadyHidden,
    B2AuthTokenError,
    B2BadCredentials,
    B2BadRequest,
    B2BucketNotEmpty,
    B2BucketNotFound,
    B2CapExceeded,
    B2ChecksumMismatch,
    B2Conflict,
    B2ConnectionError,
    B2DuplicateBucketName,
    B2Error,
    B2FileNotPresent,
    B2InternalError,
    B2InvalidInput,
    B2NotFound,
    B2RangeNotSatisfiable,
    B2RequestTimeout,
    B2ServiceError,
    B2ServiceUnavailable,
    B2SourceError,
    B2TooManyRequests,
    B2UnexpectedResponse,
    B2UploadTokenBusy,
    CredentialsError,
)
from b2fs.b2.models import (
    AccountAuthorization,
    Allowed,
    ApplicationKey,
    Bucket,
    CancelledLargeFile,
    ContentRange,
    DeletedFileVersion,
    DownloadAuthorization,
    DownloadInfo,
    FileAction,
    FileVersion,
    FileVersionCursor,
    LifecycleRule,
    NewApplicationKey,
    NotificationRule,
    Page,
    Part,
    UploadUrl,
    WebhookTarget,
)
from b2fs.b2.retry import RetryPolicy
from b2fs.b2.sources import BytesSource, FileSource, UploadSource
from b2fs.b2.stats import ClientStats

__all__ = [
    "DEFAULT_ENDPOINT",
    "AccountAuthorization",
    "Allowed",
    "ApplicationKey",
    "B2AccessDenied",
    "B2AlreadyHidden",
    "B2AuthTokenError",
    "B2BadCredentials",
    "B2BadRequest",
    "B2BucketNotEmpty",
    "B2BucketNotFound",
    "B2CapExceeded",
    "B2ChecksumMismatch",
    "B2Client",
    "B2Conflict",
    "B2ConnectionError",
    "B2DuplicateBucketName",
    "B2Error",
    "B2FileNotPresent",
    "B2InternalError",
    "B2InvalidInput",
    "B2NotFound",
    "B2RangeNotSatisfiable",
    "B2RequestTimeout",
    "B2ServiceError",
    "B2ServiceUnavailable",
    "B2SourceError",
    "B2TooManyRequests",
    "B2UnexpectedResponse",
    "B2UploadTokenBusy",
    "Bucket",
    "BytesSource",
    "CancelledLargeFile",
    "ClientStats",
    "ContentRange",
    "Credentials",
    "CredentialsError",
    "DeletedFileVersion",
    "DownloadAuthorization",
    "DownloadInfo",
    "DownloadStream",
    "FileAction",
    "FileSource",
    "FileVersion",
    "FileVersionCursor",
    "LifecycleRule",
    "NewApplicationKey",
    "NotificationRule",
    "Page",
    "Pager",
    "Part",
    "RetryPolicy",
    "UploadSource",
    "UploadUrl",
    "WebhookTarget",
    "load_credentials",
    "resolve_endpoint",
]
