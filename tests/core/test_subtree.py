"""Every name below a directory in ranges listed at once (``fs.subtree``).

What a user relies on: ``ls -R`` or ``find`` shows every file below a directory once, whatever
the shape of the tree, however its names were cut into ranges and whatever B2's
``nextFileName`` looks like (B2-API.md §6.8 allows any name that finds the next file); a walk
too big for its budget gives exactly the names before the point it reached, so that the
folders it did not finish are listed on their own.
"""

from __future__ import annotations

import errno
import itertools

import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from b2fs.b2.errors import B2AccessDenied
from b2fs.fs import subtree
from b2fs.fs.errors import to_fs_error
from b2fs.objectstore import RemoteFile

TOP = "top/"


class Names:
    """``list_names_page`` of B2 over a fixed set of names, counting what it is asked."""

    def __init__(self, names: list[str], next_is_padded: bool) -> None:
        self.names = sorted(names, key=lambda name: name.encode())  # B2 orders by UTF-8 bytes
        self.next_is_padded = next_is_padded  # nextFileName = last + " " (b2sdk's simulator)
        self.pages = 0
        self.returned = 0  # names sent, those past a range's end included
        self.in_flight = 0
        self.most_in_flight = 0

    async def list_names_page(
        self, bucket_id: str, prefix: str, start: str | None, count: int
    ) -> tuple[list[RemoteFile], str | None]:
        self.pages += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        await trio.lowlevel.checkpoint()  # let the other ranges ask meanwhile
        self.in_flight -= 1
        key = (start or prefix).encode()
        later = [n for n in self.names if n.startswith(prefix) and n.encode() >= key]
        page = later[:count]
        after = None
        if len(later) > count:
            after = page[-1] + " " if self.next_is_padded else later[count]
        self.returned += len(page)
        return [RemoteFile(name=n, action="upload", file_id=n, size=1) for n in page], after


async def walk(
    store: Names,
    folders: list[str],
    *,
    concurrency: int,
    budget: int,
    spans: list[tuple[str, str | None, list[str]]] | None = None,
    asked: list[None] | None = None,
) -> subtree.SubtreeNames:
    """``list_subtree`` of everything below TOP, on the fake store; the stretches it reports
    as complete go to ``spans``, and an item to ``asked`` for each list call it makes."""
    taken = spans if spans is not None else []
    calls = asked if asked is not None else []
    return await subtree.list_subtree(
        store,  # type: ignore[arg-type]
        "bucket",
        TOP,
        folders,
        concurrency=concurrency,
        budget=budget,
        covered=lambda rows, start, end: taken.append((start, end, [row.name for row in rows])),
        asking=lambda: calls.append(None),
    )


_COMPONENTS = st.sampled_from(["a", "a-", "a.b", "a0", "b", "é", "😀", "Z", "zz"])


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    """Names below TOP (paths of up to three parts, so folders nest and names sort across
    '/'), and the subfolder keys the directory knows of (some only local: not on B2)."""
    paths = draw(st.sets(st.lists(_COMPONENTS, min_size=1, max_size=3).map(tuple), max_size=60))
    names = [TOP + "/".join(path) for path in paths]
    folders = {TOP + path[0] + "/" for path in paths if len(path) > 1}
    folders |= {TOP + part + "/" for part in draw(st.sets(_COMPONENTS, max_size=3))}
    return names, sorted(folders)


@settings(max_examples=300, deadline=None)
@example(  # over budget while another range's call is under way: that call counts too
    tree=(["top/a", "top/a-", "top/a/a", "top/a/a-", "top/a/a/a", "top/a0"], ["top/a/"]),
    probe=1,
    concurrency=2,
    budget=2,
    next_is_padded=False,
)
@given(
    tree=trees(),
    probe=st.integers(1, 8),
    concurrency=st.integers(1, 6),
    budget=st.integers(1, 80),
    next_is_padded=st.booleans(),
)
async def test_a_subtree_comes_whole_and_in_order_or_up_to_where_it_stopped(
    tree: tuple[list[str], list[str]],
    probe: int,
    concurrency: int,
    budget: int,
    next_is_padded: bool,
) -> None:
    names, folders = tree
    store = Names(names, next_is_padded)
    spans: list[tuple[str, str | None, list[str]]] = []
    asked: list[None] = []
    saved = subtree.PROBE, subtree._RANGE
    subtree.PROBE, subtree._RANGE = probe, 1  # small trees cut into many ranges
    try:
        found = await walk(
            store, folders, concurrency=concurrency, budget=budget, spans=spans, asked=asked
        )
    finally:
        subtree.PROBE, subtree._RANGE = saved
    got = [row.name for row in found.rows]
    if found.covered_to is None:
        assert got == store.names
    else:
        assert len(store.names) > min(probe, budget)  # gave up only when more remained
        assert got == [n for n in store.names if n.encode() < found.covered_to.encode()]
    assert len(asked) == store.pages  # every call counted, those cut short by the budget too
    assert store.most_in_flight <= concurrency
    # Each stretch reported complete holds exactly the names between its ends, and the
    # stretches do not overlap: a walk may apply a folder as soon as one stretch holds it.
    assert spans and spans[0][0] == TOP
    for start, end, rows in spans:
        assert rows == [
            n
            for n in store.names
            if n.encode() >= start.encode() and (end is None or n.encode() < end.encode())
        ]
    ordered = sorted(spans, key=lambda span: span[0].encode())
    for (_, end, _), (start, _, _) in itertools.pairwise(ordered):
        assert end is not None and end.encode() <= start.encode()
    if found.covered_to is None:  # they tile the subtree
        assert [name for _, _, rows in ordered for name in rows] == store.names


async def test_ranges_are_listed_at_once_and_overshoot_little() -> None:
    """100 folders of 100 names, the shape of benchmark workload 6: the probe, then the
    ranges all in flight together, each asking for about as many names as it holds."""
    names = [f"{TOP}d{d:03d}/f{f:03d}" for d in range(100) for f in range(100)]
    folders = sorted({name.rsplit("/", 1)[0] + "/" for name in names})
    store = Names(names, next_is_padded=False)
    asked: list[None] = []
    found = await walk(store, folders, concurrency=16, budget=50_000, asked=asked)
    assert [row.name for row in found.rows] == names
    assert found.covered_to is None
    assert store.most_in_flight == 16
    assert len(asked) == 1 + 16  # one page per range: the density estimate held
    assert store.returned <= 1.15 * len(names)


class SlowFolder(Names):
    """Answers pages that start inside ``top/a/`` (after the probe) last of all."""

    def __init__(self, names: list[str], others: int) -> None:
        super().__init__(names, next_is_padded=False)
        self.others = others  # pages of other ranges to answer first
        self.answered = 0
        self.others_answered = trio.Event()

    async def list_names_page(
        self, bucket_id: str, prefix: str, start: str | None, count: int
    ) -> tuple[list[RemoteFile], str | None]:
        if start is not None and start.startswith(TOP + "a/"):
            await self.others_answered.wait()
        page = await super().list_names_page(bucket_id, prefix, start, count)
        if start is not None and not start.startswith(TOP + "a/"):
            self.answered += 1
            if self.answered == self.others:
                self.others_answered.set()
        return page


async def test_a_walk_over_budget_returns_nothing_past_its_first_unfinished_range(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ranges after a dense folder finish first; the walk then runs out of budget inside
    that folder: the names of the finished ranges after it are left out too (their folders
    are listed on their own later, like the rest)."""
    monkeypatch.setattr(subtree, "PROBE", 1)
    monkeypatch.setattr(subtree, "_RANGE", 1)
    names = [f"{TOP}a/{n:02d}" for n in range(50)] + [f"{TOP}{f}/1" for f in "bcd"]
    folders = [f"{TOP}{f}/" for f in "abcd"]
    store = SlowFolder(names, others=3)
    found = await walk(store, folders, concurrency=4, budget=20)
    assert found.covered_to == f"{TOP}a/01"
    assert [row.name for row in found.rows] == [f"{TOP}a/00"]


class Refusing(Names):
    """Refuses every page after the probe, as B2 does once a key loses ``listFiles``."""

    async def list_names_page(
        self, bucket_id: str, prefix: str, start: str | None, count: int
    ) -> tuple[list[RemoteFile], str | None]:
        if start is not None:
            raise B2AccessDenied(401, "unauthorized", "not allowed", "b2_list_file_names")
        return await super().list_names_page(bucket_id, prefix, start, count)


async def test_a_range_refused_by_b2_fails_the_walk_with_its_own_errno(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ranges fail together (a trio nursery): the request still gets the errno of B2's
    answer (EACCES here), not a generic EIO."""
    monkeypatch.setattr(subtree, "PROBE", 2)
    monkeypatch.setattr(subtree, "_RANGE", 1)
    names = [f"{TOP}{f}/{n}" for f in "abcdef" for n in range(3)]
    store = Refusing(names, next_is_padded=False)
    with pytest.raises(BaseException) as raised:
        await walk(store, [f"{TOP}{f}/" for f in "abcdef"], concurrency=4, budget=100)
    assert to_fs_error(raised.value).errno == errno.EACCES


async def test_a_walk_covers_a_folder_once_the_stretches_holding_it_are_in_in_any_order() -> None:
    """``SubtreeWalk``: a readdir waits until its folder's names are all in. The probe ends
    inside ``top/b/``; the ranges start there and at ``top/e/``, and come back last first."""
    from b2fs.fs.dirlist import SubtreeWalk

    walk = SubtreeWalk()
    walk.add(TOP, TOP + "b/07")  # the probe: top/a/ whole, top/b/ in part
    assert walk.covers(TOP + "a/") and not walk.covers(TOP + "b/")
    walk.add(TOP + "e/", None)  # the last range first
    assert walk.covers(TOP + "e/") and walk.covers(TOP + "f/g/")
    assert not walk.covers(TOP + "b/") and not walk.covers(TOP + "c/")
    assert not walk.covers(TOP)  # the top itself: only once everything is in
    walk.add(TOP + "b/07", TOP + "e/")  # the range that joins them
    assert walk.spans == [(TOP, None)]
    assert all(walk.covers(TOP + f"{name}/") for name in "abcdz") and walk.covers(TOP)
