"""Paging and delimiter folders over an ordered scan (B2-API.md §6.8, §6.9, §9).

:func:`collect` walks a scan in order and collapses every name that has the delimiter after
the prefix into one folder row (the prefix through that first delimiter), jumping past the
folder's names in one step (batches start small after a jump, so a listing of 100 folders
of 100 names reads a few hundred rows, not 100 batches of a thousand). It gathers
``limit + 1`` entries: the extra one, when present, tells the next cursor
(``nextFileName``, and ``nextFileId`` for versions), which is always the name (and id) of a
real next entry, so restarting there continues exactly where paging left.
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
    # With a delimiter, a batch may end at the first row (a folder to jump past), so batches
    # start small after a jump and double while rows are plain names: a folder never costs a
    # scan of a thousand rows it skips.
    delimited_batch = 8
    while len(entries) < want:
        if delimiter:
            batch = min(delimited_batch, want, 1000)
        else:
            batch = min(max(want - len(entries), 1), 1000)
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
            delimited_batch = 8
            continue
        delimited_batch *= 2
        if len(rows) < batch:
            break
        last = rows[-1]
        if versions:
            cursor, key = last.name, (last.ts, last.seq - 1)
        else:
            cursor, key = last.name + "\x00", None
    return entries
