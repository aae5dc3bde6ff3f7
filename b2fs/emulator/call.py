"""What a handler gets: the parsed request, the emulator state, and the connection.

JSON handlers return a dict (the server writes it); transfer handlers (uploads, downloads)
stream through :class:`Connection`, which the HTTP server implements and shapes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from .auth import Principal
from .params import Params

if TYPE_CHECKING:
    from .app import App


class Connection(Protocol):
    """The response side of one HTTP exchange, plus the unread request body."""

    body_remaining: int

    def read_body(self, limit: int) -> bytes: ...

    def readinto_body(self, buf: memoryview) -> int: ...

    def start_response(
        self, status: int, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> None: ...

    def write(self, data: bytes | memoryview) -> None: ...

    def sendfile(self, fd: int, offset: int, count: int) -> None: ...

    def reset(self) -> None: ...


@dataclass
class Call:
    app: App
    op: str
    version: int
    method: str
    headers: Mapping[str, str]
    query: str
    path_args: list[str]
    conn: Connection
    params: Params = field(default_factory=lambda: Params({}))
    _principal: Principal | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def principal(self) -> Principal:
        """The caller, from an account token in the Authorization header (cached)."""
        if self._principal is None:
            self._principal = self.app.auth.resolve(self.headers.get("Authorization"))
        return self._principal
