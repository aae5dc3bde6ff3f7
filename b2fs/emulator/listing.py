"""Paging and delimiter folders over an ordered scan (B2-API.md §6.8, §6.9, §9).

:func:`collect` walks a scan in order and collapses every name that has the delimiter after
the prefix into one folder row (the prefix through that first delimiter), jumping past the
folder's names in one step. It gathers ``limit + 1`` entries: the extra one, when present,
tells the next cursor (``nextFileName``, and ``nextFileId`` for versions), which is always the
name (and id) of a real next entry, so restarting there continues exactly where paging left.
"""

from __future__ import annotations

from collections.abc import Callable

from .models import FileVersion
from .store import prefix_successor

# scan(start_name, start_key, end, limit) -> rows in listing order from that position.
Scan = Callable[[str, "tuple[int, int] | None", "str | None", int], list[FileVersion]]
Entry = FileVersion | str  # a str is a folder row's name


def collect(
    scan: Scan,
    *,
    prefix: str,
    delimiter: str | None,
    start_name: str | None,
    start_key: tuple[int, int] | None,
    limit: int,
    versions: bool,
) -> list[Entry]:
    end = prefix_successor(prefix) if prefix else None
    if start_name is None or start_name < prefix:
        cursor, key = prefix, None
    else:
        cursor, key = start_name, start_key
    want = limit + 1
    entries: list[Entry] = []
    while len(entries) < want:
        batch = min(max(want - len(entries), 1), 1000) if not delimiter else min(want, 1000)
        rows = scan(cursor, key, end, batch)
        if not rows:
            break
        jumped = False
        for row in rows:
            if delimiter:
                i = row.name.find(delimiter, len(prefix))
                if i >= 0:
                    folder = row.name[: i + len(delimiter)]
                    entries.append(folder)
                    nxt = prefix_successor(folder)
                    if nxt is None or len(entries) >= want:
                        return entries
                    cursor, key, jumped = nxt, None, True
                    break
            entries.append(row)
            if len(entries) >= want:
                return entries
        if jumped:
            continue
        if len(rows) < batch:
            break
        last = rows[-1]
        if versions:
            cursor, key = last.name, (last.ts, last.seq - 1)
        else:
            cursor, key = last.name + "\x00", None
    return entries
