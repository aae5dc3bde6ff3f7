"""What a mount does with B2's event notifications: dedupe, queue, apply, and know whether to
trust them (docs/NOTIFICATIONS.md has the user's view).

Flow. The receiver (``service.webhook``) hands every verified delivery to
:meth:`Notifications.deliver`, on the trio thread, which never blocks:

- the delivery is a sign of life (see *Health*) and is forwarded to the other mounts of the
  bucket (``service.relay``) unless it was itself forwarded;
- each event is checked against the last ``SEEN`` eventIds: B2 delivers at least once, and an
  event may reach a mount both from B2 and forwarded; one seen before is ignored;
- the rest is queued. The queue holds ``QUEUE`` events; when it is full the oldest is dropped
  and the bucket is marked for a resync (``Filesystem.remote_resync``: every listing of it is
  stale, the kernel forgets what it holds): losing events costs listings, never correctness.

The applier task takes the queue in batches. An event of a version this mount made or removed
is skipped (``OwnChanges``: it shows that already). An event about a name this mount is
changing right now (B2's notification came back before B2's answer, so the new fileId is not
known yet) waits in a task of its own until that change settles (at most ``SETTLE_WAIT``),
then is judged. Every other event goes to ``Filesystem.remote_changed``, which marks the
listings that show the name stale; then, once per batch and outside any FUSE request, the
kernel is told to forget the names and attributes (``Filesystem.forget_in_kernel``).

Health. Listings are trusted for ``notify_dir_timeout`` (``dirlist.Freshness.notified``)
unless

- no delivery has arrived for ``notify_silence`` (B2 has nothing to say, or cannot reach us),
- or the bucket's rules, read every ``notify_poll``, have no enabled and unsuspended rule that
  sends ``b2:ObjectCreated:*``, ``b2:HideMarkerCreated:*`` and ``b2:ObjectDeleted:*`` for the
  mount's prefix (B2 suspends a rule whose deliveries keep failing);

then the mount falls back to ``dir_timeout`` and says so in its log, ``b2fs status`` and the
metrics; it trusts notifications again by itself when the reason goes (the next event, a
rule set again), for listings taken from then on. Without the readBucketNotifications
capability only silence is watched.
"""

from __future__ import annotations

import collections
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from b2fs.b2.errors import B2AccessDenied
from b2fs.fs.dirlist import KernelDrops
from b2fs.service.relay import Relay
from b2fs.service.webhook import KINDS, Delivery, Event, Receiver

if TYPE_CHECKING:
    from b2fs.b2.models import NotificationRule
    from b2fs.fs.filesystem import Filesystem
    from b2fs.objectstore import BucketRef
    from b2fs.options import MountOptions

log = logging.getLogger(__name__)

QUEUE = 10_000  # events waiting to be applied
SEEN = 65_536  # eventIds remembered to ignore repeats
BATCH = 512  # events applied before the kernel is told and other work runs
SETTLE_WAIT = 30.0  # longest wait for a change of this mount to settle
MAX_WAITING = 1_000  # events waiting so at once; beyond, they are applied at once
TICK = 1.0  # seconds between health checks

NEEDED_TYPES = tuple(f"{category}:*" for category in KINDS)


def rule_problems(rules: Sequence[NotificationRule], prefix: str) -> list[str]:
    """Why the bucket's rules do not send this mount every change (empty: they do)."""
    problems: list[str] = []
    where = f"names under {prefix!r}" if prefix else "the whole bucket"
    for needed in NEEDED_TYPES:
        covering = [
            rule
            for rule in rules
            if needed in rule.event_types and prefix.startswith(rule.object_name_prefix)
        ]
        if not covering:
            problems.append(f"no rule sends {needed} events for {where}")
        for rule in covering:  # at most one: B2 wants disjoint prefixes for a type
            if rule.is_suspended:
                reason = rule.suspension_reason or "no reason given"
                problems.append(f"rule {rule.name} is suspended ({reason})")
            elif not rule.is_enabled:
                problems.append(f"rule {rule.name} is disabled")
    return list(dict.fromkeys(problems))


def _rule_summary(rule: NotificationRule) -> dict[str, Any]:
    """What status shows of a rule: never its secret."""
    return {
        "name": rule.name,
        "prefix": rule.object_name_prefix,
        "event_types": list(rule.event_types),
        "enabled": rule.is_enabled,
        "suspended": rule.is_suspended,
        "suspension_reason": rule.suspension_reason,
    }


def _seconds(value: float) -> str:
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


@dataclass
class EventStats:
    received: int = 0  # events in verified deliveries
    applied: int = 0  # changes made elsewhere, applied
    own: int = 0  # this mount's own changes: nothing to do
    duplicate: int = 0  # seen before (a replay, or both direct and forwarded)
    ignored: int = 0  # test events, other buckets, names outside the mount
    dropped: int = 0  # dropped from a full queue (a resync follows)
    waited: int = 0  # waited for this mount's change of the same name to settle
    resyncs: int = 0


class Notifications:
    def __init__(
        self,
        fs: Filesystem,
        bucket: BucketRef,
        prefix: str,
        options: MountOptions,
        secret: bytes,
        *,
        ssl_context: ssl.SSLContext | None = None,
        read_rules: Callable[[], Awaitable[list[NotificationRule]]] | None = None,
        queue_size: int = QUEUE,
    ) -> None:
        self.fs = fs
        self.bucket = bucket
        self.prefix = prefix
        self.options = options
        self.queue_size = queue_size
        self.receiver = Receiver(secret, self.deliver, ssl_context)
        self.scheme = "http" if ssl_context is None else "https"
        self.relay = Relay([u for u in options.notify_forward.split(";") if u])
        self.stats = EventStats()
        self.listen_address: str | None = None
        self._read_rules = read_rules
        self._queue: collections.deque[Event] = collections.deque()
        self._resync = False
        self._wake = trio.Event()
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._waiting = 0
        self._started = 0.0
        self._last_delivery: float | None = None
        self._rules: list[dict[str, Any]] | None = None
        self._rule_problems: list[str] = []
        self.rules_error: str | None = None
        self.healthy: bool | None = None
        self.reasons: list[str] = []
        self.state_since = time.time()

    # -- receiving ------------------------------------------------------------------------

    def deliver(self, delivery: Delivery) -> None:
        """A verified delivery (from the receiver): never blocks."""
        self._last_delivery = trio.current_time()
        self.relay.push(delivery)
        for event in delivery.events:
            self.stats.received += 1
            if event.event_id in self._seen:
                self.stats.duplicate += 1
                continue
            self._seen[event.event_id] = None
            if len(self._seen) > SEEN:
                self._seen.popitem(last=False)
            if event.kind is None or event.name is None or event.bucket_id != self.bucket.id:
                self.stats.ignored += 1
                continue
            if len(self._queue) >= self.queue_size:
                self._queue.popleft()
                self.stats.dropped += 1
                self._resync = True
            self._queue.append(event)
        self._wake.set()
        self._evaluate()

    # -- running --------------------------------------------------------------------------

    async def start(self, nursery: trio.Nursery, listeners: list[trio.SocketListener]) -> None:
        """Read the rules once (so that the first status is right), then receive, apply,
        forward and watch in ``nursery``."""
        self._started = trio.current_time()
        if self._read_rules is not None and self.options.notify_poll > 0:
            await self._poll()
        self._evaluate()
        nursery.start_soon(self.receiver.serve, listeners)
        nursery.start_soon(self._apply_forever)
        nursery.start_soon(self.relay.run)
        nursery.start_soon(self._watch_silence)
        if self._read_rules is not None and self.options.notify_poll > 0:
            nursery.start_soon(self._poll_forever)

    async def _apply_forever(self) -> None:
        async with trio.open_nursery() as waiting:
            while True:
                while not self._queue and not self._resync:
                    self._wake = trio.Event()
                    await self._wake.wait()
                await self.apply_queued(waiting)
                await trio.sleep(0)  # a long queue yields to requests between batches

    async def apply_queued(self, waiting: trio.Nursery) -> None:
        """Apply a batch of the queue (and a resync if events were dropped); an event that
        must wait for a change of this mount to settle waits in ``waiting``."""
        drops = KernelDrops()
        if self._resync:
            self._resync = False
            self.stats.resyncs += 1
            log.warning(
                "notifications: more than %d events waited, %d dropped so far: every listing "
                "of the bucket is taken again",
                self.queue_size,
                self.stats.dropped,
            )
            drops.update(self.fs.remote_resync(self.bucket.id))
        own = self.fs.store.own
        for _ in range(min(BATCH, len(self._queue))):
            event = self._queue.popleft()
            assert event.name is not None
            if (
                own.in_flight(event.bucket_id, event.name)
                and not own.is_own(event.file_id)
                and self._waiting < MAX_WAITING
            ):
                self._waiting += 1
                waiting.start_soon(self._after_settling, event)
                continue
            self._apply(event, drops)
        await self.fs.forget_in_kernel(drops)

    async def _after_settling(self, event: Event) -> None:
        try:
            assert event.name is not None
            self.stats.waited += 1
            with trio.move_on_after(SETTLE_WAIT):
                await self.fs.store.own.settled(event.bucket_id, event.name)
            drops = KernelDrops()
            self._apply(event, drops)
            await self.fs.forget_in_kernel(drops)
        finally:
            self._waiting -= 1

    def _apply(self, event: Event, drops: KernelDrops) -> None:
        assert event.name is not None and event.kind is not None
        if self.fs.store.own.is_own(event.file_id):
            self.stats.own += 1
            return
        found = self.fs.remote_changed(event.bucket_id, event.name, event.kind, event.file_id)
        if found is None:
            self.stats.ignored += 1
            return
        self.stats.applied += 1
        log.debug(
            "notifications: %s %s (%s) changed elsewhere", event.kind, event.name, event.file_id
        )
        drops.update(found)

    # -- health ---------------------------------------------------------------------------

    async def _watch_silence(self) -> None:
        while True:
            await trio.sleep(TICK)
            self._evaluate()

    async def _poll_forever(self) -> None:
        while self._read_rules is not None:
            await trio.sleep(self.options.notify_poll)
            await self._poll()
            self._evaluate()

    async def _poll(self) -> None:
        assert self._read_rules is not None
        try:
            rules = await self._read_rules()
        except B2AccessDenied:
            self._read_rules = None
            self.rules_error = (
                "the key may not read the bucket's notification rules "
                "(readBucketNotifications): only silence is watched"
            )
            log.info("notifications: %s", self.rules_error)
            return
        except Exception as exc:  # B2 unreachable: keep what the last reading said
            self.rules_error = f"could not read the notification rules: {exc}"
            log.info("notifications: %s", self.rules_error)
            return
        self.rules_error = None
        self._rules = [_rule_summary(rule) for rule in rules]
        self._rule_problems = rule_problems(rules, self.prefix)

    def _evaluate(self) -> None:
        reasons = list(self._rule_problems)
        silence = self.options.notify_silence
        last = self._last_delivery if self._last_delivery is not None else self._started
        if silence and trio.current_time() - last >= silence:
            reasons.insert(0, f"no event has arrived for {_seconds(silence)} (notify_silence)")
        healthy = not reasons
        if healthy:
            self.fs.freshness.notified(self.options.notify_dir_timeout)
        else:
            self.fs.freshness.unnotified()
        if healthy == self.healthy and reasons == self.reasons:
            return
        if healthy:
            log.info(
                "notifications healthy%s: listings are trusted for %s; changes made elsewhere "
                "show up in about a second",
                "" if self.healthy is None else " again",
                _seconds(max(self.options.notify_dir_timeout, self.options.dir_timeout)),
            )
        else:
            log.warning(
                "notifications: falling back to dir_timeout (%s): %s",
                _seconds(self.options.dir_timeout),
                "; ".join(reasons),
            )
        if healthy != self.healthy:
            self.state_since = time.time()
        self.healthy, self.reasons = healthy, reasons

    # -- status ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        now = trio.current_time()
        options = self.options
        trusted = max(options.notify_dir_timeout, options.dir_timeout)
        return {
            "listen": self.listen_address,
            "url": f"{self.scheme}://{self.listen_address}/" if self.listen_address else None,
            "state": "healthy" if self.healthy else "fallback",
            "reasons": list(self.reasons),
            "state_since": round(self.state_since, 3),
            "listing_ttl_seconds": trusted if self.healthy else options.dir_timeout,
            "last_event_seconds_ago": None
            if self._last_delivery is None
            else round(now - self._last_delivery, 3),
            "events": dict(vars(self.stats)),
            "queued": len(self._queue),
            "waiting": self._waiting,
            "receiver": self.receiver.stats.snapshot(),
            "rules": self._rules,
            "rules_error": self.rules_error,
            "forward": self.relay.snapshot(),
        }
