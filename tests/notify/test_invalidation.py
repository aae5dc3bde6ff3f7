"""Tier 3: what one announced change invalidates in the filesystem core, without FUSE, and the
event queue's bounds (overflow, events of this mount's changes still in flight)."""

from __future__ import annotations

import trio
from core.conftest import Core

from b2fs.fs.inodes import ROOT_INODE
from b2fs.options import MountOptions
from b2fs.service.notifications import Notifications
from b2fs.service.webhook import Delivery, Event


def listings(core: Core) -> int:
    return core.calls("b2_list_file_names")


async def test_an_event_marks_exactly_what_shows_the_name_stale(core: Core) -> None:
    fs, bucket = core.fs, core.bucket
    await core.upload("a/x.txt", b"x")
    await core.upload("b/y.txt", b"y")
    a, x, b = await core.ino("a"), await core.ino("a/x.txt"), await core.ino("b")
    await core.ino("b/y.txt")  # every folder listed
    versions = await core.ino(".versions/a/x.txt")
    assert len(await fs.readdir(await fs.opendir(versions), 0)) == 1
    new = await core.client.upload_file(bucket.id, "a/x.txt", b"x, second version")

    drops = fs.remote_changed(bucket.id, "a/x.txt", "created", new.file_id)
    assert drops is not None
    assert drops.names >= {(a, "x.txt"), (fs.inode(versions).parent.ino, "x.txt")}  # type: ignore[union-attr]
    assert drops.attributes == {x}
    assert not fs.lister.is_fresh(fs.inode(a))
    assert fs.lister.is_fresh(fs.inode(b)) and fs.lister.is_fresh(fs.root)
    before = listings(core)
    assert (await fs.getattr(x)).size == len(b"x, second version")  # listed again
    await core.ino("b/y.txt")
    assert listings(core) == before + 1  # only a/ was listed again
    entries = await fs.readdir(await fs.opendir(versions), 0)
    assert len(entries) == 2  # the versions view of the name too

    # This mount's own version: nothing to do. Another bucket, a name outside: nothing.
    assert fs.remote_changed(bucket.id, "a/x.txt", "created", new.file_id) is not None
    fs.store.own.made(new.file_id)
    assert fs.remote_changed(bucket.id, "a/x.txt", "created", new.file_id) is None
    assert fs.remote_changed("another-bucket", "a/x.txt", "created", "id") is None


async def test_new_folders_and_emptied_folders(core: Core) -> None:
    fs, bucket = core.fs, core.bucket
    only = await core.client.upload_file(bucket.id, "top/only/file.txt", b"f")
    await core.upload("elsewhere.txt", b"e")
    top = await core.ino("top")
    only_dir = await core.ino("top/only")
    # A name in a folder this mount does not know: the deepest folder it knows is stale,
    # and the kernel forgets the new folder's name (it may cache its absence).
    drops = fs.remote_changed(bucket.id, "top/new/deeper/n.txt", "created", "id-n")
    assert drops is not None and (top, "new") in drops.names
    assert not fs.lister.is_fresh(fs.inode(top))
    await core.ino("top/only/file.txt")
    # The only file of a folder removed: the folder may be gone, its parent is stale too.
    await core.ino("top")
    assert fs.lister.is_fresh(fs.inode(top))
    await core.ino("elsewhere.txt")
    assert fs.lister.is_fresh(fs.root)
    # The only file of the only folder of top/ hidden: both folders may be gone, so the
    # listings that show them are stale; the root still has elsewhere.txt, it stops there.
    drops = fs.remote_changed(bucket.id, "top/only/file.txt", "hidden", "marker")
    assert drops is not None
    assert {(only_dir, "file.txt"), (top, "only"), (ROOT_INODE, "top")} == drops.names
    assert not fs.lister.is_fresh(fs.inode(top)) and not fs.lister.is_fresh(fs.root)
    await core.client.hide_file(bucket.id, "top/only/file.txt")
    listed = await fs.readdir(await fs.opendir(ROOT_INODE), 0)
    assert [name for name, _, _ in listed] == [b"elsewhere.txt"]  # top/ is gone
    assert only.file_id is not None


async def test_a_listing_in_flight_across_an_announcement_is_taken_again(core: Core) -> None:
    fs, bucket = core.fs, core.bucket
    await core.upload("d/old.txt", b"old")
    d = fs.inode(await core.ino("d"))
    d.listed_at = float("-inf")
    store = fs.store
    original = store.list_names
    gate = trio.Event()
    first = True

    async def slow_list(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        nonlocal first
        if first:
            first = False
            await gate.wait()
        async for item in original(*args, **kwargs):  # type: ignore[arg-type]
            yield item

    store.list_names = slow_list  # type: ignore[method-assign]
    try:
        before = listings(core)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fs.lister.refresh, d)
            await trio.testing.wait_all_tasks_blocked()
            new = await core.client.upload_file(bucket.id, "d/new.txt", b"new")
            fs.remote_changed(bucket.id, "d/new.txt", "created", new.file_id)
            gate.set()
        assert listings(core) == before + 2  # the first listing may predate the change
        assert "new.txt" in d.children and fs.lister.is_fresh(d)
    finally:
        store.list_names = original  # type: ignore[method-assign]


def _events(bucket_id: str, count: int, prefix: str = "q/") -> Delivery:
    events = tuple(
        Event(f"event-{prefix}{i}", "b2:ObjectCreated:Upload", bucket_id, f"{prefix}{i}", f"id{i}")
        for i in range(count)
    )
    return Delivery(events, b"{}", "v1=", relayed=True)


async def test_an_overflowing_queue_drops_the_oldest_and_lists_the_bucket_again(
    core: Core,
) -> None:
    fs, bucket = core.fs, core.bucket
    await core.upload("p/one.txt", b"1")
    p = await core.ino("p")
    await core.ino("p/one.txt")
    notifications = Notifications(fs, bucket, "", MountOptions(), b"secret", queue_size=4)
    notifications.deliver(_events(bucket.id, 10))  # never blocks
    notifications.deliver(_events(bucket.id, 10))  # the same events again: repeats
    stats = notifications.stats
    assert (stats.received, stats.dropped, stats.duplicate) == (20, 6, 10)
    assert fs.lister.is_fresh(fs.inode(p))
    async with trio.open_nursery() as waiting:
        await notifications.apply_queued(waiting)
    assert stats.resyncs == 1 and stats.applied == 4
    assert not fs.lister.is_fresh(fs.inode(p)) and not fs.lister.is_fresh(fs.root)
    assert notifications.snapshot()["queued"] == 0


async def test_an_event_of_a_change_still_in_flight_here_waits_for_it(core: Core) -> None:
    fs, bucket = core.fs, core.bucket
    notifications = Notifications(fs, bucket, "", MountOptions(), b"secret")
    own = fs.store.own
    async with trio.open_nursery() as waiting:
        with own.changing(bucket.id, "w.txt"):
            notifications.deliver(
                Delivery(
                    (Event("e1", "b2:ObjectCreated:Upload", bucket.id, "w.txt", "w-id"),),
                    b"{}",
                    "v1=",
                    relayed=True,
                )
            )
            await notifications.apply_queued(waiting)
            await trio.testing.wait_all_tasks_blocked()
            assert notifications.stats.waited == 1 and notifications.stats.own == 0
            own.made("w-id")  # B2's answer arrives after its notification
    assert notifications.stats.own == 1 and notifications.stats.applied == 0
