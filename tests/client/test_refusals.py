"""Bad input is refused before any request: the emulator sees no call at all."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from b2fs.b2 import B2Client, B2InvalidInput, Bucket

if TYPE_CHECKING:
    from b2fs.emulator import Emulator

Call = Callable[[B2Client, Bucket], Awaitable[Any]]

REFUSED: list[tuple[str, Call, str]] = [
    ("empty name", lambda c, b: c.upload_file(b.bucket_id, "", b"x"), "must not be empty"),
    ("1025-byte name", lambda c, b: c.upload_file(b.bucket_id, "a" * 1025, b"x"), "limit is 1024"),
    (
        "513 two-byte characters",
        lambda c, b: c.upload_file(b.bucket_id, "\u00e9" * 513, b"x"),
        "1026 bytes in UTF-8",
    ),
    ("newline", lambda c, b: c.upload_file(b.bucket_id, "a\nb", b"x"), "control character"),
    ("DEL", lambda c, b: c.upload_file(b.bucket_id, "a\x7fb", b"x"), "DEL"),
    ("NUL", lambda c, b: c.hide_file(b.bucket_id, "a\x00"), "control character"),
    (
        "11 info entries",
        lambda c, b: c.upload_file(
            b.bucket_id, "f", b"x", file_info={f"k{i}": "v" for i in range(11)}
        ),
        "at most 10",
    ),
    (
        "10 entries plus src_last_modified_millis",
        lambda c, b: c.upload_file(
            b.bucket_id,
            "f",
            b"x",
            file_info={f"k{i}": "v" for i in range(10)},
            src_last_modified_millis=1,
        ),
        "with the ones added for you",
    ),
    (
        "bad info key",
        lambda c, b: c.upload_file(b.bucket_id, "f", b"x", file_info={"a key": "v"}),
        "may only contain",
    ),
    (
        "unknown b2- info key",
        lambda c, b: c.upload_file(b.bucket_id, "f", b"x", file_info={"b2-whatever": "v"}),
        "reserved 'b2-'",
    ),
    (
        "header budget",
        lambda c, b: c.upload_file(b.bucket_id, "f", b"x", file_info={"big": "\u00e9" * 1200}),
        "B2 allows 7000",
    ),
    (
        "header budget on copy",
        lambda c, b: c.copy_file(
            "id", "f", content_type="text/plain", file_info={"big": "%" * 2400}
        ),
        "B2 allows 7000",
    ),
    ("part 0", lambda c, b: c.upload_part("large", 0, b"x"), "outside 1..10000"),
    ("part 10001", lambda c, b: c.upload_part("large", 10_001, b"x"), "outside 1..10000"),
    ("bucket name", lambda c, b: c.create_bucket("bad_name!"), "letters, digits and '-'"),
    ("sha1", lambda c, b: c.upload_file(b.bucket_id, "f", b"x", sha1="xyz"), "40 hexadecimal"),
    ("upload data", lambda c, b: c.upload_file(b.bucket_id, "f", "text"), "must be bytes"),  # type: ignore[arg-type]
    (
        "content type",
        lambda c, b: c.upload_file(b.bucket_id, "f", b"x", content_type="a\r\nb"),
        "line breaks",
    ),
    ("negative offset", lambda c, b: c.download_bytes_by_id("id", offset=-1), "non-negative"),
    ("page size", lambda c, b: c.list_parts_page("large", max_part_count=1001), "1..1000"),
]


@pytest.mark.parametrize(("case", "call", "message"), REFUSED, ids=[r[0] for r in REFUSED])
async def test_refused_without_a_request(
    client: B2Client, bucket: Bucket, emulator: Emulator, case: str, call: Call, message: str
) -> None:
    before = dict(emulator.stats.calls())
    with pytest.raises(B2InvalidInput, match=re.escape(message)) as caught:
        await call(client, bucket)
    assert caught.value.status == 0 and caught.value.endpoint.startswith("b2_")
    assert dict(emulator.stats.calls()) == before
