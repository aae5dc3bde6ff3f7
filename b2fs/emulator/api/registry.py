"""The table of operations: name -> handler, endpoint class and allowed methods.

The endpoint class (``auth``, ``api``, ``upload``, ``download``) is what fault injection and
statistics group by. JSON operations return a dict that the server sends; streaming ones
(uploads, downloads) read the body and write the response themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..call import Call

Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Operation:
    name: str
    kind: str
    handler: Handler
    methods: frozenset[str]
    streaming: bool


OPERATIONS: dict[str, Operation] = {}


def operation(
    name: str,
    kind: str = "api",
    methods: tuple[str, ...] = ("GET", "POST"),
    streaming: bool = False,
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        OPERATIONS[name] = Operation(name, kind, fn, frozenset(methods), streaming)
        return fn

    return register
