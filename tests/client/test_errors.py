"""The (endpoint, status, code) -> error class table of B2-API.md §2."""

from __future__ import annotations

import pytest

from b2fs.b2 import (
    B2AccessDenied,
    B2AlreadyHidden,
    B2AuthTokenError,
    B2BadCredentials,
    B2BadRequest,
    B2BucketNotEmpty,
    B2BucketNotFound,
    B2CapExceeded,
    B2Conflict,
    B2DuplicateBucketName,
    B2Error,
    B2FileNotPresent,
    B2InternalError,
    B2NotFound,
    B2RangeNotSatisfiable,
    B2RequestTimeout,
    B2ServiceError,
    B2ServiceUnavailable,
    B2TooManyRequests,
    B2UploadTokenBusy,
)
from b2fs.b2.errors import error_from_response


@pytest.mark.parametrize(
    ("status", "code", "cls", "retryable"),
    [
        (400, "bad_request", B2BadRequest, False),
        (400, "bad_bucket_id", B2BucketNotFound, False),
        (400, "invalid_bucket_id", B2BucketNotFound, False),
        (400, "file_not_present", B2FileNotPresent, False),
        (400, "no_such_file", B2FileNotPresent, False),
        (400, "already_hidden", B2AlreadyHidden, False),
        (400, "duplicate_bucket_name", B2DuplicateBucketName, False),
        (400, "cannot_delete_non_empty_bucket", B2BucketNotEmpty, False),
        (400, "auth_token_limit", B2UploadTokenBusy, False),
        (400, "something_new", B2BadRequest, False),
        (401, "bad_auth_token", B2AuthTokenError, False),
        (401, "expired_auth_token", B2AuthTokenError, False),
        (401, "missing_auth_token", B2AuthTokenError, False),
        (401, "unauthorized", B2AccessDenied, False),
        (401, "access_denied", B2AccessDenied, False),
        (403, "storage_cap_exceeded", B2CapExceeded, False),
        (403, "transaction_cap_exceeded", B2CapExceeded, False),
        (403, "download_cap_exceeded", B2CapExceeded, False),
        (403, "access_denied", B2AccessDenied, False),
        (404, "not_found", B2NotFound, False),
        (408, "request_timeout", B2RequestTimeout, True),
        (409, "conflict", B2Conflict, False),
        (416, "range_not_satisfiable", B2RangeNotSatisfiable, False),
        (429, "too_many_requests", B2TooManyRequests, True),
        (500, "internal_error", B2InternalError, True),
        (503, "service_unavailable", B2ServiceUnavailable, True),
        (503, "bad_request", B2ServiceUnavailable, True),
        (502, "bad_gateway", B2ServiceError, True),
    ],
)
def test_error_classes(status: int, code: str, cls: type[B2Error], retryable: bool) -> None:
    exc = error_from_response("b2_list_file_names", status, code, "msg")
    assert type(exc) is cls
    assert exc.retryable is retryable
    assert (exc.status, exc.code, exc.message, exc.endpoint) == (
        status,
        code,
        "msg",
        "b2_list_file_names",
    )
    assert str(exc) == f"b2_list_file_names: msg ({status} {code})"


@pytest.mark.parametrize(
    "code", ["unauthorized", "bad_auth_token", "unsupported", "expired_auth_token"]
)
def test_any_401_on_authorize_means_the_key_was_refused(code: str) -> None:
    exc = error_from_response("b2_authorize_account", 401, code, "")
    assert type(exc) is B2BadCredentials and not exc.retryable
    assert "application key was refused" in str(exc)


def test_copies_are_independent_and_equal() -> None:
    exc = error_from_response("b2_x", 429, "too_many_requests", "m", retry_after=3.0)
    copy = exc.copy()
    assert copy is not exc and type(copy) is type(exc)
    assert (copy.status, copy.code, copy.message, copy.endpoint, copy.retry_after) == (
        429,
        "too_many_requests",
        "m",
        "b2_x",
        3.0,
    )
