"""HTTP/1.1 server: routing, error rendering, fault and shaping hooks.

A stdlib ``ThreadingHTTPServer`` (one thread per connection, keep-alive). Measured on the
project's 2-core machines it serves far above the speed targets (see docs/EMULATOR.md), so no
framework is needed. Each request goes through :meth:`Handler._serve`:

1. route the path (``/b2api/vN/<op>``, upload URLs, ``/file/<bucket>/<name>``, the
   ``/_emulator/`` control endpoints); unknown paths answer a JSON ``404``, wrong methods ``405``;
2. count the call, then ask the fault injector whether to fail it;
3. JSON calls: read the (bounded) body, parse parameters, run the handler, send its dict;
   streaming calls (uploads, downloads) get the connection and write their own response;
4. any :class:`B2Error` becomes ``{"status","code","message"}`` (empty body for HEAD). An
   unread request body is drained first (up to 64 MiB) so the connection stays usable;
   beyond that, or for chunked bodies, the connection is closed after the answer.

Every response carries ``Date``. ``--latency-ms`` sleeps once before each response;
``--bandwidth-mbps`` wraps the connection's reader and writer in token buckets. Nothing is
logged but method, path (never the query string, which may hold a token) and status.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import re
import socket
import struct
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from .api import OPERATIONS
from .api.uploads import ClientGone
from .app import App
from .call import Call
from .errors import B2Error, not_found
from .faults import Fault, Faults
from .httpparse import HeaderError, read_headers
from .params import parse_params
from .shaping import ShapedReader, ShapedWriter, TokenBucket, mbps_to_bytes
from .stats import Stats

log = logging.getLogger("b2fs.emulator")

MAX_JSON_BODY = 16 << 20
DRAIN_LIMIT = 64 << 20
SENDFILE_CHUNK = 8 << 20
_API_RE = re.compile(r"^/b2api/v(\d+)/([A-Za-z0-9_]+)((?:/[^/]*)*)$")
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    411: "bad_request",
    413: "bad_request",
    414: "bad_request",
    416: "range_not_satisfiable",
    429: "too_many_requests",
    431: "bad_request",
    500: "internal_error",
    501: "method_not_allowed",
    503: "service_unavailable",
    505: "bad_request",
}


class _Abort(Exception):
    """The connection was dropped on purpose (reset fault); stop handling it."""


def route(path: str) -> tuple[str, int, list[str]] | None:
    """(operation, API version, extra path segments) for a request path."""
    if path.startswith("/file/"):
        bucket, _, name = path[len("/file/") :].partition("/")
        return "b2_download_file_by_name", 4, [bucket, name]
    m = _API_RE.match(path)
    if not m or not 1 <= int(m[1]) <= 4:
        return None
    args = m[3].split("/")[1:] if m[3] else []
    return m[2], int(m[1]), args


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], app: App, faults: Faults, stats: Stats) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.faults = faults
        self.stats = stats
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, Handler)

    def track(self, sock: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(sock)
            else:
                self._conns.discard(sock)

    def close_connections(self) -> None:
        """Shut every open connection so that handler threads end promptly."""
        with self._conns_lock:
            conns = list(self._conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "b2fs-emulator"
    sys_version = ""
    server: Server

    # -- connection set-up -------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        cfg = self.server.app.config
        self.connection.settimeout(cfg.request_timeout)
        # Headers and body go out in separate writes: without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every small response.
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, True)
        if cfg.bandwidth_mbps > 0:
            rate = mbps_to_bytes(cfg.bandwidth_mbps)
            self.rfile = ShapedReader(self.rfile, TokenBucket(rate))  # type: ignore[assignment]
            self._write_bucket: TokenBucket | None = TokenBucket(rate)
            self.wfile = ShapedWriter(self.wfile, self._write_bucket)  # type: ignore[assignment]
        else:
            self._write_bucket = None

    def finish(self) -> None:
        self.server.track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def parse_request(self) -> bool:
        """The request line and headers; answers malformed ones itself and returns False."""
        self.command = ""
        self.request_version = "HTTP/1.1"
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if len(words) != 3:
            self.send_error(400, "Bad request syntax")
            return False
        command, path, version = words
        if version not in ("HTTP/1.0", "HTTP/1.1"):
            self.send_error(
                505 if version.startswith("HTTP/") else 400,
                f"Unsupported HTTP version {version[:20]}",
            )
            return False
        self.command, self.path, self.request_version = command, path, version
        try:
            self.headers = read_headers(self.rfile)  # type: ignore[assignment]
        except HeaderError as e:
            self.send_error(e.status, e.message)
            return False
        connection = (self.headers.get("Connection") or "").lower()
        self.close_connection = connection == "close" or (
            version == "HTTP/1.0" and connection != "keep-alive"
        )
        expect = (self.headers.get("Expect") or "").lower()
        if expect == "100-continue" and version == "HTTP/1.1":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return True

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the base class would log request lines, which may carry tokens."""

    # -- one request -------------------------------------------------------------------------

    def handle_one_request(self) -> None:
        try:
            self.raw_requestline = self.rfile.readline(65537)
        except (TimeoutError, OSError):
            self.close_connection = True
            return
        if len(self.raw_requestline) > 65536:
            self.requestline, self.request_version, self.command = "", "", ""
            self.send_error(414)
            return
        if not self.raw_requestline:
            self.close_connection = True
            return
        self._started = False
        self._reset_after: int | None = None
        self._sent = 0
        self.body_remaining = 0
        try:
            if not self.parse_request():
                return
            self._serve()
            self.wfile.flush()
        except _Abort:
            self.close_connection = True
        except (TimeoutError, ConnectionError, OSError):
            self.close_connection = True

    def _serve(self) -> None:
        url = urlsplit(self.path)
        path, query = url.path, url.query
        method = self.command
        self._chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        length = self.headers.get("Content-Length")
        self.body_remaining = int(length) if length and length.strip().isdigit() else 0
        if length is not None and not length.strip().isdigit():
            self.close_connection = True  # where the body ends is unknown
            self._fail(B2Error(400, "bad_request", "invalid Content-Length"))
            return
        if path.startswith("/_emulator/"):
            self._control(path)
            return
        routed = route(path)
        op = OPERATIONS.get(routed[0]) if routed else None
        if routed is None or op is None:
            self._fail(not_found(f"unknown path: {path}"))
            return
        _name, version, args = routed
        self.server.stats.count(op.name)
        call = Call(
            app=self.server.app,
            op=op.name,
            version=version,
            method=method,
            headers=self.headers,  # type: ignore[arg-type]
            query=query,
            path_args=args,
            conn=self,
        )
        status = 0
        try:
            if method not in op.methods:
                raise B2Error(
                    405,
                    "method_not_allowed",
                    f"{method} is not allowed for {op.name}",
                    {"Allow": ", ".join(sorted(op.methods))},
                )
            if args and op.kind not in ("upload",) and op.name != "b2_download_file_by_name":
                raise not_found(f"unknown path: {path}")
            fault = self.server.faults.pick(op.name, op.kind)
            if fault is not None:
                self._inject(fault, op.kind)
            test_mode = self.headers.get("X-Bz-Test-Mode")
            if test_mode:
                forced = self.server.faults.test_mode(test_mode.strip(), op.name, op.kind)
                if forced is not None:
                    raise B2Error(forced[0], forced[1], f"X-Bz-Test-Mode: {test_mode.strip()}")
            if op.kind != "upload":
                call.params = parse_params(method, self._read_json_body(), query)
            if op.streaming:
                op.handler(call)
                status = 200
            else:
                self._send_json(200, op.handler(call))
                status = 200
        except B2Error as e:
            status = e.status
            self._fail(e)
        except ClientGone:
            status = -1
            self.close_connection = True
        except TimeoutError:
            status = 408
            self.close_connection = True  # the rest of the body may still arrive: do not wait
            self.body_remaining, self._chunked = 0, False
            self._fail(B2Error(408, "request_timeout", "service timed out reading your request"))
        except (_Abort, ConnectionError):
            raise
        except Exception:
            status = 500
            log.exception("internal error in %s", op.name)
            self._fail(B2Error(500, "internal_error", "internal error"))
        finally:
            log.debug("%s %s -> %s", method, path, status)

    # -- faults ------------------------------------------------------------------------------

    def _inject(self, fault: Fault, kind: str) -> None:
        if fault.kind == "reset":
            if kind == "upload":
                self.read_body(max(self.body_remaining // 2, 0))
                self.reset()
            self._reset_after = -1  # computed from Content-Length when the response starts
            return
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault.kind == "503":
            raise B2Error(
                503, "service_unavailable", "injected fault: service unavailable", headers
            )
        if fault.kind == "500":
            raise B2Error(500, "internal_error", "injected fault: internal error")
        if fault.kind == "429":
            raise B2Error(429, "too_many_requests", "injected fault: too many requests", headers)
        if fault.kind == "401":
            raise B2Error(401, "expired_auth_token", "Authorization token has expired")

    def reset(self) -> None:
        """Drop the connection with a TCP reset."""
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        raise _Abort()

    # -- request body ------------------------------------------------------------------------

    def read_body(self, limit: int) -> bytes:
        """Exactly ``min(limit, body_remaining)`` bytes of the body (ClientGone on EOF)."""
        n = min(limit, self.body_remaining)
        chunks: list[bytes] = []
        got = 0
        while got < n:
            data: bytes = self.rfile.read(n - got)  # a shaped reader returns 64 KiB at most
            if not data:
                self.body_remaining = 0
                raise ClientGone()
            chunks.append(data)
            got += len(data)
            self.body_remaining -= len(data)
        return b"".join(chunks)

    def readinto_body(self, buf: memoryview) -> int:
        n = min(len(buf), self.body_remaining)
        if n <= 0:
            return 0
        got: int = self.rfile.readinto(buf[:n]) or 0
        self.body_remaining -= got
        if got == 0:
            self.body_remaining = 0
        return got

    def _read_json_body(self) -> bytes:
        if self._chunked:
            return self._read_chunked()
        if self.body_remaining > MAX_JSON_BODY:
            raise B2Error(400, "bad_request", "request body is too large")
        return self.read_body(self.body_remaining)

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline(1024)
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                self.close_connection = True
                raise B2Error(400, "bad_request", "malformed chunked body") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                self._chunked = False
                return bytes(out)
            if len(out) + size > MAX_JSON_BODY:
                self.close_connection = True
                raise B2Error(400, "bad_request", "request body is too large")
            while size > 0:
                chunk = self.rfile.read(size)  # a shaped reader returns 64 KiB at most
                if not chunk:
                    raise ClientGone()
                out += chunk
                size -= len(chunk)
            self.rfile.readline(1024)

    def _discard_body(self) -> None:
        """Make the connection reusable after an early answer, or mark it for closing."""
        if self._chunked or self.body_remaining > DRAIN_LIMIT:
            self.close_connection = True
            return
        try:
            while self.body_remaining > 0:
                if not self.read_body(min(self.body_remaining, 1 << 20)):
                    break
        except (ClientGone, OSError):
            self.close_connection = True

    # -- responses ---------------------------------------------------------------------------

    def start_response(
        self, status: int, headers: list[tuple[str, str]], body: bytes | None = None
    ) -> None:
        """Send status and headers (and ``body`` with them in one write, when given)."""
        latency = self.server.app.config.latency_ms
        if latency > 0:
            time.sleep(latency / 1000)
        if self.body_remaining or self._chunked:
            self._discard_body()
        if self._reset_after == -1:
            length = next((int(v) for k, v in headers if k == "Content-Length"), 0)
            self._reset_after = length // 2
        if self.close_connection:
            headers = [*headers, ("Connection", "close")]
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        head = [
            f"HTTP/1.1 {status} {phrase}\r\n",
            f"Server: {self.server_version}\r\n",
            f"Date: {self.date_time_string()}\r\n",
        ]
        head += [f"{name}: {value}\r\n" for name, value in headers]
        head.append("\r\n")
        data = "".join(head).encode("latin-1", "strict")
        if body and self._reset_after is None:
            data += body  # one write: headers and a small body together
            body = None
        self.wfile.write(data)
        self._started = True
        if body:
            self.write(body)
        elif self._reset_after == 0:
            self.reset()

    def version_string(self) -> str:
        return self.server_version

    def write(self, data: bytes | memoryview) -> None:
        if self._reset_after is not None and self._reset_after >= 0:
            left = self._reset_after - self._sent
            if len(data) >= left:
                self.wfile.write(memoryview(data)[:left])
                self.reset()
        self.wfile.write(data)
        self._sent += len(data)

    def sendfile(self, fd: int, offset: int, count: int) -> None:
        if self._reset_after is not None and self._reset_after >= 0:
            left = self._reset_after - self._sent
            if count >= left:
                self._sendfile(fd, offset, left)
                self.reset()
        self._sendfile(fd, offset, count)
        self._sent += count

    def _sendfile(self, fd: int, offset: int, count: int) -> None:
        self.wfile.flush()
        step = 65536 if self._write_bucket is not None else SENDFILE_CHUNK
        source = _Fd(fd)
        while count > 0:
            n = min(step, count)
            if self._write_bucket is not None:
                self._write_bucket.consume(n)
            sent = self.connection.sendfile(source, offset, n)
            if sent <= 0:
                raise ConnectionError("sendfile made no progress")
            offset += sent
            count -= sent

    def _send_json(self, status: int, doc: dict[str, Any]) -> None:
        # Keys sorted like the real service's bodies (cosmetic, but diffs read better).
        body = json.dumps(doc, ensure_ascii=False, sort_keys=True).encode("utf-8")
        self.start_response(
            status,
            [
                ("Content-Type", "application/json;charset=UTF-8"),
                ("Content-Length", str(len(body))),
                ("Cache-Control", "max-age=0, no-cache, no-store"),
            ],
            body,
        )

    def _fail(self, e: B2Error) -> None:
        if self._started:
            self.close_connection = True
            raise _Abort()
        body = (
            b"" if getattr(self, "command", "") == "HEAD" else json.dumps(e.body()).encode("utf-8")
        )
        headers = [
            ("Content-Type", "application/json;charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "max-age=0, no-cache, no-store"),
            *e.headers.items(),
        ]
        self.start_response(e.status, headers, body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors the stdlib detects while parsing a request, in B2's JSON format."""
        status = 400 if code in (411, 413, 414, 431, 505) else code
        b2_code = _HTTP_CODES.get(code, "bad_request")
        if code == 501:
            status = 405
        self.close_connection = True
        if not getattr(self, "request_version", "").startswith("HTTP/1."):
            self.request_version = "HTTP/1.1"  # answer in HTTP/1.1 even to garbage
        self._started = getattr(self, "_started", False)
        self._reset_after = None
        self._sent = 0
        self.body_remaining = 0
        self._chunked = False
        self._write_bucket = getattr(self, "_write_bucket", None)
        text = message or "malformed request"
        with contextlib.suppress(_Abort, OSError):
            self._fail(B2Error(status, b2_code, text))

    # -- control endpoints -------------------------------------------------------------------

    def _control(self, path: str) -> None:
        host = self.client_address[0]
        try:
            loopback = ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            loopback = False
        stats = self.server.stats
        if not loopback:
            self._fail(B2Error(403, "forbidden", "the control endpoints are loopback-only"))
        elif path == "/_emulator/stats" and self.command == "GET":
            self._send_json(200, {"calls": stats.calls()})
        elif path == "/_emulator/stats/reset" and self.command == "POST":
            self._discard_body()
            stats.reset()
            self._send_json(200, {"calls": {}})
        else:
            self._fail(not_found(f"unknown path: {path}"))


class _Fd:
    """A minimal file object for ``socket.sendfile`` around an already-open descriptor."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd
