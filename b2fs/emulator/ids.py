"""Identifiers, secrets and tokens shaped like the real service's (B2-API.md §4).

* account id: 12 hex; bucket id: 24 hex; application key id: 25 chars; secret: 31 chars
  starting with ``K``.
* fileId: ``4_z<bucketId>_f<kind><15 hex seq>_d<YYYYMMDD>_m<HHMMSS>_c002_v0001000_t<nnnn>_u0<ms>``.
  ``kind`` is 1 for small files and hide markers, 2 for large files. The sequence number and
  the upload timestamp are embedded, so the version ordering key of any well-formed fileId can
  be recovered (list_file_versions paging with a startFileId that no longer exists).
* tokens are random and long; the kind is visible (``acct``/``upld``/``dnld``) as in real ones.
"""

from __future__ import annotations

import re
import secrets
import string
import time
from dataclasses import dataclass

_ALNUM = string.ascii_letters + string.digits
_FILE_ID_RE = re.compile(
    r"^4_z(?P<bucket>[0-9a-f]{24})_f(?P<kind>[1-4])(?P<seq>[0-9a-f]{15})"
    r"_d\d{8}_m\d{6}_c\d{3}_v\d{7}_t\d{4}_u(?P<ms>\d{14})$"
)


def account_id() -> str:
    return secrets.token_hex(6)


def bucket_id() -> str:
    return secrets.token_hex(12)


def key_id(account: str, serial: int) -> str:
    return f"00{account[:10]}{serial:013d}"[:25]


def key_secret() -> str:
    return "K" + "".join(secrets.choice(_ALNUM) for _ in range(30))


def token(key: str, kind: str) -> str:
    return (
        f"4_{key}_{secrets.token_hex(4)}_{secrets.token_hex(3)}_{kind}_"
        + secrets.token_urlsafe(21)
        + "="
    )


def nonce() -> str:
    return secrets.token_hex(8)


def file_id(bucket: str, seq: int, ts_ms: int, large: bool) -> str:
    t = time.gmtime(ts_ms / 1000)
    return (
        f"4_z{bucket}_f{2 if large else 1}{seq:015x}"
        f"_d{time.strftime('%Y%m%d', t)}_m{time.strftime('%H%M%S', t)}"
        f"_c002_v0001000_t{seq % 10000:04d}_u0{ts_ms:013d}"
    )


@dataclass(frozen=True)
class ParsedFileId:
    bucket_id: str
    seq: int
    ts_ms: int
    large: bool


def parse_file_id(value: str) -> ParsedFileId | None:
    m = _FILE_ID_RE.match(value)
    if not m:
        return None
    return ParsedFileId(
        bucket_id=m["bucket"], seq=int(m["seq"], 16), ts_ms=int(m["ms"]), large=m["kind"] == "2"
    )
