"""Counters of what the client did, for the daemon's status and metrics (issue 6).

Design
------
Plain integers and ``collections.Counter`` updated in place. Under trio all updates happen on
the event loop thread between checkpoints, so no lock is needed; uploads that hash in worker
threads report their byte counts from the loop. :meth:`ClientStats.snapshot` returns a
JSON-ready copy (keys of the ``(status, code)`` counter become ``"401 expired_auth_token"``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ClientStats"]


@dataclass
class ClientStats:
    """Requests and errors by endpoint and by ``(status, code)``, bytes moved, retries and
    re-authorizations."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    errors_by_code: Counter[tuple[int, str]] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    reauthorizations: int = 0
    bytes_uploaded: int = 0  # file data sent, retries included
    bytes_downloaded: int = 0  # file data received, retries included

    def record_request(self, endpoint: str) -> None:
        self.requests[endpoint] += 1

    def record_error(self, endpoint: str, status: int, code: str) -> None:
        self.errors[endpoint] += 1
        self.errors_by_code[(status, code)] += 1

    def record_retry(self, endpoint: str) -> None:
        self.retries[endpoint] += 1

    def record_reauthorization(self) -> None:
        self.reauthorizations += 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "requests": dict(self.requests),
            "requests_total": sum(self.requests.values()),
            "errors": dict(self.errors),
            "errors_total": sum(self.errors.values()),
            "errors_by_code": {f"{s} {c}": n for (s, c), n in self.errors_by_code.items()},
            "retries": dict(self.retries),
            "retries_total": sum(self.retries.values()),
            "reauthorizations": self.reauthorizations,
            "bytes_uploaded": self.bytes_uploaded,
            "bytes_downloaded": self.bytes_downloaded,
        }
