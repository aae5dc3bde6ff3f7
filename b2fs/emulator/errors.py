"""B2 error responses as one exception type.

Every failure a handler detects is raised as :class:`B2Error` carrying the HTTP status, the B2
``code`` and the message; the server turns it into ``{"status", "code", "message"}`` with the
matching HTTP status (empty body for HEAD). Helpers name the common cases so that status/code
pairs are written in one place.
"""

from __future__ import annotations


class B2Error(Exception):
    """An error answered to the client in B2's JSON error format."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, object]:
        return {"code": self.code, "message": self.message, "status": self.status}


def bad_request(message: str, code: str = "bad_request") -> B2Error:
    return B2Error(400, code, message)


def unauthorized(message: str = "") -> B2Error:
    return B2Error(401, "unauthorized", message)


def not_found(message: str = "") -> B2Error:
    return B2Error(404, "not_found", message)


def bad_bucket_id(bucket_id: str) -> B2Error:
    return B2Error(400, "bad_bucket_id", f"Invalid bucketId: {bucket_id}")


def missing_auth_token() -> B2Error:
    return B2Error(401, "missing_auth_token", "Authorization token is missing")


def bad_auth_token() -> B2Error:
    return B2Error(401, "bad_auth_token", "Invalid authorization token")


def expired_auth_token() -> B2Error:
    return B2Error(401, "expired_auth_token", "Authorization token has expired")
