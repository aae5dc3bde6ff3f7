"""A scriptable in-process fake of a few B2 endpoints, behind ``httpx.MockTransport``.

For the pure tests only (no sockets, so trio's MockClock may drive them): authorization with
token renewal, and per-endpoint handlers a test installs. The real conformance tests run
against the emulator over HTTP.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import trio

KEY_ID = "0000fakekeyid0000000001"
KEY = "K000FakeSecretKeyValue000000000"
ACCOUNT = "fakeaccount1"
HOST = "http://fake-b2.test"

Handler = Callable[[httpx.Request, dict[str, Any]], Awaitable[httpx.Response]]


def error(status: int, code: str, message: str = "", **headers: str) -> httpx.Response:
    return httpx.Response(
        status, json={"status": status, "code": code, "message": message}, headers=headers
    )


class FakeB2:
    """Issues tokens ``tok-1``, ``tok-2``...; API calls need the current one."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.token_serial = 0
        self.valid_tokens: set[str] = set()
        self.handlers: dict[str, Handler] = {}
        self.authorize_delay = 0.0
        self.refuse_key = False
        self.allowed: dict[str, Any] = {"bucketId": None, "bucketName": None, "namePrefix": None}

    @property
    def current_token(self) -> str:
        return f"tok-{self.token_serial}-secretvalue"

    def expire_tokens(self) -> None:
        self.valid_tokens.clear()

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle_as_network)

    async def _handle_as_network(self, request: httpx.Request) -> httpx.Response:
        # Responses made with content= are pre-read by httpx; a network response is a stream.
        # A handler can make the body break after N bytes with the header X-Test-Fail-After.
        response = await self._handle(request)
        headers = httpx.Headers(response.headers)
        fail_after = headers.pop("x-test-fail-after", None)
        stream = _Stream(
            response.content, fail_after=None if fail_after is None else int(fail_after)
        )
        return httpx.Response(response.status_code, headers=headers, stream=stream)

    async def _handle(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.requests.append(request)
        self.bodies.append(body)
        endpoint = request.url.path.rsplit("/", 1)[-1]
        if request.url.path.startswith("/file/"):
            endpoint = "file"
        if "/b2_upload_file/" in request.url.path or "/b2_upload_part/" in request.url.path:
            endpoint = (
                "b2_upload_file" if "b2_upload_file" in request.url.path else "b2_upload_part"
            )
        self.calls[endpoint] += 1
        if endpoint == "b2_authorize_account":
            return await self._authorize(request)
        data: dict[str, Any] = {}
        if body and request.headers.get("content-type") == "application/json":
            data = json.loads(body)
        if not endpoint.startswith("b2_upload") and (
            request.headers.get("authorization") not in self.valid_tokens
        ):
            return error(401, "expired_auth_token", "Authorization token has expired")
        handler = self.handlers.get(endpoint)
        if handler is None:
            return error(404, "not_found", f"no handler for {endpoint}")
        return await handler(request, data)

    async def _authorize(self, request: httpx.Request) -> httpx.Response:
        expected = "Basic " + base64.b64encode(f"{KEY_ID}:{KEY}".encode()).decode()
        if self.authorize_delay:
            await trio.sleep(self.authorize_delay)
        if self.refuse_key or request.headers.get("authorization") != expected:
            return error(401, "unauthorized", "")
        self.token_serial += 1
        self.valid_tokens.add(self.current_token)
        return httpx.Response(
            200,
            json={
                "accountId": ACCOUNT,
                "authorizationToken": self.current_token,
                "applicationKeyExpirationTimestamp": None,
                "apiInfo": {
                    "storageApi": {
                        "absoluteMinimumPartSize": 5000000,
                        "apiUrl": HOST,
                        "downloadUrl": HOST,
                        "capabilities": ["listBuckets", "listFiles", "readFiles", "writeFiles"],
                        "infoType": "storageApi",
                        "recommendedPartSize": 100000000,
                        "s3ApiUrl": "https://s3.fake.test",
                        **self.allowed,
                    }
                },
            },
        )


class _Stream(httpx.AsyncByteStream):
    """A response body delivered in chunks, optionally breaking after ``fail_after`` bytes."""

    def __init__(self, data: bytes, chunk: int = 65536, fail_after: int | None = None) -> None:
        self._data = data
        self._chunk = chunk
        self._end = len(data) if fail_after is None else fail_after
        self._fails = fail_after is not None
        self._pos = 0

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> bytes:
        if self._pos >= self._end:
            if self._fails:
                raise httpx.RemoteProtocolError("peer closed connection before the whole body")
            raise StopAsyncIteration
        chunk = self._data[self._pos : min(self._pos + self._chunk, self._end)]
        self._pos += len(chunk)
        return chunk


def bucket_json(name: str = "bucket-one", bucket_id: str = "bkt1") -> dict[str, Any]:
    return {
        "accountId": ACCOUNT,
        "bucketId": bucket_id,
        "bucketName": name,
        "bucketType": "allPrivate",
        "bucketInfo": {},
        "corsRules": [],
        "lifecycleRules": [],
        "options": [],
        "revision": 1,
    }


async def list_buckets_ok(request: httpx.Request, data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"buckets": [bucket_json()]})
