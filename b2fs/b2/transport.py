"""HTTP for the B2 client: the pooled httpx session, one request at a time, errors typed.

Design
------
:class:`Transport` owns the ``httpx.AsyncClient`` sessions of one account: HTTP/1.1 with
keep-alive, a connection limit (64 by default, all kept alive), explicit timeouts, no
redirects. There are three sessions, one per kind of traffic (JSON API calls, uploads,
downloads): httpcore's pool scans its connections in quadratic time on every request and
response (1.0.9: an idle-connection count inside a loop over the connections), which cost
milliseconds per request with 32 busy connections in one pool; three pools each hold only
the connections of their own concurrency, and long transfers never queue API calls. It makes
exactly one HTTP exchange per call: no retries and no re-authorization here (``retry.py`` and
``auth.py`` wrap it). Three shapes of exchange:

* :meth:`Transport.json_call`: a JSON API call; returns the decoded object of a 2xx answer;
* :meth:`Transport.upload`: a POST of a streamed body with an explicit ``Content-Length``
  (httpx would otherwise send an iterator chunked, which B2 refuses); returns the JSON answer;
* :meth:`Transport.stream`: an async context manager yielding a 2xx streaming response
  (downloads).

Any non-2xx answer becomes the typed error of ``errors.py`` (its JSON body read:
``status``/``code``/``message``; a body that is not JSON gives ``non_json_response``) with an
integer ``Retry-After`` kept; any httpx transport failure (refused, reset, timeout, a body cut
short) becomes :class:`B2ConnectionError`.

Secrets: server messages can quote a token (``auth_token_limit`` does), so every message is
passed through the :class:`Redactor`, which knows the key, the account token and the upload
tokens in use, and also masks the request's own ``Authorization`` value. Log lines (DEBUG, one
per request: endpoint, method, status, time, bytes) name the endpoint, never a URL, a header
or a body.

Speed: httpcore reads a response body from the socket 64 KiB at a time; each read costs a trip
through trio, h11 and httpx in Python. Reading 256 KiB at a time measured 1.9x the download
CPU efficiency here (341 -> 644 MB per CPU-second, 4 parallel streams from the emulator), so
``READ_NUM_BYTES`` is raised once, at import.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpcore
import httpx

from b2fs.b2.errors import (
    B2ConnectionError,
    B2Error,
    B2UnexpectedResponse,
    error_from_response,
)
from b2fs.b2.stats import ClientStats

httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = 256 * 1024

__all__ = ["DEFAULT_TIMEOUT", "Redactor", "Transport"]

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(connect=10.0, read=60.0, write=60.0, pool=120.0)
DEFAULT_MAX_CONNECTIONS = 64
MAX_ERROR_BODY = 64 * 1024
REDACTED = "<redacted>"


class Redactor:
    """Masks known secrets in text that may come from a server or an exception."""

    def __init__(self, limit: int = 4096) -> None:
        self._secrets: dict[str, None] = {}
        self._limit = limit

    def add(self, secret: str | None) -> None:
        if not secret or len(secret) < 6:
            return
        self._secrets.pop(secret, None)
        self._secrets[secret] = None
        while len(self._secrets) > self._limit:
            del self._secrets[next(iter(self._secrets))]

    def __call__(self, text: str, extra: Iterable[str | None] = ()) -> str:
        for secret in (*self._secrets, *extra):
            if secret and len(secret) >= 6 and secret in text:
                text = text.replace(secret, REDACTED)
        return text


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = int(value.strip())
    except ValueError:
        return None  # HTTP-date form: not used by B2; fall back to backoff
    return float(max(seconds, 0))


class _NoCookies(httpx.Cookies):
    """A cookie jar that never looks at responses (B2 sets no cookies)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class Transport:
    """One pooled HTTP session; see the module docstring."""

    def __init__(
        self,
        *,
        stats: ClientStats,
        redactor: Redactor,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        user_agent: str = "b2fs",
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
    ) -> None:
        self.stats = stats
        self.redact = redactor

        def session() -> httpx.AsyncClient:
            client = httpx.AsyncClient(
                http1=True,
                http2=False,
                timeout=timeout,
                limits=httpx.Limits(
                    max_connections=max_connections,
                    max_keepalive_connections=max_connections,
                    keepalive_expiry=30.0,
                ),
                follow_redirects=False,
                headers={"User-Agent": user_agent},
                transport=transport,
                trust_env=trust_env,
            )
            # B2 sets no cookies; httpx would still parse every response for them through
            # http.cookiejar (a fifth of the client's CPU per download request, measured).
            client._cookies = _NoCookies()
            return client

        # One pool per kind of traffic (see the module docstring).
        self._client = session()  # JSON API calls
        self._uploads = session()
        self._downloads = session()

    async def aclose(self) -> None:
        for client in (self._client, self._uploads, self._downloads):
            await client.aclose()

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    # --- requests -----------------------------------------------------------------------------

    async def json_call(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        authorization: str | None = None,
        auth: tuple[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> dict[str, Any]:
        """One JSON API exchange; the decoded 2xx body or a typed error. ``timeout``
        replaces the session's for this request (slow server-side copies)."""
        headers = {"Accept": "application/json"}
        if authorization is not None:
            headers["Authorization"] = authorization
        content: bytes | None = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode("utf-8")
            headers["Content-Type"] = "application/json"
        extra: tuple[str | None, ...] = (authorization,)
        if auth is not None:
            basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {basic}"
            extra = (*auth, basic)
        request = self._client.build_request(
            method, url, headers=headers, content=content, params=params
        )
        if timeout is not None:
            request.extensions["timeout"] = timeout.as_dict()
        response, payload = await self._exchange(endpoint, request, extra)
        return self._decode_json(endpoint, response.status_code, payload)

    async def upload(
        self,
        endpoint: str,
        url: str,
        *,
        headers: Mapping[str, str],
        body: AsyncIterable[bytes],
        length: int,
    ) -> dict[str, Any]:
        """POST a streamed body of exactly ``length`` bytes (never chunked)."""
        all_headers = {**headers, "Content-Length": str(length), "Accept": "application/json"}
        request = self._uploads.build_request("POST", url, headers=all_headers, content=body)
        request.headers.pop("Transfer-Encoding", None)
        response, payload = await self._exchange(
            endpoint, request, (headers.get("Authorization"),), self._uploads
        )
        return self._decode_json(endpoint, response.status_code, payload)

    @asynccontextmanager
    async def stream(
        self,
        endpoint: str,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """A streaming exchange (downloads): yields the 2xx response, body not yet read."""
        request = self._downloads.build_request(method, url, headers=dict(headers), params=params)
        extra = (headers.get("Authorization"),)
        self.stats.record_request(endpoint)
        started = time.perf_counter()
        with self._map_errors(endpoint, extra):
            response = await self._downloads.send(request, stream=True)
        try:
            if not 200 <= response.status_code < 300:
                with self._map_errors(endpoint, extra):
                    payload = await _read_limited(response)
                self.log_exchange(endpoint, method, response.status_code, started)
                raise self._error(endpoint, response, payload, extra)
            self.log_exchange(endpoint, method, response.status_code, started)
            with self._map_errors(endpoint, extra):
                yield response
        finally:
            await response.aclose()

    async def _exchange(
        self,
        endpoint: str,
        request: httpx.Request,
        extra: Iterable[str | None],
        client: httpx.AsyncClient | None = None,
    ) -> tuple[httpx.Response, bytes]:
        self.stats.record_request(endpoint)
        started = time.perf_counter()
        with self._map_errors(endpoint, extra):
            response = await (client or self._client).send(request, stream=True)
            try:
                payload = await _read_limited(response)
            finally:
                await response.aclose()
        self.log_exchange(endpoint, request.method, response.status_code, started, len(payload))
        if not response.is_success:
            raise self._error(endpoint, response, payload, extra)
        return response, payload

    # --- errors -------------------------------------------------------------------------------

    def _decode_json(self, endpoint: str, status: int, payload: bytes) -> Any:
        try:
            data = json.loads(payload)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            self.stats.record_error(endpoint, status, "non_json_response")
            raise B2UnexpectedResponse(
                status,
                "non_json_response",
                "B2 answered with something that is not a JSON object",
                endpoint,
            )
        return data

    def _error(
        self,
        endpoint: str,
        response: httpx.Response,
        payload: bytes,
        extra: Iterable[str | None],
    ) -> B2Error:
        status = response.status_code
        code, message = "non_json_response", ""
        try:
            data = json.loads(payload) if payload else None
        except ValueError:
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("code"), str):
                code = data["code"]
            if isinstance(data.get("message"), str):
                message = data["message"]
        elif not payload:
            code = "empty_response"
        if not message:
            message = response.reason_phrase or ""
        message = self.redact(message[:2000], extra)
        code = self.redact(code[:200], extra)
        self.stats.record_error(endpoint, status, code)
        return error_from_response(
            endpoint, status, code, message, retry_after=_retry_after(response.headers)
        )

    def json_answer(
        self,
        endpoint: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        extra: Iterable[str | None],
    ) -> Any:
        """The decoded JSON of an answer received outside httpx (``threaded.py``), or its
        typed error, exactly as for any other answer. (A success needs no
        ``httpx.Response``: building one cost more than the rest of a small upload's answer.)"""
        if not 200 <= status < 300:
            raise self.error_for(endpoint, status, headers, body, extra)
        return self._decode_json(endpoint, status, body)

    def error_for(
        self,
        endpoint: str,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        extra: Iterable[str | None],
    ) -> B2Error:
        """The typed error of an answer received outside httpx (``threaded.py``), built and
        redacted exactly as any other."""
        response = httpx.Response(status, headers=dict(headers), content=body)
        return self._error(endpoint, response, body, extra)

    def connection_error(
        self, endpoint: str, exc: BaseException, extra: Iterable[str | None] = ()
    ) -> B2ConnectionError:
        """The :class:`B2ConnectionError` for an httpx failure (message redacted)."""
        kind = type(exc).__name__
        detail = self.redact(str(exc), extra)
        code = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
        self.stats.record_error(endpoint, 0, code)
        message = f"{kind}: {detail}" if detail else kind
        return B2ConnectionError(message, endpoint, code=code)

    def _map_errors(self, endpoint: str, extra: Iterable[str | None]) -> _ErrorMapper:
        return _ErrorMapper(self, endpoint, tuple(extra))

    def log_exchange(
        self, endpoint: str, method: str, status: int, started: float, size: int | None = None
    ) -> None:
        if log.isEnabledFor(logging.DEBUG):
            elapsed = (time.perf_counter() - started) * 1000
            if size is None:
                log.debug("%s %s -> %d in %.1f ms", method, endpoint, status, elapsed)
            else:
                log.debug(
                    "%s %s -> %d in %.1f ms (%d bytes)", method, endpoint, status, elapsed, size
                )


class _ErrorMapper:
    """Context manager turning httpx transport errors into :class:`B2ConnectionError`."""

    def __init__(self, transport: Transport, endpoint: str, extra: tuple[str | None, ...]):
        self._transport = transport
        self._endpoint = endpoint
        self._extra = extra

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None or not isinstance(exc, httpx.TransportError):
            return
        if isinstance(exc, httpx.UnsupportedProtocol | httpx.InvalidURL):
            raise B2UnexpectedResponse(
                0, "invalid_url", f"cannot use that URL: {type(exc).__name__}", self._endpoint
            ) from None
        raise self._transport.connection_error(self._endpoint, exc, self._extra) from None


async def _read_limited(response: httpx.Response, limit: int = MAX_ERROR_BODY) -> bytes:
    """Read a (JSON) response body; error bodies are cut at ``limit`` bytes."""
    if response.is_success:
        return await response.aread()
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]
