"""Event notification delivery: a background sender with retries (B2-API.md §11).

:meth:`Notifier.emit` only matches the event against the bucket's rules and queues it, so the
request that caused it never waits for a webhook. Two sender threads take due deliveries from
a time-ordered queue, coalesce events queued for the same rule up to its
``maxEventsPerBatch``, and POST them with ``User-Agent: B2/EventNotifications``, the rule's
custom headers and, when the rule has a signing secret, ``X-Bz-Event-Notification-Signature:
v1=<hex HMAC-SHA256 of the exact body>``.

Policy: any 2xx is success. A failure (other status, connection error, timeout) is retried
after ``webhook_backoff`` seconds, doubling each time, up to ``webhook_attempts`` attempts in
all; when they are used up the rule is suspended (``isSuspended: true`` with a
``suspensionReason``) and later events for it are dropped until the rules are set again.
Delivery is at-least-once while the emulator runs; queued events do not survive a restart.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import http.client
import itertools
import json
import logging
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .models import Bucket, FileVersion

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger(__name__)


def _matches(rule: dict[str, Any], event_type: str, name: str) -> bool:
    if not rule.get("isEnabled") or rule.get("isSuspended"):
        return False
    if not name.startswith(rule.get("objectNamePrefix", "")):
        return False
    category = event_type.rsplit(":", 1)[0]
    return any(t in (event_type, f"{category}:*") for t in rule.get("eventTypes", []))


def sign(secret: str, body: bytes) -> str:
    return "v1=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@dataclass(order=True)
class _Delivery:
    due: float
    order: int
    bucket_id: str = field(compare=False)
    rule: dict[str, Any] = field(compare=False)
    events: list[dict[str, Any]] = field(compare=False)
    attempt: int = field(default=0, compare=False)


class Notifier:
    WORKERS = 2

    def __init__(self, app: App) -> None:
        self._app = app
        self._cond = threading.Condition()
        self._queue: list[_Delivery] = []
        self._order = itertools.count()
        self._threads: list[threading.Thread] = []
        self._busy = 0
        self._stopping = False
        self.sent = 0
        self.failed = 0

    # -- producing ---------------------------------------------------------------------------

    def emit(self, bucket: Bucket, event_type: str, f: FileVersion) -> None:
        if not bucket.rules:
            return
        for rule in bucket.rules:
            if not _matches(rule, event_type, f.name):
                continue
            event = {
                "accountId": self._app.account_id,
                "bucketId": bucket.bucket_id,
                "bucketName": bucket.name,
                "eventId": secrets.token_hex(32),
                "eventTimestamp": int(time.time() * 1000),
                "eventType": event_type,
                "eventVersion": 1,
                "matchedRuleName": rule["name"],
                "objectName": f.name,
                "objectSize": f.length,
                "objectVersionId": f.file_id,
            }
            self._push(
                _Delivery(time.monotonic(), next(self._order), bucket.bucket_id, rule, [event])
            )

    def _push(self, d: _Delivery) -> None:
        with self._cond:
            if self._stopping:
                return
            heapq.heappush(self._queue, d)
            if not self._threads:
                for i in range(self.WORKERS):
                    t = threading.Thread(target=self._run, name=f"b2-webhook-{i}", daemon=True)
                    t.start()
                    self._threads.append(t)
            self._cond.notify()

    def idle(self) -> bool:
        """Nothing queued and nothing being sent (for tests polling for delivery)."""
        with self._cond:
            return not self._queue and self._busy == 0

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._queue.clear()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout=self._app.config.webhook_timeout + 1)

    # -- sending -----------------------------------------------------------------------------

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._stopping:
                now = time.monotonic()
                if self._queue and self._queue[0].due <= now:
                    d = heapq.heappop(self._queue)
                    limit = self._batch_limit(d.rule)
                    if d.attempt == 0 and limit > 1:
                        same = [
                            x
                            for x in self._queue
                            if x.attempt == 0
                            and x.due <= now
                            and x.bucket_id == d.bucket_id
                            and x.rule["name"] == d.rule["name"]
                        ][: limit - len(d.events)]
                        for x in same:
                            self._queue.remove(x)
                            d.events.extend(x.events)
                        heapq.heapify(self._queue)
                    self._busy += 1
                    return d
                timeout = self._queue[0].due - now if self._queue else None
                self._cond.wait(timeout)
            return None

    @staticmethod
    def _batch_limit(rule: dict[str, Any]) -> int:
        value = rule.get("maxEventsPerBatch") or (rule.get("targetConfiguration") or {}).get(
            "maxEventsPerBatch"
        )
        return int(value) if isinstance(value, int) and value > 0 else 1

    def _run(self) -> None:
        while True:
            d = self._next()
            if d is None:
                return
            try:
                error = self._post(d)
            finally:
                with self._cond:
                    self._busy -= 1
            if error is None:
                self.sent += 1
                continue
            d.attempt += 1
            cfg = self._app.config
            if d.attempt < cfg.webhook_attempts:
                d.due = time.monotonic() + cfg.webhook_backoff * 2 ** (d.attempt - 1)
                d.order = next(self._order)
                self._push(d)
            else:
                self.failed += 1
                self._suspend(d, error)

    def _post(self, d: _Delivery) -> str | None:
        """Send one batch; returns None on success, else what went wrong."""
        target = d.rule.get("targetConfiguration") or {}
        url = urlsplit(target.get("url", ""))
        body = json.dumps({"events": d.events}, indent=2).encode("utf-8")
        headers = {
            "User-Agent": "B2/EventNotifications",
            "Content-Type": "application/json; charset=UTF-8",
            "Content-Length": str(len(body)),
        }
        for h in target.get("customHeaders") or []:
            headers[h["name"]] = h["value"]
        secret = target.get("hmacSha256SigningSecret")
        if secret:
            headers["X-Bz-Event-Notification-Signature"] = sign(secret, body)
        timeout = self._app.config.webhook_timeout
        conn: http.client.HTTPConnection
        try:
            if url.scheme == "https":
                conn = http.client.HTTPSConnection(
                    url.hostname or "",
                    url.port,
                    timeout=timeout,
                    context=ssl.create_default_context(),
                )
            else:
                conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
            try:
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as e:
            log.debug("webhook delivery for rule %s failed: %s", d.rule.get("name"), e)
            return f"{type(e).__name__}: {e}"
        if 200 <= response.status < 300:
            return None
        log.debug("webhook for rule %s answered %s", d.rule.get("name"), response.status)
        return f"webhook answered HTTP {response.status}"

    def _suspend(self, d: _Delivery, error: str) -> None:
        store = self._app.store
        try:
            with store.atomic():
                bucket = store.get_bucket(d.bucket_id)
                if bucket is None:
                    return
                for rule in bucket.rules:
                    if rule["name"] == d.rule["name"] and rule.get(
                        "targetConfiguration"
                    ) == d.rule.get("targetConfiguration"):
                        rule["isSuspended"] = True
                        rule["suspensionReason"] = (
                            f"webhook delivery failed {d.attempt} times; last error: {error}"
                        )
                store.put_bucket(bucket)
        except Exception:  # the store may be closing; suspension is best effort
            log.debug("could not suspend rule %s", d.rule.get("name"), exc_info=True)
