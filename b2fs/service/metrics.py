"""The optional Prometheus endpoint: ``-o metrics=HOST:PORT`` serves ``GET /metrics``.

The same snapshot as ``b2fs status`` (``service.status``), in the Prometheus text exposition
format (version 0.0.4), written by hand: a dozen metric families do not need a client library.
The listener is a plain trio TCP server in the mount's nursery; each request gets one answer
and the connection is closed. It binds where it is told: the default of a bare port is
127.0.0.1, and the counters hold no secret and no file name (only counts, sizes, endpoint
names and B2 error codes), but anyone who can reach the port can read them.

Metric names (``b2fs_`` prefix; ``_total`` marks counters):

    b2fs_info{version,source,mountpoint}            1
    b2fs_uptime_seconds, b2fs_stopping
    b2fs_pending_uploads, b2fs_pending_upload_bytes, b2fs_pending_upload_sent_bytes,
    b2fs_failing_uploads
    b2fs_cache_used_bytes, b2fs_cache_capacity_bytes, b2fs_cache_hits_total,
    b2fs_cache_misses_total
    b2fs_b2_requests_total{endpoint}, b2fs_b2_errors_total{endpoint},
    b2fs_b2_errors_by_code_total{status,code}, b2fs_b2_retries_total{endpoint},
    b2fs_b2_reauthorizations_total, b2fs_b2_uploaded_bytes_total,
    b2fs_b2_downloaded_bytes_total
    with -o notify_listen (no samples otherwise):
    b2fs_notify_healthy, b2fs_notify_last_event_age_seconds,
    b2fs_notify_events_total{outcome}, b2fs_notify_refused_requests_total,
    b2fs_notify_resyncs_total, b2fs_notify_forwarded_total{peer},
    b2fs_notify_forward_failures_total{peer}
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from b2fs.service.status import StatusReporter

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MAX_REQUEST_HEAD = 16 * 1024
REQUEST_TIMEOUT = 10.0

Labels = Mapping[str, str]


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) as the options table checked it."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _sample(name: str, labels: Labels, value: float) -> str:
    text = ",".join(f'{key}="{_escape(str(v))}"' for key, v in labels.items())
    number = repr(float(value)) if isinstance(value, float) else str(value)
    return f"{name}{{{text}}} {number}" if text else f"{name} {number}"


Samples = list[tuple[Labels, float]]


def _value(*path: str) -> Callable[[Mapping[str, Any]], Samples]:
    def get(snapshot: Mapping[str, Any]) -> Samples:
        value: Any = snapshot
        for key in path:
            value = value[key]
        return [({}, value)]

    return get


def _by(label: str, *path: str) -> Callable[[Mapping[str, Any]], Samples]:
    def get(snapshot: Mapping[str, Any]) -> Samples:
        counts: Any = snapshot
        for key in path:
            counts = counts[key]
        return [({label: key}, n) for key, n in sorted(counts.items())]

    return get


def _info(snapshot: Mapping[str, Any]) -> Samples:
    labels = {
        "version": snapshot["version"],
        "source": snapshot["source"],
        "mountpoint": snapshot["mountpoint"],
    }
    return [(labels, 1)]


def _stopping(snapshot: Mapping[str, Any]) -> Samples:
    return [({}, int(snapshot["state"] == "stopping"))]


def _notify(get: Callable[[Mapping[str, Any]], Samples]) -> Callable[[Mapping[str, Any]], Samples]:
    """Samples of the notifications part of the snapshot: none without notify_listen."""

    def samples(snapshot: Mapping[str, Any]) -> Samples:
        notify = snapshot.get("notify")
        return get(notify) if notify else []

    return samples


def _last_event_age(notify: Mapping[str, Any]) -> Samples:
    age = notify["last_event_seconds_ago"]
    return [] if age is None else [({}, float(age))]


def _event_outcomes(notify: Mapping[str, Any]) -> Samples:
    outcomes = ("applied", "own", "duplicate", "ignored", "dropped")
    return [({"outcome": outcome}, notify["events"][outcome]) for outcome in outcomes]


def _peers(key: str) -> Callable[[Mapping[str, Any]], Samples]:
    def get(notify: Mapping[str, Any]) -> Samples:
        return [({"peer": peer["url"]}, peer[key]) for peer in notify["forward"]]

    return get


def _errors_by_code(snapshot: Mapping[str, Any]) -> Samples:
    samples: Samples = []
    for key, n in sorted(snapshot["b2"]["errors_by_code"].items()):
        status, _, code = key.partition(" ")
        samples.append(({"status": status, "code": code}, n))
    return samples


# (name, type, help, samples): the order of the exposition.
FAMILIES: list[tuple[str, str, str, Callable[[Mapping[str, Any]], Samples]]] = [
    ("b2fs_info", "gauge", "This b2fs mount (always 1).", _info),
    ("b2fs_uptime_seconds", "gauge", "Seconds since the mount started.", _value("uptime_seconds")),
    ("b2fs_stopping", "gauge", "1 while a graceful stop drains the uploads.", _stopping),
    ("b2fs_pending_uploads", "gauge", "Files waiting for upload to B2.", _value("pending_files")),
    (
        "b2fs_pending_upload_bytes",
        "gauge",
        "Size of the files waiting for upload.",
        _value("pending_bytes"),
    ),
    (
        "b2fs_pending_upload_sent_bytes",
        "gauge",
        "Bytes of the pending files that their uploads in flight have sent.",
        _value("pending_sent_bytes"),
    ),
    (
        "b2fs_failing_uploads",
        "gauge",
        "Pending uploads whose last attempt failed (they are retried).",
        _value("failing_uploads"),
    ),
    ("b2fs_cache_used_bytes", "gauge", "Bytes in the block cache.", _value("cache", "used_bytes")),
    (
        "b2fs_cache_capacity_bytes",
        "gauge",
        "Bound of the block cache (cache_size).",
        _value("cache", "capacity_bytes"),
    ),
    (
        "b2fs_cache_hits_total",
        "counter",
        "Block cache lookups answered from the cache.",
        _value("cache", "hits"),
    ),
    (
        "b2fs_cache_misses_total",
        "counter",
        "Block cache lookups that needed B2.",
        _value("cache", "misses"),
    ),
    (
        "b2fs_b2_requests_total",
        "counter",
        "Requests sent to B2, by API endpoint.",
        _by("endpoint", "b2", "requests"),
    ),
    (
        "b2fs_b2_errors_total",
        "counter",
        "Failed B2 requests, by API endpoint.",
        _by("endpoint", "b2", "errors"),
    ),
    (
        "b2fs_b2_errors_by_code_total",
        "counter",
        "Failed B2 requests, by HTTP status and B2 error code.",
        _errors_by_code,
    ),
    (
        "b2fs_b2_retries_total",
        "counter",
        "B2 requests retried, by API endpoint.",
        _by("endpoint", "b2", "retries"),
    ),
    (
        "b2fs_b2_reauthorizations_total",
        "counter",
        "Times the account was authorized again after its token expired.",
        _value("b2", "reauthorizations"),
    ),
    (
        "b2fs_b2_uploaded_bytes_total",
        "counter",
        "File data sent to B2, retries included.",
        _value("b2", "bytes_uploaded"),
    ),
    (
        "b2fs_b2_downloaded_bytes_total",
        "counter",
        "File data received from B2, retries included.",
        _value("b2", "bytes_downloaded"),
    ),
    (
        "b2fs_notify_healthy",
        "gauge",
        "1 while event notifications are trusted, 0 in fallback to dir_timeout.",
        _notify(lambda n: [({}, int(n["state"] == "healthy"))]),
    ),
    (
        "b2fs_notify_last_event_age_seconds",
        "gauge",
        "Seconds since the last event notification arrived.",
        _notify(_last_event_age),
    ),
    (
        "b2fs_notify_events_total",
        "counter",
        "Events received, by what became of them.",
        _notify(_event_outcomes),
    ),
    (
        "b2fs_notify_refused_requests_total",
        "counter",
        "Webhook requests refused for a missing or wrong signature.",
        _notify(_value("receiver", "refused")),
    ),
    (
        "b2fs_notify_resyncs_total",
        "counter",
        "Times the event queue overflowed and the bucket was listed again.",
        _notify(_value("events", "resyncs")),
    ),
    (
        "b2fs_notify_forwarded_total",
        "counter",
        "Deliveries forwarded to another mount, by peer.",
        _notify(_peers("forwarded")),
    ),
    (
        "b2fs_notify_forward_failures_total",
        "counter",
        "Deliveries that could not be forwarded, by peer.",
        _notify(_peers("failed")),
    ),
]


def exposition(snapshot: Mapping[str, Any]) -> str:
    """The Prometheus text of a status snapshot."""
    lines = []
    for name, kind, help_text, samples in FAMILIES:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        lines.extend(_sample(name, labels, value) for labels, value in samples(snapshot))
    return "\n".join(lines) + "\n"


async def listen(address: str, reporter: StatusReporter) -> list[trio.SocketListener]:
    """Open the listening socket(s) at ``address`` (raises OSError if it cannot): done before
    the mount, so that a port in use fails the start in one clear line."""
    host, port = split_address(address)
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()
    shown = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
    reporter.metrics_address = shown
    log.info("serving Prometheus metrics at http://%s/metrics", shown)
    return listeners


async def serve(listeners: list[trio.SocketListener], reporter: StatusReporter) -> None:
    """Answer on ``listeners`` until cancelled."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            try:
                await _answer(stream, reporter)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                log.debug("metrics client went away: %s", exc)
            except Exception:  # a bug here must not end the mount it reports on
                log.exception("the metrics endpoint failed to answer")

    await trio.serve_listeners(handle, listeners)


async def _answer(stream: trio.SocketStream, reporter: StatusReporter) -> None:
    head = b""
    with trio.move_on_after(REQUEST_TIMEOUT):
        while b"\r\n\r\n" not in head and b"\n\n" not in head and len(head) < MAX_REQUEST_HEAD:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            head += chunk
    request_line = head.split(b"\n", 1)[0].decode("latin-1").strip().split()
    if len(request_line) < 2:
        await _respond(stream, 400, "Bad Request", "bad request\n")
        return
    method, target = request_line[0], request_line[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        await _respond(stream, 405, "Method Not Allowed", "only GET\n")
    elif target not in ("/metrics", "/"):
        await _respond(stream, 404, "Not Found", "see /metrics\n")
    else:
        body = exposition(reporter.snapshot())
        await _respond(stream, 200, "OK", body, head_only=method == "HEAD")


async def _respond(
    stream: trio.SocketStream, status: int, reason: str, body: str, *, head_only: bool = False
) -> None:
    data = body.encode()
    content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    ).encode()
    await stream.send_all(head if head_only else head + data)
