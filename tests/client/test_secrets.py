"""No key or token in logs, errors or reprs, even when things go wrong (DEBUG logging on).

The suite-wide hook in tests/conftest.py fails any test whose output holds an emulator secret;
this test also checks explicitly, on purpose provoking the paths most likely to leak: refused
keys, expired tokens, server messages that quote a token, retries and faults."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest
import trio

from b2fs.b2 import B2BadCredentials, B2Client, B2Error, Bucket

from .conftest import calls

if TYPE_CHECKING:
    from b2fs.emulator import Emulator


async def test_nothing_secret_reaches_logs_errors_or_reprs(
    client: B2Client,
    bucket: Bucket,
    emulator: Emulator,
    caplog: pytest.LogCaptureFixture,
    register_secret: Callable[[str], None],
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def keep(exc: BaseException) -> None:
        texts.extend([str(exc), repr(exc)])

    # A refused key.
    with pytest.raises(B2BadCredentials) as refused:
        await B2Client.connect(
            emulator.master_key_id, emulator.master_key + "x", endpoint=emulator.url
        )
    keep(refused.value)
    register_secret(emulator.master_key + "x")

    # One upload URL used by two uploads at once: B2 answers auth_token_limit, quoting the token.
    url = await client.get_upload_url(bucket.bucket_id)
    texts.append(repr(url))
    async with trio.open_nursery() as nursery:
        for i in range(2):
            nursery.start_soon(
                lambda i=i: client.upload_file(
                    bucket.bucket_id, f"same-url-{i}", b"z" * 2_000_000, upload_url=url
                )
            )

    assert client.stats.errors_by_code[(400, "auth_token_limit")] == 1

    # Expired tokens, faults and retries.
    emulator.expire_tokens()
    emulator.faults.script("api", "503", 1)
    emulator.faults.script("upload", "401", 1)
    fv = await client.upload_file(bucket.bucket_id, "after-expiry", b"data")
    emulator.faults.script("download", "reset", 1)
    await client.download_bytes_by_id(fv.file_id or "")

    # Secrets issued to the caller, shown only in their own fields.
    key = await client.create_key("leak-check", ["listFiles"])
    grant = await client.get_download_authorization(bucket.bucket_id, "", 60)
    texts.extend([repr(key), repr(grant), repr(client), repr(client.account), repr(client.stats)])
    texts.append(str(client.stats.snapshot()))

    # Errors carrying server messages.
    for call in (
        lambda: client.get_file_info("4_zno_such_file"),
        lambda: client.delete_file_version("4_zno_such_file", "x"),
        lambda: client.hide_file(bucket.bucket_id, "never"),
    ):
        try:
            await call()
        except B2Error as exc:
            keep(exc)

    secrets = {s for s in emulator.secrets() if len(s) >= 12}
    secrets |= {emulator.master_key, key.application_key, grant.authorization_token}
    assert len(secrets) >= 5  # master key, account tokens, upload tokens, new key, grant
    assert caplog.text.count("\n") > 20  # DEBUG request lines were captured
    everything = "\n".join([caplog.text, *texts])
    leaked = sorted(s[:4] + "..." for s in secrets if s in everything)
    assert leaked == []
    assert calls(emulator, "b2_authorize_account") >= 2
