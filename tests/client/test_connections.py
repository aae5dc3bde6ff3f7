"""The client's HTTP session: one pooled keep-alive session, and timeouts that hold."""

from __future__ import annotations

import socket

import httpx
import pytest

from b2fs.b2 import B2Client, B2Error, RetryPolicy
from b2fs.emulator import Emulator
from client.conftest import connect_to


async def test_calls_in_a_row_share_one_keep_alive_connection(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[socket.socket] = []
    server = emulator._server
    assert server is not None
    track = server.track

    def counting(sock: socket.socket, add: bool) -> None:
        if add:
            opened.append(sock)
        track(sock, add)

    monkeypatch.setattr(server, "track", counting)
    async with await connect_to(emulator) as client:
        bucket = await client.create_bucket("keep-alive-bucket")
        for _ in range(20):
            await client.list_buckets()
            [v async for v in client.list_file_names(bucket.bucket_id)]
    assert len(opened) == 1, f"{len(opened)} connections for 41 calls"


async def test_a_server_slower_than_the_read_timeout_fails_the_call(emulator: Emulator) -> None:
    async with await B2Client.connect(
        emulator.master_key_id,
        emulator.master_key,
        endpoint=emulator.url,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01),
        timeout=httpx.Timeout(connect=5.0, read=0.2, write=5.0, pool=5.0),
    ) as client:
        emulator.app.config.latency_ms = 1000
        try:
            with pytest.raises(B2Error) as raised:
                await client.list_buckets()
        finally:
            emulator.app.config.latency_ms = 0
    assert raised.value.code == "timeout"
