"""The receiver of B2 event notifications: a small HTTP(S) server inside the mount daemon.

B2 POSTs a JSON payload of events to a rule's webhook URL (B2-API.md §11.2), signed with the
rule's secret. This module only receives; what the mount does with the events is
``service.notifications``. For each connection (one request, then ``Connection: close``):

1. the request must be a POST (else 405) whose body is at most ``MAX_BODY`` bytes (else 413,
   before reading more), all within ``REQUEST_TIMEOUT`` (else 408);
2. its ``X-Bz-Event-Notification-Signature`` must hold a ``v1=<hex>`` element (the header is
   a comma-separated list; any element may match) equal to the HMAC-SHA256 of the exact body
   bytes under the secret, compared in constant time: else 401, and nothing else happens;
3. the body must be the documented payload, ``{"events": [...]}`` with the required fields
   (else 400, nothing applied);
4. the events, with the raw body and signature (to forward them as they came), go to the
   ``deliver`` callback, which queues them without blocking; then 200.

So an answer never waits for the filesystem: B2 wants a 2xx within seconds, and a slow
answer would make it retry and, in the end, suspend the rule.

HTTP/1.1 is parsed by h11 (a dependency of httpx's httpcore, so nothing new is installed). At
most ``MAX_CONNECTIONS`` connections are served at once; more are closed at once, so a flood
of slow clients costs bounded memory. TLS, when a certificate is given, is ``trio.SSLStream``;
without it the receiver speaks plain HTTP, for a TLS reverse proxy in front
(docs/NOTIFICATIONS.md).

The secret comes from ``-o notify_secret_file`` (refused when group or world readable, like key
files, and so is the TLS key) or the systemd credential ``b2fs-notify-secret``; it is never
logged or shown.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import ssl
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import trio

log = logging.getLogger(__name__)

MAX_BODY = 256 * 1024  # 50 events (B2's largest batch) are about 30 KB
MAX_HEAD = 16 * 1024
MAX_CONNECTIONS = 64
REQUEST_TIMEOUT = 10.0
SIGNATURE_HEADER = b"x-bz-event-notification-signature"
# Set on a delivery one mount forwards to another (``service.relay``): never forwarded again.
RELAYED_HEADER = b"x-b2fs-relayed"
SYSTEMD_CREDENTIAL = "b2fs-notify-secret"
REFUSAL_LOG_INTERVAL = 60.0

# What each B2 event type means for a name (B2-API.md §11.1).
KINDS = {
    "b2:ObjectCreated": "created",
    "b2:HideMarkerCreated": "hidden",
    "b2:ObjectDeleted": "deleted",
}


class SecretError(Exception):
    """The signing secret cannot be used: one line saying why (never the secret)."""


def load_secret(path: str, environ: Mapping[str, str] | None = None) -> bytes:
    """The rule's signing secret: from ``path``, else the systemd credential."""
    env = os.environ if environ is None else environ
    if path:
        source = f"notify secret file {path!r}"
        try:
            with open(path, "rb") as file:
                mode = os.fstat(file.fileno()).st_mode
                if mode & (stat.S_IRWXG | stat.S_IRWXO):
                    raise SecretError(
                        f"{source} can be accessed by group or others (mode "
                        f"{stat.S_IMODE(mode):04o}); refusing it: run 'chmod 600 {path}'"
                    )
                raw = file.read(4096)
        except OSError as exc:
            raise SecretError(f"cannot read {source}: {exc.strerror}") from None
    elif env.get("CREDENTIALS_DIRECTORY"):
        credential = Path(env["CREDENTIALS_DIRECTORY"]) / SYSTEMD_CREDENTIAL
        source = f"systemd credential {SYSTEMD_CREDENTIAL!r}"
        try:
            raw = credential.read_bytes()[:4096]
        except FileNotFoundError:
            raise SecretError(_NO_SECRET) from None
        except OSError as exc:
            raise SecretError(f"cannot read the {source}: {exc.strerror}") from None
    else:
        raise SecretError(_NO_SECRET)
    secret = raw.strip()
    if not secret or any(byte <= 32 or byte >= 127 for byte in secret):
        raise SecretError(f"{source}: expected one line of printable characters (the secret)")
    return secret


_NO_SECRET = (
    "notify_listen needs the notification rule's signing secret: -o notify_secret_file=PATH "
    f"(b2fs notify setup writes it) or the systemd credential {SYSTEMD_CREDENTIAL!r}"
)


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS for the receiver from a PEM certificate chain and its key (raises SecretError)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        mode = os.stat(key).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"notify_tls_key {key!r} can be accessed by group or others (mode "
                f"{stat.S_IMODE(mode):04o}); refusing it: run 'chmod 600 {key}'"
            )
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise SecretError(f"notify_tls_cert/notify_tls_key: cannot use them: {exc}") from None
    return context


def signature_valid(secret: bytes, body: bytes, header: str | None) -> bool:
    """Whether any ``v1=`` element of the header is the HMAC-SHA256 of ``body``."""
    if not header:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest().encode()
    valid = False
    for element in header.split(","):
        version, _, value = element.strip().partition("=")
        if version == "v1":
            given = value.strip().lower().encode("latin-1", "replace")
            valid |= hmac.compare_digest(given, expected)
    return valid


@dataclass(frozen=True)
class Event:
    """One event of a payload (the fields b2fs uses)."""

    event_id: str
    event_type: str
    bucket_id: str
    name: str | None  # None for b2:TestEvent
    file_id: str | None

    @property
    def kind(self) -> str | None:
        """``created``, ``hidden`` or ``deleted``; None for a test or unknown event."""
        return KINDS.get(self.event_type.rsplit(":", 1)[0])


@dataclass(frozen=True)
class Delivery:
    """A verified POST: its events, and its exact body and signature (to forward it)."""

    events: tuple[Event, ...]
    body: bytes
    signature: str
    relayed: bool


def parse_events(body: bytes) -> tuple[Event, ...]:
    """The events of a payload; ValueError if it is not the documented shape."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        raise ValueError('expected {"events": [...]}')
    events = []
    for raw in data["events"]:
        if not isinstance(raw, dict):
            raise ValueError("an event is not an object")
        event_id, event_type, bucket_id = (raw.get(k) for k in ("eventId", "eventType", "bucketId"))
        if not (
            isinstance(event_id, str)
            and isinstance(event_type, str)
            and isinstance(bucket_id, str)
            and event_id
            and bucket_id
        ):
            raise ValueError("an event lacks eventId, eventType or bucketId")
        name, file_id = raw.get("objectName"), raw.get("objectVersionId")
        if event_type != "b2:TestEvent" and not (
            isinstance(name, str) and name and isinstance(file_id, str) and file_id
        ):
            raise ValueError("an event lacks objectName or objectVersionId")
        events.append(
            Event(
                event_id,
                event_type,
                bucket_id,
                name if isinstance(name, str) else None,
                file_id if isinstance(file_id, str) else None,
            )
        )
    return tuple(events)


@dataclass
class ReceiverStats:
    requests: int = 0
    accepted: int = 0  # deliveries verified and queued
    refused: int = 0  # 401: missing or wrong signature
    rejected: int = 0  # 400, 405, 408, 413
    busy: int = 0  # connections closed at once: too many open

    def snapshot(self) -> dict[str, int]:
        return dict(vars(self))


async def listen(address: str) -> list[trio.SocketListener]:
    """Open the receiver's socket(s) at ``HOST:PORT`` (before mounting, so that a port in use
    fails the start in one line)."""
    host, _, port = address.rpartition(":")
    return await trio.open_tcp_listeners(int(port), host=host.strip("[]"))


def bound_address(listeners: list[trio.SocketListener]) -> str:
    host, port = listeners[0].socket.getsockname()[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Receiver:
    def __init__(
        self,
        secret: bytes,
        deliver: Callable[[Delivery], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._secret = secret
        self._deliver = deliver
        self._ssl = ssl_context
        self.stats = ReceiverStats()
        self._open = 0
        self._refusals_unlogged = 0
        self._refusal_logged_at = -float("inf")

    async def serve(self, listeners: list[trio.SocketListener]) -> None:
        """Answer on ``listeners`` until cancelled."""
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.SocketStream) -> None:
        if self._open >= MAX_CONNECTIONS:
            self.stats.busy += 1
            await stream.aclose()
            return
        self._open += 1
        try:
            peer = _peer(stream)
            async with stream:
                if self._ssl is None:
                    await self._answer(stream, peer)
                else:
                    tls = trio.SSLStream(stream, self._ssl, server_side=True)
                    await self._answer(tls, peer)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            log.debug("a webhook client went away: %s", exc)
        except Exception:  # a bug here must not end the mount
            log.exception("the notification receiver failed to answer")
        finally:
            self._open -= 1

    async def _answer(self, stream: trio.abc.Stream, peer: str) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.stats.requests += 1
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                request, body = await _read_request(conn, stream)
            if request is None:
                return  # closed before a request
            delivery = self._verify(request, body, peer)
        except trio.TooSlowError:
            await self._refuse(conn, stream, _Refusal(408, "request timeout"))
            return
        except _Refusal as refusal:
            await self._refuse(conn, stream, refusal)
            return
        except h11.RemoteProtocolError as exc:
            await self._refuse(conn, stream, _Refusal(400, f"bad request: {exc}"))
            return
        self._deliver(delivery)
        self.stats.accepted += 1
        await _respond(conn, stream, 200, "accepted\n")

    def _verify(self, request: h11.Request, body: bytes, peer: str) -> Delivery:
        header = _header(request, SIGNATURE_HEADER)
        if not signature_valid(self._secret, body, header):
            self._log_refusal(peer, "a missing" if header is None else "a wrong")
            raise _Refusal(401, "missing or wrong signature")
        try:
            events = parse_events(body)
        except ValueError as exc:  # json's errors are ValueErrors too
            log.warning("a signed webhook request from %s is not B2's payload: %s", peer, exc)
            raise _Refusal(400, "not an event notification payload") from None
        assert header is not None
        relayed = _header(request, RELAYED_HEADER) is not None
        return Delivery(events, body, header, relayed)

    async def _refuse(
        self, conn: h11.Connection, stream: trio.abc.Stream, refusal: _Refusal
    ) -> None:
        if refusal.status == 401:
            self.stats.refused += 1
        else:
            self.stats.rejected += 1
        # Too early (no request yet) or too broken to answer: just close.
        with contextlib.suppress(h11.LocalProtocolError):
            await _respond(conn, stream, refusal.status, str(refusal) + "\n")
        if refusal.status == 413:
            # Let the client finish sending (a little) so that it reads the answer: closing
            # with data unread would reset the connection first.
            with trio.move_on_after(1.0):
                for _ in range(64):
                    if not await stream.receive_some(65536):
                        break

    def _log_refusal(self, peer: str, what: str) -> None:
        """A warning for the first refusal, then at most one a minute with the count (a flood
        of forged requests must not flood the log)."""
        self._refusals_unlogged += 1
        now = trio.current_time()
        if now - self._refusal_logged_at >= REFUSAL_LOG_INTERVAL:
            log.warning(
                "refused %d webhook request(s) with a missing or wrong signature (the last, "
                "from %s, had %s one)",
                self._refusals_unlogged,
                peer,
                what,
            )
            self._refusals_unlogged = 0
            self._refusal_logged_at = now


async def _read_request(
    conn: h11.Connection, stream: trio.abc.Stream
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            request = event
            if request.method != b"POST":
                raise _Refusal(405, "only POST")
            length = _header(request, b"content-length")
            if length is not None and length.isdigit() and int(length) > MAX_BODY:
                raise _Refusal(413, "body too large")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY:
                raise _Refusal(413, "body too large")
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            if request is not None:
                raise h11.RemoteProtocolError("connection closed in the middle of a request")
            return None, b""


def _header(request: h11.Request, name: bytes) -> str | None:
    values = [value.decode("latin-1") for key, value in request.headers if key == name]
    return ",".join(values) if values else None


def _peer(stream: trio.SocketStream) -> str:
    try:
        address: Any = stream.socket.getpeername()
    except OSError:
        return "?"
    return f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)


async def _respond(conn: h11.Connection, stream: trio.abc.Stream, status: int, text: str) -> None:
    body = text.encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Connection", "close"),
    ]
    data = conn.send(h11.Response(status_code=status, headers=headers))
    data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
    data += conn.send(h11.EndOfMessage()) or b""
    await stream.send_all(data)
