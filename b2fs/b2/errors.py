"""Typed errors of the B2 client.

Design
------
Every failure the client reports is a :class:`B2Error` carrying what B2 said (``status``,
``code``, ``message``) and which API call it was (``endpoint``, e.g. ``b2_upload_file``).
Subclasses group the codes by *meaning*, so that callers (the filesystem maps errors to errno)
catch ``B2NotFound`` instead of comparing strings: ``400 file_not_present`` and ``404 not_found``
are both "not found"; ``400 bad_bucket_id`` is a missing bucket. :func:`error_from_response`
is the one table from (endpoint, status, code) to a class (B2-API.md §2.4).

``retryable`` is a class attribute: it says whether the retry policy (``retry.py``) may repeat
the call (408, 429, 5xx and connection errors). Refusals made before any request is sent are
:class:`B2InvalidInput` (status 0): the caller's arguments are wrong, nothing was sent.

Secrets: messages are built by the client from fixed text plus server messages that have been
passed through the redactor of ``transport.py``; no error ever holds a key or a token.
"""

from __future__ import annotations

__all__ = [
    "B2AccessDenied",
    "B2AlreadyHidden",
    "B2AuthTokenError",
    "B2BadCredentials",
    "B2BadRequest",
    "B2BucketNotEmpty",
    "B2BucketNotFound",
    "B2CapExceeded",
    "B2ChecksumMismatch",
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
    "CredentialsError",
    "error_from_response",
]


class B2Error(Exception):
    """A failed B2 call: ``status`` (HTTP, 0 when no response), ``code``, ``message``, ``endpoint``.

    ``retry_after`` is the server's ``Retry-After`` in seconds when it sent one.
    """

    retryable: bool = False

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        endpoint: str = "",
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, endpoint)
        self.status = status
        self.code = code
        self.message = message
        self.endpoint = endpoint
        self.retry_after = retry_after

    def __str__(self) -> str:
        where = f"{self.endpoint}: " if self.endpoint else ""
        if self.status:
            return f"{where}{self.message or self.code} ({self.status} {self.code})"
        return f"{where}{self.message or self.code}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status}, code={self.code!r}, "
            f"message={self.message!r}, endpoint={self.endpoint!r})"
        )

    def copy(self) -> B2Error:
        """A fresh exception with the same fields (to raise the same failure in another task)."""
        return type(self)(
            self.status, self.code, self.message, self.endpoint, retry_after=self.retry_after
        )


class B2InvalidInput(B2Error, ValueError):
    """The arguments were refused by the client before any request was sent."""

    def __init__(
        self,
        message: str,
        endpoint: str = "",
        *,
        code: str = "invalid_input",
        status: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, endpoint, retry_after=retry_after)

    def copy(self) -> B2Error:
        return type(self)(self.message, self.endpoint, code=self.code, status=self.status)


class CredentialsError(Exception):
    """Credentials could not be loaded (missing, malformed, or a key file others can read)."""


# --- 4xx by meaning ---------------------------------------------------------------------------


class B2BadRequest(B2Error):
    """400: B2 refused the request's content (``bad_request`` and codes without a class)."""


class B2NotFound(B2Error):
    """The named file, version, bucket or key does not exist (404, or a 400 that means it)."""


class B2FileNotPresent(B2NotFound):
    """400 ``file_not_present`` / ``no_such_file``: no such file (version) to delete or hide."""


class B2BucketNotFound(B2NotFound):
    """400 ``bad_bucket_id`` / ``invalid_bucket_id``: the bucket does not exist."""


class B2AlreadyHidden(B2BadRequest):
    """400 ``already_hidden``: the file's latest version is already a hide marker."""


class B2DuplicateBucketName(B2BadRequest):
    """400 ``duplicate_bucket_name``: the bucket name is in use (by any account)."""


class B2BucketNotEmpty(B2BadRequest):
    """400 ``cannot_delete_non_empty_bucket``."""


class B2UploadTokenBusy(B2BadRequest):
    """400 ``auth_token_limit``: the upload URL is in use by another upload (take another)."""


class B2BadCredentials(B2Error):
    """``b2_authorize_account`` refused the application key (wrong id or key, or expired)."""


class B2AuthTokenError(B2Error):
    """401 ``bad_auth_token`` / ``expired_auth_token`` / ``missing_auth_token``.

    For API calls the client re-authorizes and retries; for uploads it takes a new upload URL.
    Callers only see it when that did not help.
    """


class B2AccessDenied(B2Error):
    """The key may not do this (401 ``unauthorized`` / ``access_denied``, 403 ``access_denied``):
    a missing capability, or a bucket or name-prefix restriction."""


class B2CapExceeded(B2Error):
    """403: a storage, transaction or download cap of the account was reached."""


class B2Conflict(B2Error):
    """409 ``conflict``: e.g. ``ifRevisionIs`` did not match the bucket's revision."""


class B2RangeNotSatisfiable(B2Error):
    """416 ``range_not_satisfiable``: the requested range starts beyond the end of the file."""


# --- retryable --------------------------------------------------------------------------------


class B2RequestTimeout(B2Error):
    """408: B2 timed out reading the request."""

    retryable = True


class B2TooManyRequests(B2Error):
    """429: slow down (``retry_after`` says for how long, when B2 said)."""

    retryable = True


class B2ServiceError(B2Error):
    """5xx: B2 failed; worth retrying."""

    retryable = True


class B2InternalError(B2ServiceError):
    """500 ``internal_error``."""


class B2ServiceUnavailable(B2ServiceError):
    """503 ``service_unavailable``."""


class B2ConnectionError(B2Error):
    """No (complete) response: connection refused or reset, timeout, truncated body."""

    retryable = True

    def __init__(
        self,
        message: str,
        endpoint: str = "",
        *,
        code: str = "connection_error",
        status: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, endpoint, retry_after=retry_after)

    def copy(self) -> B2Error:
        return type(self)(self.message, self.endpoint, code=self.code)


# --- client-side findings ---------------------------------------------------------------------


class B2UnexpectedResponse(B2Error):
    """B2 answered with something the client cannot read (non-JSON error, missing fields)."""


class B2ChecksumMismatch(B2Error):
    """The SHA1 of the bytes received (or sent) differs from the one B2 reported."""

    def __init__(
        self,
        message: str,
        endpoint: str = "",
        *,
        code: str = "sha1_mismatch",
        status: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, endpoint, retry_after=retry_after)

    def copy(self) -> B2Error:
        return type(self)(self.message, self.endpoint, code=self.code)


class B2SourceError(B2Error):
    """The upload source did not deliver what it promised (file shorter than its size)."""

    def __init__(
        self,
        message: str,
        endpoint: str = "",
        *,
        code: str = "upload_source_changed",
        status: int = 0,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, endpoint, retry_after=retry_after)

    def copy(self) -> B2Error:
        return type(self)(self.message, self.endpoint, code=self.code)


_BY_CODE: dict[str, type[B2Error]] = {
    "bad_bucket_id": B2BucketNotFound,
    "invalid_bucket_id": B2BucketNotFound,
    "file_not_present": B2FileNotPresent,
    "no_such_file": B2FileNotPresent,
    "already_hidden": B2AlreadyHidden,
    "duplicate_bucket_name": B2DuplicateBucketName,
    "cannot_delete_non_empty_bucket": B2BucketNotEmpty,
    "auth_token_limit": B2UploadTokenBusy,
    "bad_auth_token": B2AuthTokenError,
    "expired_auth_token": B2AuthTokenError,
    "missing_auth_token": B2AuthTokenError,
    "unauthorized": B2AccessDenied,
    "access_denied": B2AccessDenied,
    "cap_exceeded": B2CapExceeded,
    "storage_cap_exceeded": B2CapExceeded,
    "transaction_cap_exceeded": B2CapExceeded,
    "download_cap_exceeded": B2CapExceeded,
    "range_not_satisfiable": B2RangeNotSatisfiable,
}

_BY_STATUS: dict[int, type[B2Error]] = {
    400: B2BadRequest,
    401: B2AccessDenied,
    403: B2AccessDenied,
    404: B2NotFound,
    408: B2RequestTimeout,
    409: B2Conflict,
    416: B2RangeNotSatisfiable,
    429: B2TooManyRequests,
    500: B2InternalError,
    503: B2ServiceUnavailable,
}

AUTHORIZE_ENDPOINT = "b2_authorize_account"


def error_from_response(
    endpoint: str,
    status: int,
    code: str,
    message: str,
    *,
    retry_after: float | None = None,
) -> B2Error:
    """The typed error for an error response of ``endpoint`` (B2-API.md §2)."""
    cls: type[B2Error]
    if endpoint == AUTHORIZE_ENDPOINT and status == 401:
        # Any 401 here means the key itself was refused (the 2021 service even said
        # bad_auth_token): never treat it as a token to renew, that would loop.
        cls = B2BadCredentials
        if code == "unsupported":
            message = message or "the application key needs a newer API version"
        message = f"the application key was refused: {message or code}"
        return cls(status, code, message, endpoint, retry_after=retry_after)
    if status >= 500:
        cls = _BY_STATUS.get(status, B2ServiceError)
    elif status in (408, 429):
        cls = _BY_STATUS[status]
    else:
        cls = _BY_CODE.get(code) or _BY_STATUS.get(status, B2Error)
        if status == 403 and cls is B2AccessDenied and code.endswith("cap_exceeded"):
            cls = B2CapExceeded
    return cls(status, code, message, endpoint, retry_after=retry_after)
