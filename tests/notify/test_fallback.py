"""When notifications cannot be trusted, the mount falls back to its TTLs and says so: a rule
that B2 suspended (its deliveries kept failing) or that was disabled, and silence; it trusts
them again by itself once the reason is gone.

The mounts here have dir_timeout=1s: in fallback another client's change shows up within
about a second by the TTL; while notifications are healthy, listings are trusted for
notify_dir_timeout (an hour) and B2 is not asked again.
"""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from collections.abc import Callable

from filesystem.waiting import wait_until

from b2fs.emulator import Emulator
from notify.conftest import B2View, NotifiedMount, Secret, rules, set_rule

SHORT = ["dir_timeout=1s", "attr_timeout=1s"]


def state(mount: NotifiedMount) -> str:
    return str(mount.notify()["state"])


def dead_url() -> str:
    """A loopback URL where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def metric(address: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=30) as answer:
        for line in answer.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
    raise AssertionError(f"no sample {name}")


def test_a_suspended_or_disabled_rule_falls_back_to_the_ttls(
    b2: B2View, emulator: Emulator, notified: Callable[..., NotifiedMount]
) -> None:
    b2.upload("one.txt", b"1")
    b = notified(*SHORT, "notify_poll=0.2", "metrics=127.0.0.1:0")
    set_rule(emulator, b.url, b.secret)
    wait_until(lambda: state(b) == "healthy", what="notifications healthy")
    metrics = b.status()["metrics"]
    assert metric(metrics, "b2fs_notify_healthy") == 1
    assert b.notify()["listing_ttl_seconds"] == 3600

    # Healthy: a listing is trusted well past dir_timeout, at no cost.
    assert os.listdir(b.path) == ["one.txt"]
    listed = b.list_calls()
    time.sleep(1.5)  # longer than dir_timeout (not a synchronisation: time must pass)
    assert os.listdir(b.path) == ["one.txt"]
    assert b.list_calls() == listed

    # The webhook goes dead: B2 (the emulator) retries, then suspends the rule.
    set_rule(emulator, dead_url(), b.secret)
    b2.upload("two.txt", b"2")
    wait_until(lambda: rules(emulator)[0].is_suspended, what="the rule suspended")
    wait_until(lambda: state(b) == "fallback", what="the fallback")
    notify = b.notify()
    assert any(
        "rule b2fs-mounts is suspended (webhook delivery failed" in r for r in notify["reasons"]
    )
    assert notify["listing_ttl_seconds"] == 1
    assert metric(metrics, "b2fs_notify_healthy") == 0
    human = b.mount.b2fs("status", str(b.path)).stdout
    assert "notifications: FALLBACK to dir_timeout (1s): rule b2fs-mounts is suspended" in human
    assert "falling back to dir_timeout (1s): rule b2fs-mounts is suspended" in b.mount.log_text
    # In fallback the TTLs apply: a change nobody announces shows up after dir_timeout.
    wait_until(lambda: (b.path / "two.txt").exists(), timeout=15, what="two.txt by the TTL")

    # Disabled: still no notifications (a new reason, said again).
    set_rule(emulator, b.url, b.secret, enabled=False)
    wait_until(lambda: "rule b2fs-mounts is disabled" in b.notify()["reasons"], what="disabled")
    b2.upload("three.txt", b"3")  # no event: only the TTL shows it
    wait_until(lambda: (b.path / "three.txt").exists(), timeout=15, what="three.txt by the TTL")

    # The rule set again: trusted again, and events flow.
    set_rule(emulator, b.url, b.secret)
    wait_until(lambda: state(b) == "healthy", what="healthy again")
    assert "notifications healthy again" in b.mount.log_text
    assert metric(metrics, "b2fs_notify_healthy") == 1
    assert sorted(os.listdir(b.path)) == ["one.txt", "three.txt", "two.txt"]
    b2.upload("four.txt", b"4")
    wait_until(lambda: (b.path / "four.txt").exists(), timeout=5, what="four.txt by its event")


def test_silence_falls_back_and_the_next_event_ends_it(
    b2: B2View, emulator: Emulator, notified: Callable[..., NotifiedMount]
) -> None:
    b = notified(*SHORT, "notify_silence=1s", "notify_poll=0")
    set_rule(emulator, b.url, b.secret)
    wait_until(lambda: state(b) == "fallback", timeout=10, what="the silence noticed")
    assert b.notify()["reasons"] == ["no event has arrived for 1s (notify_silence)"]
    b2.upload("hello.txt", b"hello")  # an event: healthy again at once
    wait_until(lambda: state(b) == "healthy", timeout=5, what="the event")
    assert b.notify()["events"]["applied"] == 1
    assert (b.path / "hello.txt").read_bytes() == b"hello"
    wait_until(lambda: state(b) == "fallback", timeout=10, what="silence again")


def test_a_rule_that_does_not_cover_the_mount_is_a_fallback(
    b2: B2View, emulator: Emulator, secret: Secret, notified: Callable[..., NotifiedMount]
) -> None:
    set_rule(emulator, "http://127.0.0.1:9/", secret, prefix="other/")
    b = notified(*SHORT)
    notify = b.notify()
    assert notify["state"] == "fallback"
    assert "no rule sends b2:ObjectCreated:* events for the whole bucket" in notify["reasons"]
    assert [rule["prefix"] for rule in notify["rules"]] == ["other/"]
