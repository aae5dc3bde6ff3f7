"""A lean parser for request heads (the request line is parsed by the server).

The standard library parses headers with the ``email`` package, which measured about a
quarter of the emulator's CPU per small JSON call. B2 requests need much less: header lines
``Name: value``, case-insensitive lookup, limits on line length and count. :class:`Headers`
is a read-only, case-insensitive mapping (first value wins for repeated names, as
``email.message.Message.get`` does); :func:`read_headers` reads the lines up to the blank one.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

MAX_LINE = 65536
MAX_HEADERS = 100


class LineReader(Protocol):
    def readline(self, size: int = -1, /) -> bytes: ...


class HeaderError(Exception):
    """A malformed head; ``status`` is what to answer (400 or 431)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Headers(Mapping[str, str]):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        self._index: dict[str, str] = {}
        for name, value in items:
            self._index.setdefault(name.lower(), value)

    def __getitem__(self, name: str) -> str:
        return self._index[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return self._index.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        return list(self._items)


def read_headers(rfile: LineReader) -> Headers:
    items: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise HeaderError(431, "Line too long")
        if line in (b"\r\n", b"\n", b""):
            return Headers(items)
        if len(items) >= MAX_HEADERS:
            raise HeaderError(431, "Too many headers")
        text = line.decode("iso-8859-1").rstrip("\r\n")
        if text[:1] in (" ", "\t"):  # obsolete line folding: continues the previous value
            if not items:
                raise HeaderError(400, "Bad header continuation")
            name, value = items[-1]
            items[-1] = (name, f"{value} {text.strip()}")
            continue
        name, sep, value = text.partition(":")
        if not sep or not name or name != name.strip():
            raise HeaderError(400, "Bad header line")
        items.append((name, value.strip()))
