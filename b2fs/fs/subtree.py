"""Every name below a directory, fetched for a recursive walk: a probe, then parallel ranges.

A recursive walk (``ls -lR``, ``find``, ``du``, ``rsync``) wants every name below a directory.
One paged listing without a delimiter gets them in the fewest calls, but its answers cross one
connection one after the other: 10,000 names are about 7 MB of JSON, most of a second on a
link of 10 MB/s per connection. B2 lists names in order from any name on (``startFileName``),
so the names below a directory split into ranges at its subfolders' names, and the ranges can
be listed at once on separate connections:

1. The probe: the first ``PROBE`` names. A subtree that fits is done in one call (most are).
2. Otherwise what follows is cut at the directory's subfolders (known from its own listing)
   into at most ``concurrency`` ranges of about as many folders each (fewer for a small
   subtree: at least ``_RANGE`` names expected in each), listed at once. A range
   is read page by page until a name reaches the next range's start. Its first page asks for
   as many names as the probe's density (names per child seen) predicts, plus a margin, so
   the page that ends a range overshoots it by little; later pages double, up to B2's 10,000.
3. Every name counts against ``budget``: past it, the walk is given up on and only the part
   covered without a gap from the start is returned (the caller lists the rest folder by
   folder).

Progress is reported as it is made (``covered``): the probe's names, then each range's as it
is finished, whatever the order, so a walk can go on with the folders already in while later
ranges are on their way.

Calls: one for a subtree within the probe; otherwise the probe plus one or more per range.
B2 bills listings per 1,000 names returned (B2-API.md §6.8), so the split adds about one
billed transaction per range.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from b2fs.b2.client import MAX_FILE_LIST_PAGE
from b2fs.objectstore import ObjectStore, RemoteFile

PROBE = 300  # names in the first page: a subtree this small costs one call
MAX_PAGE = MAX_FILE_LIST_PAGE  # B2's largest page
_MARGIN = 1.1  # a range's first page asks for this much more than the density predicts
_RANGE = 200  # names a range is cut for at least (fewer, bigger ranges for small subtrees)


@dataclass
class SubtreeNames:
    rows: list[RemoteFile]  # in name order
    covered_to: str | None  # None: every name came; else the first name not covered


@dataclass
class _Range:
    start: str
    end: str | None  # exclusive; None: to the end of the subtree
    expected: int  # names the probe's density predicts
    rows: list[RemoteFile] = field(default_factory=list)
    done: bool = False


class _OverBudget(Exception):
    pass


Covered = Callable[[list[RemoteFile], str, str | None], None]
"""Told the names of a stretch of the subtree now complete: every name from ``start`` (a name
or the prefix) up to, not including, ``end`` (``None``: the end of the subtree)."""


def _ignore(rows: list[RemoteFile], start: str, end: str | None) -> None:
    pass


def _not_counted() -> None:
    pass


async def list_subtree(
    store: ObjectStore,
    bucket_id: str,
    prefix: str,
    subfolders: Sequence[str],
    *,
    concurrency: int,
    budget: int,
    covered: Covered = _ignore,
    asking: Callable[[], None] = _not_counted,
) -> SubtreeNames:
    """Every visible name under ``prefix`` (no folder rows), or as many as ``budget`` allows.

    ``subfolders`` are the keys (ending in "/") of folders directly under ``prefix``, in
    order: the places where the names may be cut into ranges. ``covered`` is told the names
    as they come (see :data:`Covered`), the probe's first; never a range not finished.
    ``asking`` is called before each list call (those cut short by the budget included), so
    that the caller counts them even if the listing fails.
    """
    asking()
    rows, after = await store.list_names_page(bucket_id, prefix, None, min(PROBE, budget))
    covered(rows, prefix, after)
    if after is None:
        return SubtreeNames(rows, None)
    if len(rows) >= budget:
        return SubtreeNames(rows, after)
    ranges = _split(rows, after, prefix, subfolders, concurrency)
    counted = [len(rows)]

    async def fetch(part: _Range) -> None:
        cursor: str | None = part.start
        count = min(MAX_PAGE, math.ceil(part.expected * _MARGIN) + 5)
        while cursor is not None:
            asking()
            page, cursor = await store.list_names_page(bucket_id, prefix, cursor, count)
            for row in page:
                if part.end is not None and row.name >= part.end:
                    cursor = None
                    break
                part.rows.append(row)
            counted[0] += len(page)
            if part.end is not None and cursor is not None and cursor >= part.end:
                cursor = None
            if cursor is not None and counted[0] >= budget:
                raise _OverBudget
            count = min(MAX_PAGE, count * 2)
        part.done = True
        covered(part.rows, part.start, part.end)

    try:
        async with trio.open_nursery() as nursery:
            for part in ranges:
                nursery.start_soon(fetch, part)
    except* _OverBudget:
        pass
    covered_to: str | None = None
    for part in ranges:
        if not part.done:
            covered_to = part.start
            break
        rows += part.rows
    return SubtreeNames(rows, covered_to)


def _split(
    probed: list[RemoteFile],
    after: str,
    prefix: str,
    subfolders: Sequence[str],
    concurrency: int,
) -> list[_Range]:
    """Cut the names from ``after`` on into ranges at subfolder names."""
    children = {row.name[len(prefix) :].split("/", 1)[0] for row in probed}
    per_child = len(probed) / max(1, len(children))
    later = list(subfolders[bisect_right(subfolders, after) :])
    expected = per_child * (len(later) + 1)
    count = max(1, min(concurrency, len(later) + 1, int(expected // _RANGE)))
    starts = [after] + [later[k * len(later) // count] for k in range(1, count)]
    ranges = []
    for index, start in enumerate(starts):
        end = starts[index + 1] if index + 1 < len(starts) else None
        last = bisect_left(later, end) if end is not None else len(later)
        folders = last - bisect_left(later, start) + (index == 0)  # + the one probed into
        ranges.append(_Range(start, end, round(per_child * max(1, folders))))
    return ranges
