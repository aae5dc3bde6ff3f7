"""``B2Client``: one async method per B2 Native API call (API v3), on trio and httpx.

Design
------
The client composes the other modules; each call goes through the same three layers:

1. validation (``validation.py``): bad arguments raise :class:`B2InvalidInput` before any
   request is made;
2. the retry policy (``retry.py``) around one *attempt*;
3. inside an attempt, the account token (``auth.py``): a 401 ``bad_auth_token`` /
   ``expired_auth_token`` renews the token once for everyone waiting (single flight) and
   repeats the request; then the single HTTP exchange (``transport.py``).

Results are the frozen models of ``models.py``; failures the typed errors of ``errors.py``.

Uploads stream an :class:`~b2fs.b2.sources.UploadSource` (``bytes`` or a file range) with an
exact ``Content-Length``; the SHA1 goes up front when the caller knows it, otherwise it is
computed while streaming and sent as ``hex_digits_at_end``; the SHA1 B2 reports is checked
against it. Each upload attempt leases an upload URL from a pool (per bucket, and per large
file for parts): the URL serves one upload at a time, goes back to the pool after a success
and is dropped after any failure, so a retry runs on a fresh URL (B2-API.md §7).

Downloads: :meth:`B2Client.download_file_by_id` / :meth:`~B2Client.download_file_by_name` are
async context managers yielding a :class:`~b2fs.b2.downloads.DownloadStream` (headers parsed,
body streamed, SHA1 checked when the whole file is read). The ``download_bytes_*`` and
``download_to_file_*`` helpers read a byte range with retries that *resume* after the bytes
already received, pinned to the file id of the first answer (a download by name never mixes
two versions). Byte ranges are Python-style everywhere: ``offset`` and ``length``.

Listings: ``list_*`` return async iterators over every item, paging with the right
continuation fields; ``list_*_page`` return one :class:`~b2fs.b2.models.Page`
(``items, next_cursor``) for callers that page themselves.

Keys restricted to one bucket and a name prefix: ``list_buckets`` without a bucket asks for
the key's bucket, and ``list_file_names``/``list_file_versions``/
``list_unfinished_large_files`` without a prefix use the key's prefix (B2 refuses wider asks).

Nothing here logs or raises a key or a token; the per-request DEBUG lines come from
``transport.py``.
"""

from __future__ import annotations

import logging
import os
import time
import urllib.parse
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, Generic, Literal, TypeVar

import httpx
import trio

from b2fs import __version__
from b2fs.b2 import encoding, threaded, validation
from b2fs.b2.auth import API_VERSION, Authorizer, AuthState
from b2fs.b2.credentials import DEFAULT_ENDPOINT, Credentials
from b2fs.b2.downloads import (
    BytesSink,
    CallbackSink,
    DownloadSink,
    DownloadStream,
    FileSink,
    Sha1Accumulator,
    parse_download_headers,
)
from b2fs.b2.errors import (
    B2AlreadyHidden,
    B2AuthTokenError,
    B2BadRequest,
    B2ChecksumMismatch,
    B2Error,
    B2FileNotPresent,
    B2InvalidInput,
    B2NotFound,
    B2RangeNotSatisfiable,
    B2SourceError,
    B2UnexpectedResponse,
    B2UploadTokenBusy,
)
from b2fs.b2.models import (
    AccountAuthorization,
    Allowed,
    ApplicationKey,
    Bucket,
    CancelledLargeFile,
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
    parse_list,
)
from b2fs.b2.posting import INLINE_LIMIT, PostingPool
from b2fs.b2.retry import RetryPolicy, is_retryable
from b2fs.b2.sources import DEFAULT_CHUNK_SIZE, BytesSource, FileSource, UploadBody, UploadSource
from b2fs.b2.stats import ClientStats
from b2fs.b2.transport import DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, Redactor, Transport
from b2fs.b2.upload_pool import LeasedUrl, UploadUrlPool

__all__ = ["B2Client", "Pager"]

log = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C")

MAX_FILE_LIST_PAGE = 10_000
MAX_PARTS_PAGE = 1000
MAX_UNFINISHED_PAGE = 100
MAX_KEYS_PAGE = 10_000
# Copies are done by B2 before it answers: give them far longer than other calls.
COPY_TIMEOUT = httpx.Timeout(connect=10.0, read=1200.0, write=60.0, pool=120.0)
UploadData = UploadSource | bytes | bytearray | memoryview


def _on_trio_thread(sink: Callable[[memoryview], None]) -> Callable[[bytes], Awaitable[None]]:
    """A thread sink called on the trio thread instead (the httpx path, in tests)."""

    async def consume(chunk: bytes) -> None:
        sink(memoryview(chunk))

    return consume


def _upload_retryable(exc: BaseException) -> bool:
    """Uploads also retry (on a fresh URL) when the upload token was refused or busy."""
    return is_retryable(exc) or isinstance(exc, B2AuthTokenError | B2UploadTokenBusy)


def _body(**fields: Any) -> dict[str, Any]:
    """A JSON request body without the ``None`` fields (B2 treats null as absent)."""
    return {key: value for key, value in fields.items() if value is not None}


def _parse(endpoint: str, parser: Callable[[Any], T], data: Any) -> T:
    try:
        return parser(data)
    except B2UnexpectedResponse as exc:
        exc.endpoint = exc.endpoint or endpoint
        raise


def _range_header(offset: int, length: int | None) -> str | None:
    if offset == 0 and length is None:
        return None
    if length is None:
        return f"bytes={offset}-"
    return f"bytes={offset}-{offset + length - 1}"


def _as_source(data: UploadData, endpoint: str) -> UploadSource:
    if isinstance(data, UploadSource):
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return BytesSource(data)
    raise B2InvalidInput(
        f"upload data must be bytes or an UploadSource (FileSource for a file), "
        f"not {type(data).__name__}",
        endpoint,
    )


class Pager(Generic[T, C]):
    """An async iterator over every item of a paged list call.

    It fetches one page at a time (``fetch(cursor)``) and stops when B2 gives no next cursor.
    Iterate it once; :attr:`next_cursor` tells where the next page would start.
    """

    def __init__(self, fetch: Callable[[C | None], Awaitable[Page[T, C]]], start: C | None):
        self._fetch = fetch
        self.next_cursor: C | None = start
        self._buffer: deque[T] = deque()
        self._done = False

    def __aiter__(self) -> Pager[T, C]:
        return self

    async def __anext__(self) -> T:
        while not self._buffer:
            if self._done:
                raise StopAsyncIteration
            cursor = self.next_cursor
            items, next_cursor = await self._fetch(cursor)
            if not items and next_cursor is not None and next_cursor == cursor:
                # An empty page that points back at itself would loop forever.
                raise B2UnexpectedResponse(
                    200, "unexpected_response", "a list call made no progress", ""
                )
            self._buffer.extend(items)
            self.next_cursor = next_cursor
            if next_cursor is None:
                self._done = True
        return self._buffer.popleft()

    async def collect(self) -> list[T]:
        """Every remaining item, in a list."""
        return [item async for item in self]


class B2Client:
    """An authorized connection to one B2 account (see the module docstring).

    Make one with ``await B2Client.connect(key_id, key)``; use it as an async context manager
    or call :meth:`aclose`. Runs inside a trio event loop.
    """

    def __init__(
        self,
        key_id: str,
        key: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        retry_policy: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
        upload_chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_idle_upload_urls: int = 16,
    ) -> None:
        """Set up without any I/O; :meth:`connect` also authorizes."""
        if not isinstance(key_id, str) or not key_id or not isinstance(key, str) or not key:
            raise B2InvalidInput("the key id and the key must be non-empty strings")
        if not endpoint.startswith(("http://", "https://")):
            raise B2InvalidInput(f"endpoint {endpoint!r} must start with http:// or https://")
        self.endpoint = endpoint.rstrip("/")
        self.stats = ClientStats()
        self.retry_policy = retry_policy or RetryPolicy()
        self._redactor = Redactor()
        self._user_agent = user_agent or f"b2fs/{__version__} httpx/{httpx.__version__}"
        self._read_timeout = timeout.read or 60.0
        self._download_threads = trio.CapacityLimiter(max_connections)
        self._upload_slots = trio.CapacityLimiter(max_connections)
        self._posting = PostingPool(self._read_timeout)
        # The bulk paths (threaded.py, posting.py) talk HTTP themselves: not when a test
        # injects an httpx transport.
        self._own_http_allowed = transport is None
        self._transport = Transport(
            stats=self.stats,
            redactor=self._redactor,
            timeout=timeout,
            max_connections=max_connections,
            user_agent=self._user_agent,
            transport=transport,
            trust_env=trust_env,
        )
        self._auth = Authorizer(self._transport, key_id, key, self.endpoint, self.retry_policy)
        self._chunk_size = upload_chunk_size
        self._max_idle_urls = max_idle_upload_urls
        self._bucket_pools: dict[str, UploadUrlPool] = {}
        self._part_pools: dict[str, UploadUrlPool] = {}

    @classmethod
    async def connect(
        cls,
        key_id: str,
        key: str,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        retry_policy: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        user_agent: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
        upload_chunk_size: int = DEFAULT_CHUNK_SIZE,
        max_idle_upload_urls: int = 16,
    ) -> B2Client:
        """A client for the key, authorized (``b2_authorize_account``) and ready.

        ``endpoint``: where to authorize (B2's by default; the emulator's URL for tests).
        ``retry_policy``: the one :class:`RetryPolicy` for every call. ``timeout``: httpx
        timeouts (connect 10 s, read/write 60 s, waiting for a pooled connection 120 s).
        ``max_connections``: connections kept alive to B2 (64). ``transport``: an httpx
        transport to use instead of the network (tests). ``trust_env``: honour the proxy
        environment variables (for API calls; downloads and file uploads connect directly).
        ``upload_chunk_size``: bytes read per chunk of an upload. ``max_idle_upload_urls``:
        idle upload URLs kept per bucket and per large file.
        A refused key raises :class:`B2BadCredentials`.
        """
        client = cls(
            key_id,
            key,
            endpoint=endpoint,
            retry_policy=retry_policy,
            timeout=timeout,
            max_connections=max_connections,
            user_agent=user_agent,
            transport=transport,
            trust_env=trust_env,
            upload_chunk_size=upload_chunk_size,
            max_idle_upload_urls=max_idle_upload_urls,
        )
        try:
            await client.authorize_account()
        except BaseException:
            await client.aclose()
            raise
        return client

    @classmethod
    async def from_credentials(
        cls, credentials: Credentials, *, endpoint: str = DEFAULT_ENDPOINT, **options: Any
    ) -> B2Client:
        """:meth:`connect` with loaded :class:`~b2fs.b2.credentials.Credentials`
        (``options`` as for :meth:`connect`)."""
        return await cls.connect(credentials.key_id, credentials.key, endpoint=endpoint, **options)

    async def aclose(self) -> None:
        """Close the connections. The client cannot be used afterwards."""
        self._bucket_pools.clear()
        self._part_pools.clear()
        await self._posting.aclose()
        await self._transport.aclose()

    async def __aenter__(self) -> B2Client:
        if self._auth.state is None:
            await self.authorize_account()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        state = self._auth.state
        who = f" account={state.account.account_id}" if state else " (not authorized)"
        return f"<B2Client endpoint={self.endpoint!r}{who}>"

    # --- account ------------------------------------------------------------------------------

    @property
    def account(self) -> AccountAuthorization:
        """The current authorization (URLs, part sizes, what the key may do)."""
        state = self._auth.state
        if state is None:
            raise RuntimeError("the client is not authorized yet: use B2Client.connect()")
        return state.account

    @property
    def allowed(self) -> Allowed:
        """The key's capabilities and bucket / name-prefix restriction."""
        return self.account.allowed

    @property
    def account_id(self) -> str:
        return self.account.account_id

    async def authorize_account(self) -> AccountAuthorization:
        """``b2_authorize_account`` (v3): (re-)authorize now and return the result."""
        state = await self._auth.authorize()
        return state.account

    # --- the layers ---------------------------------------------------------------------------

    async def _with_auth(self, operation: Callable[[AuthState], Awaitable[T]]) -> T:
        """Run ``operation`` with the account token, renewing it (single flight) when B2 says
        it is expired or invalid; at most twice per attempt."""
        state = await self._auth.current()
        renewals = 0
        while True:
            try:
                return await operation(state)
            except B2AuthTokenError:
                if renewals >= 2:
                    raise
                renewals += 1
                state = await self._auth.reauthorize(state.token)

    def _api_url(self, state: AuthState, endpoint: str) -> str:
        return f"{state.account.api_url}/b2api/{API_VERSION}/{endpoint}"

    async def _call_once(
        self,
        state: AuthState,
        endpoint: str,
        body: Mapping[str, Any] | None,
        *,
        method: str = "POST",
        params: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> dict[str, Any]:
        return await self._transport.json_call(
            endpoint,
            method,
            self._api_url(state, endpoint),
            authorization=state.token,
            body=body,
            params=params,
            timeout=timeout,
        )

    async def _call(
        self,
        endpoint: str,
        body: Mapping[str, Any] | None = None,
        *,
        method: str = "POST",
        params: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> dict[str, Any]:
        """A JSON API call with re-authorization and retries."""

        async def attempt(_: int) -> dict[str, Any]:
            return await self._with_auth(
                lambda state: self._call_once(
                    state, endpoint, body, method=method, params=params, timeout=timeout
                )
            )

        return await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)

    # --- buckets ------------------------------------------------------------------------------

    async def create_bucket(
        self,
        bucket_name: str,
        bucket_type: Literal["allPrivate", "allPublic"] = "allPrivate",
        *,
        bucket_info: Mapping[str, str] | None = None,
        cors_rules: Sequence[Mapping[str, Any]] | None = None,
        lifecycle_rules: Sequence[LifecycleRule] | None = None,
        file_lock_enabled: bool | None = None,
        default_server_side_encryption: Mapping[str, Any] | None = None,
    ) -> Bucket:
        """``b2_create_bucket``: a new bucket (name: 6-63 letters, digits, '-')."""
        endpoint = "b2_create_bucket"
        validation.check_bucket_name_for_create(bucket_name, endpoint)
        validation.check_bucket_type(bucket_type, endpoint)
        info = validation.check_bucket_info(bucket_info, endpoint)
        body = _body(
            accountId=self.account_id,
            bucketName=bucket_name,
            bucketType=bucket_type,
            bucketInfo=info,
            corsRules=[dict(r) for r in cors_rules] if cors_rules is not None else None,
            lifecycleRules=[r.to_json() for r in lifecycle_rules]
            if lifecycle_rules is not None
            else None,
            fileLockEnabled=file_lock_enabled,
            defaultServerSideEncryption=dict(default_server_side_encryption)
            if default_server_side_encryption is not None
            else None,
        )
        return _parse(endpoint, Bucket.from_json, await self._call(endpoint, body))

    async def list_buckets(
        self,
        *,
        bucket_id: str | None = None,
        bucket_name: str | None = None,
        bucket_types: Sequence[str] = ("all",),
    ) -> list[Bucket]:
        """``b2_list_buckets``: the buckets (sorted by name), or the one asked for (an empty
        list when it does not exist). A key restricted to a bucket lists that bucket."""
        endpoint = "b2_list_buckets"
        if bucket_id is not None:
            validation.check_id(bucket_id, "bucket id", endpoint)
        if bucket_name is not None:
            validation.check_bucket_name(bucket_name, endpoint)
        if isinstance(bucket_types, str) or not bucket_types:
            raise B2InvalidInput("bucket_types must be a non-empty list of strings", endpoint)
        if bucket_id is None and bucket_name is None and self.allowed.bucket_id is not None:
            bucket_id = self.allowed.bucket_id
        body = _body(
            accountId=self.account_id,
            bucketId=bucket_id,
            bucketName=bucket_name,
            bucketTypes=list(bucket_types),
        )
        data = await self._call(endpoint, body)
        return _parse(
            endpoint, lambda d: parse_list(d, "buckets", Bucket.from_json, endpoint), data
        )

    async def get_bucket(self, bucket_name: str) -> Bucket:
        """The bucket called ``bucket_name`` (``b2_list_buckets``); :class:`B2NotFound` if
        there is none the key can see."""
        buckets = await self.list_buckets(bucket_name=bucket_name)
        for bucket in buckets:
            if bucket.bucket_name == bucket_name:
                return bucket
        raise B2NotFound(404, "not_found", f"no bucket named {bucket_name!r}", "b2_list_buckets")

    async def update_bucket(
        self,
        bucket_id: str,
        *,
        bucket_type: Literal["allPrivate", "allPublic"] | None = None,
        bucket_info: Mapping[str, str] | None = None,
        cors_rules: Sequence[Mapping[str, Any]] | None = None,
        lifecycle_rules: Sequence[LifecycleRule] | None = None,
        default_server_side_encryption: Mapping[str, Any] | None = None,
        default_retention: Mapping[str, Any] | None = None,
        file_lock_enabled: bool | None = None,
        if_revision_is: int | None = None,
    ) -> Bucket:
        """``b2_update_bucket``: change the settings given (the others stay); with
        ``if_revision_is`` only if the bucket is still at that revision (else B2Conflict)."""
        endpoint = "b2_update_bucket"
        validation.check_id(bucket_id, "bucket id", endpoint)
        if bucket_type is not None:
            validation.check_bucket_type(bucket_type, endpoint)
        info = validation.check_bucket_info(bucket_info, endpoint)
        if if_revision_is is not None:
            validation.check_int_range(if_revision_is, 0, 2**62, "if_revision_is", endpoint)
        changes = _body(
            bucketType=bucket_type,
            bucketInfo=info,
            corsRules=[dict(r) for r in cors_rules] if cors_rules is not None else None,
            lifecycleRules=[r.to_json() for r in lifecycle_rules]
            if lifecycle_rules is not None
            else None,
            defaultServerSideEncryption=dict(default_server_side_encryption)
            if default_server_side_encryption is not None
            else None,
            defaultRetention=dict(default_retention) if default_retention is not None else None,
            fileLockEnabled=file_lock_enabled,
        )
        if not changes:
            raise B2InvalidInput("update_bucket needs at least one setting to change", endpoint)
        body = {
            **changes,
            **_body(accountId=self.account_id, bucketId=bucket_id, ifRevisionIs=if_revision_is),
        }
        return _parse(endpoint, Bucket.from_json, await self._call(endpoint, body))

    async def delete_bucket(self, bucket_id: str) -> Bucket:
        """``b2_delete_bucket``: delete an empty bucket; returns it as it was."""
        endpoint = "b2_delete_bucket"
        validation.check_id(bucket_id, "bucket id", endpoint)
        body = _body(accountId=self.account_id, bucketId=bucket_id)
        return _parse(endpoint, Bucket.from_json, await self._call(endpoint, body))

    # --- notification rules -------------------------------------------------------------------

    async def set_bucket_notification_rules(
        self, bucket_id: str, rules: Sequence[NotificationRule]
    ) -> list[NotificationRule]:
        """``b2_set_bucket_notification_rules``: replace all rules (``[]`` removes them)."""
        endpoint = "b2_set_bucket_notification_rules"
        validation.check_id(bucket_id, "bucket id", endpoint)
        if len(rules) > 25:
            raise B2InvalidInput(f"{len(rules)} rules; B2 allows at most 25 per bucket", endpoint)
        body = {"bucketId": bucket_id, "eventNotificationRules": [r.to_json() for r in rules]}
        data = await self._call(endpoint, body)
        return _parse(
            endpoint,
            lambda d: parse_list(d, "eventNotificationRules", NotificationRule.from_json, endpoint),
            data,
        )

    async def get_bucket_notification_rules(self, bucket_id: str) -> list[NotificationRule]:
        """``b2_get_bucket_notification_rules`` (sent as GET, like b2sdk)."""
        endpoint = "b2_get_bucket_notification_rules"
        validation.check_id(bucket_id, "bucket id", endpoint)
        data = await self._call(endpoint, None, method="GET", params={"bucketId": bucket_id})
        return _parse(
            endpoint,
            lambda d: parse_list(d, "eventNotificationRules", NotificationRule.from_json, endpoint),
            data,
        )

    # --- listing files ------------------------------------------------------------------------

    def _default_prefix(self, bucket_id: str, prefix: str) -> str:
        allowed = self.allowed
        if not prefix and allowed.name_prefix and allowed.bucket_id in (None, bucket_id):
            return allowed.name_prefix
        return prefix

    async def list_file_names_page(
        self,
        bucket_id: str,
        *,
        start_file_name: str | None = None,
        prefix: str = "",
        delimiter: str | None = None,
        max_file_count: int = MAX_FILE_LIST_PAGE,
    ) -> Page[FileVersion, str]:
        """One page of ``b2_list_file_names``: the latest visible version of each name from
        ``start_file_name`` on (folder rows with ``delimiter``) and the next start name."""
        endpoint = "b2_list_file_names"
        self._check_listing(endpoint, bucket_id, prefix, delimiter, start_file_name)
        validation.check_int_range(
            max_file_count, 1, MAX_FILE_LIST_PAGE, "max_file_count", endpoint
        )
        prefix = self._default_prefix(bucket_id, prefix)
        body = _body(
            bucketId=bucket_id,
            startFileName=start_file_name,
            maxFileCount=max_file_count,
            prefix=prefix or None,
            delimiter=delimiter,
        )
        data = await self._call(endpoint, body)
        files = _parse(
            endpoint, lambda d: parse_list(d, "files", FileVersion.from_json, endpoint), data
        )
        next_name = data.get("nextFileName")
        return _clip_to_prefix(files, prefix, next_name if isinstance(next_name, str) else None)

    def list_file_names(
        self,
        bucket_id: str,
        *,
        start_file_name: str | None = None,
        prefix: str = "",
        delimiter: str | None = None,
        page_size: int = MAX_FILE_LIST_PAGE,
    ) -> Pager[FileVersion, str]:
        """Every visible file (latest version of each name) in name order, paging through
        ``b2_list_file_names`` (``startFileName`` = the previous ``nextFileName``)."""
        endpoint = "b2_list_file_names"
        self._check_listing(endpoint, bucket_id, prefix, delimiter, start_file_name)
        validation.check_int_range(page_size, 1, MAX_FILE_LIST_PAGE, "page_size", endpoint)

        async def fetch(cursor: str | None) -> Page[FileVersion, str]:
            return await self.list_file_names_page(
                bucket_id,
                start_file_name=cursor,
                prefix=prefix,
                delimiter=delimiter,
                max_file_count=page_size,
            )

        return Pager(fetch, start_file_name)

    async def list_file_versions_page(
        self,
        bucket_id: str,
        *,
        start_file_name: str | None = None,
        start_file_id: str | None = None,
        prefix: str = "",
        delimiter: str | None = None,
        max_file_count: int = MAX_FILE_LIST_PAGE,
    ) -> Page[FileVersion, FileVersionCursor]:
        """One page of ``b2_list_file_versions`` (every version: uploads, hide markers,
        unfinished large files; newest first within a name) and the next (name, id)."""
        endpoint = "b2_list_file_versions"
        self._check_listing(endpoint, bucket_id, prefix, delimiter, start_file_name)
        if start_file_id is not None:
            validation.check_id(start_file_id, "start file id", endpoint)
            if start_file_name is None:
                raise B2InvalidInput("start_file_id needs start_file_name", endpoint)
        validation.check_int_range(
            max_file_count, 1, MAX_FILE_LIST_PAGE, "max_file_count", endpoint
        )
        prefix = self._default_prefix(bucket_id, prefix)
        body = _body(
            bucketId=bucket_id,
            startFileName=start_file_name,
            startFileId=start_file_id,
            maxFileCount=max_file_count,
            prefix=prefix or None,
            delimiter=delimiter,
        )
        data = await self._call(endpoint, body)
        files = _parse(
            endpoint, lambda d: parse_list(d, "files", FileVersion.from_json, endpoint), data
        )
        next_name, next_id = data.get("nextFileName"), data.get("nextFileId")
        cursor = (
            FileVersionCursor(next_name, next_id if isinstance(next_id, str) else None)
            if isinstance(next_name, str)
            else None
        )
        items, _ = _clip_to_prefix(files, prefix, "")
        if len(items) < len(files):
            cursor = None
        return Page(items, cursor)

    def list_file_versions(
        self,
        bucket_id: str,
        *,
        start_file_name: str | None = None,
        start_file_id: str | None = None,
        prefix: str = "",
        delimiter: str | None = None,
        page_size: int = MAX_FILE_LIST_PAGE,
    ) -> Pager[FileVersion, FileVersionCursor]:
        """Every file version in (name, newest first) order, paging through
        ``b2_list_file_versions`` with ``nextFileName`` and ``nextFileId``."""
        endpoint = "b2_list_file_versions"
        self._check_listing(endpoint, bucket_id, prefix, delimiter, start_file_name)
        validation.check_int_range(page_size, 1, MAX_FILE_LIST_PAGE, "page_size", endpoint)
        if start_file_id is not None and start_file_name is None:
            raise B2InvalidInput("start_file_id needs start_file_name", endpoint)

        async def fetch(cursor: FileVersionCursor | None) -> Page[FileVersion, FileVersionCursor]:
            return await self.list_file_versions_page(
                bucket_id,
                start_file_name=cursor.file_name if cursor else None,
                start_file_id=cursor.file_id if cursor else None,
                prefix=prefix,
                delimiter=delimiter,
                max_file_count=page_size,
            )

        start = (
            FileVersionCursor(start_file_name, start_file_id)
            if start_file_name is not None
            else None
        )
        return Pager(fetch, start)

    def _check_listing(
        self,
        endpoint: str,
        bucket_id: str,
        prefix: str,
        delimiter: str | None,
        start_file_name: str | None,
    ) -> None:
        validation.check_id(bucket_id, "bucket id", endpoint)
        if not isinstance(prefix, str):
            raise B2InvalidInput(f"prefix must be a string, not {type(prefix).__name__}", endpoint)
        if prefix:
            validation.check_file_name(prefix, endpoint)
        if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
            raise B2InvalidInput(f"delimiter must be one character, not {delimiter!r}", endpoint)
        if start_file_name is not None:
            validation.check_file_name(start_file_name, endpoint)

    # --- single files -------------------------------------------------------------------------

    async def get_file_info(self, file_id: str) -> FileVersion:
        """``b2_get_file_info``: the version with this id (:class:`B2NotFound` if none)."""
        endpoint = "b2_get_file_info"
        validation.check_id(file_id, "file id", endpoint)
        data = await self._call(endpoint, {"fileId": file_id})
        return _parse(endpoint, FileVersion.from_json, data)

    async def hide_file(self, bucket_id: str, file_name: str) -> FileVersion:
        """``b2_hide_file``: add a hide marker as the latest version of ``file_name``."""
        endpoint = "b2_hide_file"
        validation.check_id(bucket_id, "bucket id", endpoint)
        validation.check_file_name(file_name, endpoint)
        body = {"bucketId": bucket_id, "fileName": file_name}

        async def attempt(number: int) -> FileVersion:
            try:
                data = await self._with_auth(lambda s: self._call_once(s, endpoint, body))
            except B2AlreadyHidden:
                if number == 1:
                    raise
                # An earlier attempt may have hidden it before its answer was lost.
                marker = await self._latest_version(bucket_id, file_name)
                if marker is None or not marker.is_hide_marker:
                    raise
                return marker
            return _parse(endpoint, FileVersion.from_json, data)

        return await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)

    async def _latest_version(self, bucket_id: str, file_name: str) -> FileVersion | None:
        page = await self.list_file_versions_page(
            bucket_id, start_file_name=file_name, max_file_count=1
        )
        for version in page.items:
            if version.file_name == file_name:
                return version
        return None

    async def delete_file_version(
        self, file_id: str, file_name: str, *, bypass_governance: bool = False
    ) -> DeletedFileVersion:
        """``b2_delete_file_version``: delete one version for good (on an unfinished large
        file this cancels it). A retry that finds the version already gone counts as done."""
        endpoint = "b2_delete_file_version"
        validation.check_id(file_id, "file id", endpoint)
        validation.check_file_name(file_name, endpoint)
        body = _body(
            fileName=file_name, fileId=file_id, bypassGovernance=True if bypass_governance else None
        )

        async def attempt(number: int) -> DeletedFileVersion:
            try:
                data = await self._with_auth(lambda s: self._call_once(s, endpoint, body))
            except B2FileNotPresent:
                if number == 1:
                    raise
                return DeletedFileVersion(file_id=file_id, file_name=file_name)
            return _parse(endpoint, DeletedFileVersion.from_json, data)

        return await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)

    async def copy_file(
        self,
        source_file_id: str,
        file_name: str,
        *,
        destination_bucket_id: str | None = None,
        offset: int = 0,
        length: int | None = None,
        content_type: str | None = None,
        file_info: Mapping[str, str] | None = None,
        src_last_modified_millis: int | None = None,
        metadata_directive: Literal["COPY", "REPLACE"] | None = None,
    ) -> FileVersion:
        """``b2_copy_file``: a new file from (a range of) an existing one, server-side.

        Metadata is copied unless ``content_type``/``file_info``/``src_last_modified_millis``
        is given (or ``metadata_directive="REPLACE"``): then it is replaced by exactly those,
        and ``content_type`` is required. The answer's action is ``copy``.
        """
        endpoint = "b2_copy_file"
        validation.check_id(source_file_id, "source file id", endpoint)
        validation.check_file_name(file_name, endpoint)
        if destination_bucket_id is not None:
            validation.check_id(destination_bucket_id, "destination bucket id", endpoint)
        copy_range = self._copy_range(offset, length, endpoint)
        replacing = (
            content_type is not None
            or file_info is not None
            or src_last_modified_millis is not None
        )
        directive = metadata_directive or ("REPLACE" if replacing else "COPY")
        if directive not in ("COPY", "REPLACE"):
            raise B2InvalidInput("metadata_directive must be 'COPY' or 'REPLACE'", endpoint)
        body = _body(
            sourceFileId=source_file_id,
            fileName=file_name,
            destinationBucketId=destination_bucket_id,
            range=copy_range,
            metadataDirective=directive,
        )
        if directive == "REPLACE":
            if content_type is None:
                raise B2InvalidInput("replacing metadata needs a content_type", endpoint)
            validation.check_content_type(content_type, endpoint)
            info = self._file_info(endpoint, file_name, file_info, src_last_modified_millis)
            body["contentType"] = content_type
            body["fileInfo"] = info
        elif replacing:
            raise B2InvalidInput(
                "content_type and file_info can only be given when replacing metadata", endpoint
            )
        data = await self._call(endpoint, body, timeout=COPY_TIMEOUT)
        return _parse(endpoint, FileVersion.from_json, data)

    @staticmethod
    def _copy_range(offset: int, length: int | None, endpoint: str) -> str | None:
        validation.check_range(offset, length, endpoint)
        if length is None:
            if offset:
                raise B2InvalidInput("a copy from an offset needs a length", endpoint)
            return None
        if length == 0:
            raise B2InvalidInput("a copy range must be at least one byte long", endpoint)
        return f"bytes={offset}-{offset + length - 1}"

    def _file_info(
        self,
        endpoint: str,
        file_name: str,
        file_info: Mapping[str, str] | None,
        src_last_modified_millis: int | None,
        large_file_sha1: str | None = None,
    ) -> dict[str, str]:
        info = validation.check_file_info(file_info, endpoint)
        if src_last_modified_millis is not None:
            validation.check_millis(src_last_modified_millis, "src_last_modified_millis", endpoint)
            info["src_last_modified_millis"] = str(src_last_modified_millis)
        if large_file_sha1 is not None:
            info["large_file_sha1"] = validation.check_sha1(
                large_file_sha1, "large_file_sha1", endpoint
            )
        if len(info) > validation.MAX_FILE_INFO_ENTRIES:
            raise B2InvalidInput(
                f"file info has {len(info)} entries with the ones added for you; B2 allows at "
                f"most {validation.MAX_FILE_INFO_ENTRIES}",
                endpoint,
            )
        validation.check_header_budget(file_name, info, endpoint)
        return info

    # --- simple uploads -----------------------------------------------------------------------

    async def get_upload_url(self, bucket_id: str) -> UploadUrl:
        """``b2_get_upload_url``: a fresh upload URL for the bucket (for one upload at a time).
        ``upload_file`` manages a pool of these itself."""
        endpoint = "b2_get_upload_url"
        validation.check_id(bucket_id, "bucket id", endpoint)

        async def attempt(_: int) -> UploadUrl:
            return await self._with_auth(lambda s: self._fetch_upload_url(s, bucket_id))

        return await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)

    async def _fetch_upload_url(self, state: AuthState, bucket_id: str) -> UploadUrl:
        endpoint = "b2_get_upload_url"
        data = await self._call_once(state, endpoint, {"bucketId": bucket_id})
        url = _parse(endpoint, UploadUrl.from_json, data)
        self._redactor.add(url.authorization_token)
        return url

    async def _fetch_upload_part_url(self, state: AuthState, large_file_id: str) -> UploadUrl:
        endpoint = "b2_get_upload_part_url"
        data = await self._call_once(state, endpoint, {"fileId": large_file_id})
        url = _parse(endpoint, UploadUrl.from_json, data)
        self._redactor.add(url.authorization_token)
        return url

    async def upload_file(
        self,
        bucket_id: str,
        file_name: str,
        data: UploadData,
        *,
        content_type: str = "b2/x-auto",
        file_info: Mapping[str, str] | None = None,
        src_last_modified_millis: int | None = None,
        sha1: str | None = None,
        upload_url: UploadUrl | None = None,
    ) -> FileVersion:
        """``b2_upload_file``: upload ``data`` (bytes, or a
        :class:`~b2fs.b2.sources.FileSource` for a file range) as a new version of
        ``file_name``.

        ``sha1``: the data's SHA1 if known (sent up front); else it is computed while
        streaming (``hex_digits_at_end``). ``upload_url``: use this URL for the first attempt
        (retries take pooled ones); by default a pooled URL of the bucket is used.
        """
        endpoint = "b2_upload_file"
        validation.check_id(bucket_id, "bucket id", endpoint)
        validation.check_file_name(file_name, endpoint)
        validation.check_content_type(content_type, endpoint)
        source = _as_source(data, endpoint)
        if sha1 is not None:
            sha1 = validation.check_sha1(sha1, "sha1", endpoint)
        info = self._file_info(endpoint, file_name, file_info, src_last_modified_millis)
        headers = {
            "X-Bz-File-Name": encoding.encode(file_name),
            "Content-Type": content_type,
            "X-Bz-Content-Sha1": sha1 or "hex_digits_at_end",
        }
        for key, value in info.items():
            headers[f"X-Bz-Info-{key}"] = encoding.encode(value)
        pool = self._bucket_pools.get(bucket_id)
        if pool is None:
            pool = self._bucket_pools[bucket_id] = UploadUrlPool(max_idle=self._max_idle_urls)
        result, sent_sha1 = await self._upload(
            endpoint,
            pool,
            upload_url,
            lambda state: self._fetch_upload_url(state, bucket_id),
            headers,
            source,
            sha1,
        )
        version = _parse(endpoint, FileVersion.from_json, result)
        reported = version.sha1
        if reported is not None and reported != sent_sha1:
            raise B2ChecksumMismatch(
                f"B2 stored {file_name!r} with SHA1 {reported}, the client sent {sent_sha1}",
                endpoint,
            )
        return version

    async def _upload(
        self,
        endpoint: str,
        pool: UploadUrlPool,
        first_url: UploadUrl | None,
        fetch_url: Callable[[AuthState], Awaitable[UploadUrl]],
        headers: Mapping[str, str],
        source: UploadSource,
        sha1: str | None,
    ) -> tuple[dict[str, Any], str]:
        """Upload with retries, each attempt on its own upload URL (see module docstring)."""
        given = [first_url] if first_url is not None else []

        async def attempt(_: int) -> tuple[dict[str, Any], str]:
            leased: LeasedUrl | None = None
            if given:
                url = given.pop()
                self._redactor.add(url.authorization_token)
            else:
                leased = pool.take()
                if leased is None:
                    fetched = await self._with_auth(fetch_url)
                    leased = LeasedUrl(fetched, trio.current_time())
                url = leased.url
            if isinstance(source, FileSource) and self._own_http_allowed:
                result, sent_sha1 = await self._upload_file_range(
                    endpoint, url, {**headers, "User-Agent": self._user_agent}, source, sha1
                )
                if leased is not None:
                    pool.put(leased)
                return result, sent_sha1
            body = UploadBody(
                source, append_sha1=sha1 is None, chunk_size=self._chunk_size, endpoint=endpoint
            )
            try:
                result = await self._transport.upload(
                    endpoint,
                    url.upload_url,
                    headers={**headers, "Authorization": url.authorization_token},
                    body=body,
                    length=body.length,
                )
            finally:
                self.stats.bytes_uploaded += body.sent
                await body.aclose()
            if leased is not None:
                pool.put(leased)
            sent = sha1 or body.sha1_hex
            assert sent is not None
            return result, sent

        return await self.retry_policy.call(
            attempt, endpoint=endpoint, retryable=_upload_retryable, stats=self.stats
        )

    async def _upload_file_range(
        self,
        endpoint: str,
        url: UploadUrl,
        headers: Mapping[str, str],
        source: FileSource,
        sha1: str | None,
    ) -> tuple[dict[str, Any], str]:
        """One upload attempt of a file range: sent from the event loop when it is small
        (``posting.py``), else streamed from a worker thread (``threaded.py``)."""
        self.stats.record_request(endpoint)
        started = time.perf_counter()
        if source.progress is not None:
            source.progress(0)  # a new attempt: nothing of it sent yet (a retry starts over)
        post = threaded.FilePost(
            url.upload_url,
            {**headers, "Authorization": url.authorization_token},
            source.path,
            source.offset,
            source.size,
            append_sha1=sha1 is None,
            progress=source.progress,
        )
        try:
            if source.size <= INLINE_LIMIT:
                async with self._upload_slots:
                    posted = await self._posting.post_file(post)
            else:
                posted = await threaded.run_stoppable(
                    threaded.post_file, self._upload_slots, post=post, timeout=self._read_timeout
                )
        except threaded.HttpBroken as broken:
            raise self._transport.connection_error(
                endpoint, broken, (url.authorization_token,)
            ) from None
        except threaded.SourceShort as short:
            raise B2SourceError(
                f"the upload source ended {short.missing} bytes before its declared size "
                f"of {source.size} (was the file truncated?)",
                endpoint,
            ) from None
        self.stats.bytes_uploaded += posted.sent
        self._transport.log_exchange(endpoint, "POST", posted.status, started, posted.sent)
        result = self._transport.json_answer(
            endpoint, posted.status, posted.headers, posted.body, (url.authorization_token,)
        )
        if sha1 is not None and posted.sha1 != sha1:
            raise B2SourceError(
                f"the upload source changed: its SHA1 is {posted.sha1}, {sha1} was promised",
                endpoint,
            )
        return result, posted.sha1

    # --- large files --------------------------------------------------------------------------

    async def start_large_file(
        self,
        bucket_id: str,
        file_name: str,
        *,
        content_type: str = "b2/x-auto",
        file_info: Mapping[str, str] | None = None,
        src_last_modified_millis: int | None = None,
        large_file_sha1: str | None = None,
    ) -> FileVersion:
        """``b2_start_large_file``: begin a file uploaded in parts (action ``start``)."""
        endpoint = "b2_start_large_file"
        validation.check_id(bucket_id, "bucket id", endpoint)
        validation.check_file_name(file_name, endpoint)
        validation.check_content_type(content_type, endpoint)
        info = self._file_info(
            endpoint, file_name, file_info, src_last_modified_millis, large_file_sha1
        )
        body = {
            "bucketId": bucket_id,
            "fileName": file_name,
            "contentType": content_type,
            "fileInfo": info,
        }
        return _parse(endpoint, FileVersion.from_json, await self._call(endpoint, body))

    async def get_upload_part_url(self, large_file_id: str) -> UploadUrl:
        """``b2_get_upload_part_url``: a fresh URL for parts of this large file.
        ``upload_part`` manages a pool of these itself."""
        endpoint = "b2_get_upload_part_url"
        validation.check_id(large_file_id, "large file id", endpoint)

        async def attempt(_: int) -> UploadUrl:
            return await self._with_auth(lambda s: self._fetch_upload_part_url(s, large_file_id))

        return await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)

    async def upload_part(
        self,
        large_file_id: str,
        part_number: int,
        data: UploadData,
        *,
        sha1: str | None = None,
        upload_url: UploadUrl | None = None,
    ) -> Part:
        """``b2_upload_part``: upload part ``part_number`` (1..10000) of a started large file
        from bytes or a :class:`~b2fs.b2.sources.FileSource` (a file offset and length).
        Parts may be uploaded concurrently; each uses its own pooled part URL. The returned
        ``Part.content_sha1`` goes into :meth:`finish_large_file`."""
        endpoint = "b2_upload_part"
        validation.check_id(large_file_id, "large file id", endpoint)
        validation.check_part_number(part_number, endpoint)
        source = _as_source(data, endpoint)
        if sha1 is not None:
            sha1 = validation.check_sha1(sha1, "sha1", endpoint)
        headers = {
            "X-Bz-Part-Number": str(part_number),
            "X-Bz-Content-Sha1": sha1 or "hex_digits_at_end",
        }
        pool = self._part_pools.get(large_file_id)
        if pool is None:
            pool = self._part_pools[large_file_id] = UploadUrlPool(max_idle=self._max_idle_urls)
        result, sent_sha1 = await self._upload(
            endpoint,
            pool,
            upload_url,
            lambda state: self._fetch_upload_part_url(state, large_file_id),
            headers,
            source,
            sha1,
        )
        part = _parse(endpoint, Part.from_json, result)
        if part.content_sha1.lower() != sent_sha1:
            raise B2ChecksumMismatch(
                f"B2 stored part {part_number} with SHA1 {part.content_sha1}, the client sent "
                f"{sent_sha1}",
                endpoint,
            )
        return part

    async def finish_large_file(self, large_file_id: str, part_sha1s: Sequence[str]) -> FileVersion:
        """``b2_finish_large_file``: assemble the parts (SHA1s in part-number order).

        If a retry finds the file already finished (an earlier attempt succeeded but its
        answer was lost), the finished file is returned.
        """
        endpoint = "b2_finish_large_file"
        validation.check_id(large_file_id, "large file id", endpoint)
        if isinstance(part_sha1s, str) or not part_sha1s:
            raise B2InvalidInput("part_sha1s must be a non-empty list of SHA1s", endpoint)
        sha1s = [
            validation.check_sha1(s, f"SHA1 of part {i}", endpoint)
            for i, s in enumerate(part_sha1s, 1)
        ]
        body = {"fileId": large_file_id, "partSha1Array": sha1s}

        async def attempt(number: int) -> FileVersion:
            try:
                data = await self._with_auth(lambda s: self._call_once(s, endpoint, body))
            except (B2BadRequest, B2NotFound):
                if number == 1:
                    raise
                try:
                    done = await self.get_file_info(large_file_id)
                except B2Error:
                    done = None
                if done is None or done.action is not FileAction.UPLOAD:
                    raise
                return done
            return _parse(endpoint, FileVersion.from_json, data)

        version = await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)
        self._part_pools.pop(large_file_id, None)
        return version

    async def cancel_large_file(self, large_file_id: str) -> CancelledLargeFile:
        """``b2_cancel_large_file``: abandon a large file and its parts."""
        endpoint = "b2_cancel_large_file"
        validation.check_id(large_file_id, "large file id", endpoint)
        data = await self._call(endpoint, {"fileId": large_file_id})
        self._part_pools.pop(large_file_id, None)
        return _parse(endpoint, CancelledLargeFile.from_json, data)

    async def list_parts_page(
        self,
        large_file_id: str,
        *,
        start_part_number: int | None = None,
        max_part_count: int = MAX_PARTS_PAGE,
    ) -> Page[Part, int]:
        """One page of ``b2_list_parts`` and the next part number."""
        endpoint = "b2_list_parts"
        validation.check_id(large_file_id, "large file id", endpoint)
        if start_part_number is not None:
            validation.check_part_number(start_part_number, endpoint)
        validation.check_int_range(max_part_count, 1, MAX_PARTS_PAGE, "max_part_count", endpoint)
        body = _body(
            fileId=large_file_id, startPartNumber=start_part_number, maxPartCount=max_part_count
        )
        data = await self._call(endpoint, body)
        parts = _parse(endpoint, lambda d: parse_list(d, "parts", Part.from_json, endpoint), data)
        next_number = data.get("nextPartNumber")
        return Page(parts, next_number if isinstance(next_number, int) else None)

    def list_parts(
        self,
        large_file_id: str,
        *,
        start_part_number: int | None = None,
        page_size: int = MAX_PARTS_PAGE,
    ) -> Pager[Part, int]:
        """Every uploaded part of a large file, by part number (``startPartNumber`` =
        the previous ``nextPartNumber``)."""
        endpoint = "b2_list_parts"
        validation.check_id(large_file_id, "large file id", endpoint)
        validation.check_int_range(page_size, 1, MAX_PARTS_PAGE, "page_size", endpoint)
        if start_part_number is not None:
            validation.check_part_number(start_part_number, endpoint)

        async def fetch(cursor: int | None) -> Page[Part, int]:
            return await self.list_parts_page(
                large_file_id, start_part_number=cursor, max_part_count=page_size
            )

        return Pager(fetch, start_part_number)

    async def list_unfinished_large_files_page(
        self,
        bucket_id: str,
        *,
        name_prefix: str = "",
        start_file_id: str | None = None,
        max_file_count: int = MAX_UNFINISHED_PAGE,
    ) -> Page[FileVersion, str]:
        """One page of ``b2_list_unfinished_large_files`` (oldest first) and the next id."""
        endpoint = "b2_list_unfinished_large_files"
        validation.check_id(bucket_id, "bucket id", endpoint)
        if name_prefix:
            validation.check_file_name(name_prefix, endpoint)
        if start_file_id is not None:
            validation.check_id(start_file_id, "start file id", endpoint)
        validation.check_int_range(
            max_file_count, 1, MAX_UNFINISHED_PAGE, "max_file_count", endpoint
        )
        name_prefix = self._default_prefix(bucket_id, name_prefix)
        body = _body(
            bucketId=bucket_id,
            namePrefix=name_prefix or None,
            startFileId=start_file_id,
            maxFileCount=max_file_count,
        )
        data = await self._call(endpoint, body)
        files = _parse(
            endpoint, lambda d: parse_list(d, "files", FileVersion.from_json, endpoint), data
        )
        next_id = data.get("nextFileId")
        return Page(files, next_id if isinstance(next_id, str) else None)

    def list_unfinished_large_files(
        self,
        bucket_id: str,
        *,
        name_prefix: str = "",
        start_file_id: str | None = None,
        page_size: int = MAX_UNFINISHED_PAGE,
    ) -> Pager[FileVersion, str]:
        """Every unfinished large file of the bucket (``startFileId`` = ``nextFileId``)."""
        endpoint = "b2_list_unfinished_large_files"
        validation.check_id(bucket_id, "bucket id", endpoint)
        validation.check_int_range(page_size, 1, MAX_UNFINISHED_PAGE, "page_size", endpoint)

        async def fetch(cursor: str | None) -> Page[FileVersion, str]:
            return await self.list_unfinished_large_files_page(
                bucket_id, name_prefix=name_prefix, start_file_id=cursor, max_file_count=page_size
            )

        return Pager(fetch, start_file_id)

    async def copy_part(
        self,
        source_file_id: str,
        large_file_id: str,
        part_number: int,
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> Part:
        """``b2_copy_part``: make part ``part_number`` of a large file from (a range of) an
        existing file, server-side."""
        endpoint = "b2_copy_part"
        validation.check_id(source_file_id, "source file id", endpoint)
        validation.check_id(large_file_id, "large file id", endpoint)
        validation.check_part_number(part_number, endpoint)
        body = _body(
            sourceFileId=source_file_id,
            largeFileId=large_file_id,
            partNumber=part_number,
            range=self._copy_range(offset, length, endpoint),
        )
        data = await self._call(endpoint, body, timeout=COPY_TIMEOUT)
        return _parse(endpoint, Part.from_json, data)

    # --- downloads ----------------------------------------------------------------------------

    @asynccontextmanager
    async def download_file_by_id(
        self,
        file_id: str,
        *,
        offset: int = 0,
        length: int | None = None,
        verify_sha1: bool = True,
    ) -> AsyncIterator[DownloadStream]:
        """``b2_download_file_by_id`` as a stream: ``async with client.download_file_by_id(id)
        as download: ... download.info ... async for chunk in download.iter_bytes()``.

        ``offset``/``length`` select a byte range (a length past the end is clipped; an offset
        past the end raises :class:`B2RangeNotSatisfiable`). Opening is retried; the body is
        not (use :meth:`download_bytes_by_id` for resuming reads). Reading a whole file to its
        end checks its SHA1.
        """
        endpoint = "b2_download_file_by_id"
        validation.check_id(file_id, "file id", endpoint)
        self._check_stream_range(offset, length, endpoint)
        stack, stream = await self._open_download_retrying(
            endpoint, file_id, None, None, offset, length, verify_sha1
        )
        async with stack:
            yield stream

    @asynccontextmanager
    async def download_file_by_name(
        self,
        bucket_name: str,
        file_name: str,
        *,
        offset: int = 0,
        length: int | None = None,
        verify_sha1: bool = True,
    ) -> AsyncIterator[DownloadStream]:
        """``GET /file/<bucket>/<name>``: the latest version of a name, as a stream (see
        :meth:`download_file_by_id`). A hidden or missing name raises :class:`B2NotFound`."""
        endpoint = "b2_download_file_by_name"
        validation.check_bucket_name(bucket_name, endpoint)
        validation.check_file_name(file_name, endpoint)
        self._check_stream_range(offset, length, endpoint)
        stack, stream = await self._open_download_retrying(
            endpoint, None, bucket_name, file_name, offset, length, verify_sha1
        )
        async with stack:
            yield stream

    @staticmethod
    def _check_stream_range(offset: int, length: int | None, endpoint: str) -> None:
        validation.check_range(offset, length, endpoint)
        if length == 0:
            raise B2InvalidInput("a download range must be at least one byte long", endpoint)

    async def _open_download_retrying(
        self,
        endpoint: str,
        file_id: str | None,
        bucket_name: str | None,
        file_name: str | None,
        offset: int,
        length: int | None,
        verify_sha1: bool,
    ) -> tuple[AsyncExitStack, DownloadStream]:
        async def attempt(_: int) -> tuple[AsyncExitStack, DownloadStream]:
            return await self._with_auth(
                lambda state: self._open_download(
                    state, endpoint, file_id, bucket_name, file_name, offset, length, verify_sha1
                )
            )

        return await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)

    async def _open_download(
        self,
        state: AuthState,
        endpoint: str,
        file_id: str | None,
        bucket_name: str | None,
        file_name: str | None,
        offset: int,
        length: int | None,
        verify_sha1: bool,
    ) -> tuple[AsyncExitStack, DownloadStream]:
        """One download request; the stream is open until the returned stack is closed."""
        headers = {"Authorization": state.token, "Accept-Encoding": "identity"}
        range_header = _range_header(offset, length)
        if range_header is not None:
            headers["Range"] = range_header
        base = state.account.download_url
        params: dict[str, str] | None = None
        if file_id is not None:
            url = f"{base}/b2api/{API_VERSION}/b2_download_file_by_id"
            params = {"fileId": file_id}
        else:
            assert bucket_name is not None and file_name is not None
            url = f"{base}/file/{bucket_name}/{encoding.encode_url_path(file_name)}"
        stack = AsyncExitStack()
        try:
            response = await stack.enter_async_context(
                self._transport.stream(endpoint, "GET", url, headers=headers, params=params)
            )
            info = parse_download_headers(response.headers, endpoint)
            skip, limit = 0, None
            if response.status_code == 206:
                got = info.content_range
                if got is None or got.start != offset:
                    raise B2UnexpectedResponse(
                        206,
                        "unexpected_response",
                        f"asked for bytes from {offset}, got "
                        f"{'no Content-Range' if got is None else f'bytes {got.start}-'}",
                        endpoint,
                    )
            elif range_header is not None:
                # The whole file came back (200) although a range was asked for: take the
                # range from it, or refuse a range that starts at or past its end.
                if offset and offset >= info.content_length:
                    raise B2RangeNotSatisfiable(
                        416,
                        "range_not_satisfiable",
                        f"offset {offset} is at or past the end of the file "
                        f"({info.content_length} bytes)",
                        endpoint,
                    )
                skip = offset
                if length is not None and offset + length < info.content_length:
                    limit = length
            stream = DownloadStream(
                response,
                info,
                endpoint=endpoint,
                stats=self.stats,
                skip=skip,
                limit=limit,
                verify_sha1=verify_sha1,
            )
            stack.push_async_callback(stream.aclose)
        except BaseException:
            await stack.aclose()
            raise
        return stack, stream

    async def download_bytes_by_id(
        self, file_id: str, *, offset: int = 0, length: int | None = None
    ) -> bytes:
        """Bytes ``offset .. offset+length`` of the version ``file_id`` (to the end of the file
        when ``length`` is None; fewer when the file ends first), retrying and resuming after
        failures. The SHA1 is checked when the whole file was read. Reading from offset 0 of
        an empty file gives ``b""``; from an offset past the end raises
        :class:`B2RangeNotSatisfiable`."""
        endpoint = "b2_download_file_by_id"
        validation.check_id(file_id, "file id", endpoint)
        validation.check_range(offset, length, endpoint)
        if length == 0:
            return b""
        sink = BytesSink()
        await self._download_into(sink, file_id, None, None, offset, length)
        return bytes(sink.buffer)

    async def download_bytes_by_name(
        self, bucket_name: str, file_name: str, *, offset: int = 0, length: int | None = None
    ) -> bytes:
        """:meth:`download_bytes_by_id` for the latest version of a name (a resumed read
        stays on the version the first answer came from)."""
        endpoint = "b2_download_file_by_name"
        validation.check_bucket_name(bucket_name, endpoint)
        validation.check_file_name(file_name, endpoint)
        validation.check_range(offset, length, endpoint)
        if length == 0:
            return b""
        sink = BytesSink()
        await self._download_into(sink, None, bucket_name, file_name, offset, length)
        return bytes(sink.buffer)

    async def download_into_by_id(
        self,
        file_id: str,
        consume: Callable[[bytes], Awaitable[None]],
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> DownloadInfo | None:
        """Like :meth:`download_bytes_by_id`, handing the bytes to ``await consume(chunk)`` in
        order as they arrive: across retries every byte is given exactly once. A SHA1
        mismatch of a whole-file read is raised after the last chunk (discard what came).
        Returns the first answer's headers (``None`` if nothing was asked, or offset 0 of an
        empty file)."""
        endpoint = "b2_download_file_by_id"
        validation.check_id(file_id, "file id", endpoint)
        validation.check_range(offset, length, endpoint)
        if length == 0:
            return None
        return await self._download_into(CallbackSink(consume), file_id, None, None, offset, length)

    async def download_range_threaded(
        self,
        file_id: str,
        sink: Callable[[memoryview], None],
        *,
        offset: int,
        length: int,
        into: threaded.Into | None = None,
    ) -> None:
        """Bytes ``offset .. offset+length`` of the version ``file_id`` handed to ``sink``
        **in a worker thread** (the view is valid only during the call), in order, every byte
        once across retries; resumes after failures like :meth:`download_into_by_id`, with
        the same auth and retry policy and the same typed errors. The SHA1 is checked when
        the whole file was read. The bulk-data path of the filesystem: see ``threaded.py``
        for why it leaves the event loop. ``into`` lets the bytes be received in place
        (``threaded.Into``); without worker threads it is not used."""
        endpoint = "b2_download_file_by_id"
        validation.check_id(file_id, "file id", endpoint)
        validation.check_range(offset, length, endpoint)
        if not self._own_http_allowed:
            await self._download_into(
                CallbackSink(_on_trio_thread(sink)), file_id, None, None, offset, length
            )
            return
        progress = threaded.Progress()

        async def fetch(state: AuthState) -> None:
            start, want = offset + progress.received, length - progress.received
            if want <= 0:
                return
            url = (
                f"{state.account.download_url}/b2api/{API_VERSION}/b2_download_file_by_id"
                f"?fileId={urllib.parse.quote(file_id, safe='')}"
            )
            before = progress.received
            self.stats.record_request(endpoint)
            started = time.perf_counter()
            try:
                await threaded.run_stoppable(
                    threaded.fetch_range,
                    self._download_threads,
                    url=url,
                    headers={"Authorization": state.token, "User-Agent": self._user_agent},
                    offset=start,
                    length=want,
                    sink=sink,
                    progress=progress,
                    timeout=self._read_timeout,
                    into=into,
                )
            except threaded.HttpFailure as failure:
                raise self._transport.error_for(
                    endpoint, failure.status, failure.headers, failure.body, (state.token,)
                ) from None
            except threaded.HttpBroken as broken:
                raise self._transport.connection_error(endpoint, broken, (state.token,)) from None
            finally:
                self.stats.bytes_downloaded += progress.received - before
            self._transport.log_exchange(
                endpoint, "GET", progress.status, started, progress.received - before
            )

        async def attempt(_: int) -> None:
            await self._with_auth(fetch)

        await self.retry_policy.call(attempt, endpoint=endpoint, stats=self.stats)
        actual = threaded.sha1_mismatch(progress)
        if actual is not None:
            raise B2ChecksumMismatch(
                f"downloaded data of file {file_id} has SHA1 {actual}, B2 says {progress.sha1}",
                endpoint,
            )

    async def download_into_by_name(
        self,
        bucket_name: str,
        file_name: str,
        consume: Callable[[bytes], Awaitable[None]],
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> DownloadInfo | None:
        """:meth:`download_into_by_id` for the latest version of a name."""
        endpoint = "b2_download_file_by_name"
        validation.check_bucket_name(bucket_name, endpoint)
        validation.check_file_name(file_name, endpoint)
        validation.check_range(offset, length, endpoint)
        if length == 0:
            return None
        return await self._download_into(
            CallbackSink(consume), None, bucket_name, file_name, offset, length
        )

    async def download_to_file_by_id(
        self,
        file_id: str,
        path: str | os.PathLike[str],
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> DownloadInfo | None:
        """Like :meth:`download_bytes_by_id`, writing into a new file at ``path`` (replaced
        if it exists). Returns the first answer's headers (``None`` if nothing was asked)."""
        endpoint = "b2_download_file_by_id"
        validation.check_id(file_id, "file id", endpoint)
        validation.check_range(offset, length, endpoint)
        sink = FileSink(path)
        try:
            if length == 0:
                return None
            return await self._download_into(sink, file_id, None, None, offset, length)
        finally:
            await sink.aclose()

    async def download_to_file_by_name(
        self,
        bucket_name: str,
        file_name: str,
        path: str | os.PathLike[str],
        *,
        offset: int = 0,
        length: int | None = None,
    ) -> DownloadInfo | None:
        """:meth:`download_to_file_by_id` for the latest version of a name."""
        endpoint = "b2_download_file_by_name"
        validation.check_bucket_name(bucket_name, endpoint)
        validation.check_file_name(file_name, endpoint)
        validation.check_range(offset, length, endpoint)
        sink = FileSink(path)
        try:
            if length == 0:
                return None
            return await self._download_into(sink, None, bucket_name, file_name, offset, length)
        finally:
            await sink.aclose()

    async def _download_into(
        self,
        sink: DownloadSink,
        file_id: str | None,
        bucket_name: str | None,
        file_name: str | None,
        offset: int,
        length: int | None,
    ) -> DownloadInfo | None:
        """The resuming download behind ``download_bytes_*``/``download_to_file_*``."""
        download = _ResumingDownload(self, sink, file_id, bucket_name, file_name, offset, length)
        endpoint = "b2_download_file_by_id" if file_id else "b2_download_file_by_name"
        try:
            await self.retry_policy.call(download.attempt, endpoint=endpoint, stats=self.stats)
        except B2RangeNotSatisfiable:
            if offset == 0 and sink.received == 0:
                return None  # an empty file: nothing at offset 0
            raise
        await download.verify()
        return download.first

    # --- keys ---------------------------------------------------------------------------------

    async def create_key(
        self,
        key_name: str,
        capabilities: Iterable[str],
        *,
        valid_duration_seconds: int | None = None,
        bucket_id: str | None = None,
        name_prefix: str | None = None,
    ) -> NewApplicationKey:
        """``b2_create_key``: a new application key; its secret is in ``application_key``
        (shown only now). ``name_prefix`` needs ``bucket_id``."""
        endpoint = "b2_create_key"
        validation.check_key_name(key_name, endpoint)
        caps = validation.check_capabilities(capabilities, endpoint)
        if valid_duration_seconds is not None:
            validation.check_int_range(
                valid_duration_seconds,
                1,
                validation.MAX_KEY_VALID_DURATION,
                "valid_duration_seconds",
                endpoint,
            )
        if bucket_id is not None:
            validation.check_id(bucket_id, "bucket id", endpoint)
        if name_prefix is not None:
            if bucket_id is None:
                raise B2InvalidInput("a key with a name_prefix needs a bucket_id", endpoint)
            if name_prefix:
                validation.check_file_name(name_prefix, endpoint)
        body = _body(
            accountId=self.account_id,
            capabilities=caps,
            keyName=key_name,
            validDurationInSeconds=valid_duration_seconds,
            bucketId=bucket_id,
            namePrefix=name_prefix,
        )
        data = await self._call(endpoint, body)
        key = _parse(endpoint, NewApplicationKey.from_json, data)
        self._redactor.add(key.application_key)
        return key

    async def list_keys_page(
        self,
        *,
        start_application_key_id: str | None = None,
        max_key_count: int = MAX_KEYS_PAGE,
    ) -> Page[ApplicationKey, str]:
        """One page of ``b2_list_keys`` and the next key id."""
        endpoint = "b2_list_keys"
        if start_application_key_id is not None:
            validation.check_id(start_application_key_id, "application key id", endpoint)
        validation.check_int_range(max_key_count, 1, MAX_KEYS_PAGE, "max_key_count", endpoint)
        body = _body(
            accountId=self.account_id,
            maxKeyCount=max_key_count,
            startApplicationKeyId=start_application_key_id,
        )
        data = await self._call(endpoint, body)
        keys = _parse(
            endpoint, lambda d: parse_list(d, "keys", ApplicationKey.from_json, endpoint), data
        )
        next_id = data.get("nextApplicationKeyId")
        return Page(keys, next_id if isinstance(next_id, str) else None)

    def list_keys(
        self,
        *,
        start_application_key_id: str | None = None,
        page_size: int = MAX_KEYS_PAGE,
    ) -> Pager[ApplicationKey, str]:
        """Every application key of the account (``startApplicationKeyId`` =
        ``nextApplicationKeyId``)."""
        validation.check_int_range(page_size, 1, MAX_KEYS_PAGE, "page_size", "b2_list_keys")

        async def fetch(cursor: str | None) -> Page[ApplicationKey, str]:
            return await self.list_keys_page(
                start_application_key_id=cursor, max_key_count=page_size
            )

        return Pager(fetch, start_application_key_id)

    async def delete_key(self, application_key_id: str) -> ApplicationKey:
        """``b2_delete_key``: revoke a key; returns it (without its secret)."""
        endpoint = "b2_delete_key"
        validation.check_id(application_key_id, "application key id", endpoint)
        data = await self._call(endpoint, {"applicationKeyId": application_key_id})
        return _parse(endpoint, ApplicationKey.from_json, data)

    # --- download authorization ---------------------------------------------------------------

    async def get_download_authorization(
        self,
        bucket_id: str,
        file_name_prefix: str,
        valid_duration_seconds: int,
        *,
        b2_content_disposition: str | None = None,
        b2_content_language: str | None = None,
        b2_expires: str | None = None,
        b2_cache_control: str | None = None,
        b2_content_encoding: str | None = None,
        b2_content_type: str | None = None,
    ) -> DownloadAuthorization:
        """``b2_get_download_authorization``: a token to download names under a prefix of a
        private bucket, valid 1..604800 seconds."""
        endpoint = "b2_get_download_authorization"
        validation.check_id(bucket_id, "bucket id", endpoint)
        if not isinstance(file_name_prefix, str):
            raise B2InvalidInput("file_name_prefix must be a string", endpoint)
        if file_name_prefix:
            validation.check_file_name(file_name_prefix, endpoint)
        validation.check_int_range(
            valid_duration_seconds,
            1,
            validation.MAX_DOWNLOAD_AUTH_DURATION,
            "valid_duration_seconds",
            endpoint,
        )
        body = _body(
            bucketId=bucket_id,
            fileNamePrefix=file_name_prefix,
            validDurationInSeconds=valid_duration_seconds,
            b2ContentDisposition=b2_content_disposition,
            b2ContentLanguage=b2_content_language,
            b2Expires=b2_expires,
            b2CacheControl=b2_cache_control,
            b2ContentEncoding=b2_content_encoding,
            b2ContentType=b2_content_type,
        )
        data = await self._call(endpoint, body)
        authorization = _parse(endpoint, DownloadAuthorization.from_json, data)
        self._redactor.add(authorization.authorization_token)
        return authorization


class _ResumingDownload:
    """One byte range read with resumption: each attempt asks for the bytes not yet received,
    by file id once the first answer named the version (so a download by name never mixes
    two versions), and the SHA1 of a whole file is computed across attempts."""

    def __init__(
        self,
        client: B2Client,
        sink: DownloadSink,
        file_id: str | None,
        bucket_name: str | None,
        file_name: str | None,
        offset: int,
        length: int | None,
    ) -> None:
        self._client = client
        self._sink = sink
        self._file_id = file_id
        self._bucket_name = bucket_name
        self._file_name = file_name
        self._offset = offset
        self._length = length
        self.first: DownloadInfo | None = None
        self._hasher: Sha1Accumulator | None = None

    def _next_range(self) -> tuple[int, int | None] | None:
        """(start, length) still to fetch, or None when everything arrived."""
        received = self._sink.received
        start = self._offset + received
        if self.first is None:
            return start, None if self._length is None else self._length - received
        total = self.first.size
        end = total if self._length is None else min(total, self._offset + self._length)
        return (start, end - start) if start < end else None

    async def attempt(self, _: int) -> None:
        wanted = self._next_range()
        if wanted is None:
            return
        start, length = wanted
        file_id = self._file_id
        endpoint = "b2_download_file_by_id" if file_id else "b2_download_file_by_name"
        stack, stream = await self._client._with_auth(
            lambda state: self._client._open_download(
                state, endpoint, file_id, self._bucket_name, self._file_name, start, length, False
            )
        )
        async with stack:
            self._check_version(stream, endpoint)
            hasher = self._hasher
            async for chunk in stream.iter_bytes():
                if hasher is not None:
                    await hasher.update(chunk)
                await self._sink.write(chunk)

    def _check_version(self, stream: DownloadStream, endpoint: str) -> None:
        info = stream.info
        if self.first is None:
            self.first = info
            self._file_id = info.file_id
            whole = self._offset == 0 and (self._length is None or self._length >= info.size)
            if whole and info.sha1 is not None:
                self._hasher = Sha1Accumulator()
        elif info.file_id != self.first.file_id or info.size != self.first.size:
            raise B2UnexpectedResponse(
                stream.status,
                "unexpected_response",
                "the file changed while it was being downloaded",
                endpoint,
            )

    async def verify(self) -> None:
        """Compare the SHA1 of a whole file read with the one B2 gave."""
        info, hasher = self.first, self._hasher
        if info is None or hasher is None or info.sha1 is None:
            return
        actual = await hasher.hexdigest()
        if actual != info.sha1:
            raise B2ChecksumMismatch(
                f"downloaded data of {info.file_name!r} has SHA1 {actual}, B2 says {info.sha1}",
                "b2_download_file_by_id",
            )


def _clip_to_prefix(
    files: list[FileVersion], prefix: str, next_name: str | None
) -> Page[FileVersion, str]:
    """Drop rows outside ``prefix`` (and stop paging there): B2 should not send them, but a
    client must not show them if it does."""
    if not prefix:
        return Page(files, next_name)
    for index, version in enumerate(files):
        if not version.file_name.startswith(prefix):
            return Page(files[:index], None)
    return Page(files, next_name)
