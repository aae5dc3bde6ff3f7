"""Two mounts of one bucket, each with its receiver and TTLs of an hour: what one changes shows
up in the other within two seconds of the call's return, through B2's event notifications.

B2 sends an event to one URL only (rules with a common event type need disjoint prefixes), so
the rule points at mount A's receiver and A forwards to B (``notify_forward``): changes made
through A reach B forwarded; changes made through B reach A straight from B2.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from filesystem.waiting import wait_until

from b2fs.emulator import Emulator
from notify.conftest import HOUR, B2View, NotifiedMount, set_rule

LIMIT = 2.0  # seconds from the call's return to the change seen on the other mount
latencies: dict[str, float] = {}


def seen_within(what: str, condition: Callable[[], object], started: float) -> None:
    """Poll ``condition`` on the other mount; fail unless it holds within LIMIT of ``started``
    (generous deadline for the failure message, exact measure for the assertion)."""
    wait_until(condition, timeout=LIMIT + 10, interval=0.01, what=what)
    elapsed = time.monotonic() - started
    latencies[what] = elapsed
    print(f"{what}: seen on the other mount {elapsed * 1000:.0f} ms after the call returned")
    assert elapsed < LIMIT, f"{what} took {elapsed:.2f}s to show up on the other mount"


def absent(path: Path) -> bool:
    try:
        os.stat(path)
    except FileNotFoundError:
        return True
    return False


def write_synced(path: Path, data: bytes) -> None:
    """Write, fsync (on B2 when it returns), close."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def test_changes_through_one_mount_appear_in_the_other_within_two_seconds(
    b2: B2View, emulator: Emulator, notified: Callable[..., NotifiedMount]
) -> None:
    b2.upload("docs/kept.txt", b"kept")
    b2.upload("docs/hidden.txt", b"hide me")
    b = notified(*HOUR, "notify_poll=0.2")
    a = notified(*HOUR, "notify_poll=0.2", f"notify_forward={b.url}")
    set_rule(emulator, a.url, a.secret)
    docs_a, docs_b = a.path / "docs", b.path / "docs"
    for mount in (a, b):  # the rule is read again: notifications are trusted
        wait_until(lambda m=mount: m.notify()["state"] == "healthy", what="healthy")
    # Both have listed and cached everything: for an hour they would not ask B2 again.
    assert sorted(os.listdir(docs_b)) == ["hidden.txt", "kept.txt"] == sorted(os.listdir(docs_a))
    assert absent(docs_b / "new.txt")  # the kernel now caches this absence for an hour
    listed_by_a = a.list_calls()

    write_synced(docs_a / "new.txt", b"version 1")
    started = time.monotonic()
    seen_within("create", lambda: (docs_b / "new.txt").read_bytes() == b"version 1", started)

    with open(docs_b / "new.txt", "rb") as reader:  # B keeps reading what it opened
        write_synced(docs_a / "new.txt", b"version two, longer")
        started = time.monotonic()
        seen_within(
            "overwrite",
            lambda: (docs_b / "new.txt").read_bytes() == b"version two, longer",
            started,
        )
        assert reader.read() == b"version 1"
    assert os.stat(docs_b / "new.txt").st_size == len(b"version two, longer")

    os.unlink(docs_a / "hidden.txt")  # unlink=hide: a hide marker
    started = time.monotonic()
    seen_within("hide", lambda: absent(docs_b / "hidden.txt"), started)
    # The events of A's own changes came back to A and cost it nothing.
    wait_until(lambda: a.notify()["events"]["own"] >= 3, what="A's own events")
    assert a.list_calls() == listed_by_a
    os.listdir(docs_a)
    assert a.list_calls() == listed_by_a

    # Removing the hide marker's entry in .versions deletes it on B2: the file is back.
    versions = a.path / ".versions" / "docs" / "hidden.txt"
    (marker,) = [n for n in os.listdir(versions) if n.endswith(".hidden")]
    os.unlink(versions / marker)
    started = time.monotonic()
    seen_within("delete", lambda: (docs_b / "hidden.txt").read_bytes() == b"hide me", started)

    os.rename(docs_a / "new.txt", docs_a / "renamed.txt")  # a server-side copy and a hide
    started = time.monotonic()
    seen_within(
        "rename",
        lambda: (
            sorted(os.listdir(docs_b)) == ["hidden.txt", "kept.txt", "renamed.txt"]
            and absent(docs_b / "new.txt")
        ),
        started,
    )
    assert (docs_b / "renamed.txt").read_bytes() == b"version two, longer"

    # A folder new to B: its parent's listing and the kernel's cached absence are dropped.
    (a.path / "fresh").mkdir()
    write_synced(a.path / "fresh" / "deep.txt", b"deep")
    started = time.monotonic()
    seen_within("create in a new folder", lambda: (b.path / "fresh" / "deep.txt").exists(), started)

    # The other way: B's change goes straight from B2 to A (and A forwards it back to B,
    # which knows it as its own).
    write_synced(docs_b / "from-b.txt", b"from b")
    started = time.monotonic()
    seen_within("create through B", lambda: (docs_a / "from-b.txt").exists(), started)

    # Every event of A's own changes was skipped; only B's change was applied on A.
    # A's own: 3 uploads, 2 hide markers, the deleted marker, the rename's copy.
    wait_until(lambda: b.notify()["events"]["own"] == 1, timeout=10, what="B's own event")
    wait_until(lambda: a.notify()["events"]["own"] == 7, timeout=10, what="A's own events")
    notify_a = a.notify()
    assert notify_a["events"]["applied"] == 1, notify_a["events"]
    assert notify_a["state"] == "healthy" and notify_a["forward"][0]["failed"] == 0
    notify_b = b.notify()
    assert notify_b["receiver"]["refused"] == 0
    print("latencies (ms):", {k: round(v * 1000) for k, v in latencies.items()})


def test_changes_by_another_client_and_an_open_handle_keeps_its_version(
    b2: B2View, emulator: Emulator, notified: Callable[..., NotifiedMount]
) -> None:
    b2.upload("open.txt", b"pinned content")
    b2.upload("two.txt", b"first")
    newest = b2.upload("two.txt", b"second version")
    b = notified(*HOUR)
    set_rule(emulator, b.url, b.secret)
    assert (b.path / "two.txt").read_bytes() == b"second version"
    with open(b.path / "open.txt", "rb") as reader:
        b2.hide("open.txt")  # b2:HideMarkerCreated:Hide
        started = time.monotonic()
        seen_within("hide by another client", lambda: absent(b.path / "open.txt"), started)
        assert reader.read() == b"pinned content"
    b2.delete_version(newest)  # b2:ObjectDeleted:Delete: the older version is current again
    started = time.monotonic()
    seen_within(
        "delete by another client",
        lambda: (b.path / "two.txt").read_bytes() == b"first",
        started,
    )
    assert b.notify()["events"]["applied"] == 2
