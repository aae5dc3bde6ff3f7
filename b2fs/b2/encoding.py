"""Percent-encoding of file names and file-info values (B2-API.md §5.5).

Design
------
B2 carries names and info values in HTTP headers (``X-Bz-File-Name``, ``X-Bz-Info-*``) and in
the ``/file/<bucket>/<name>`` URL path, percent-encoded as UTF-8. We encode everything except
the characters the official string-encoding page lists as never needing it (letters, digits,
``- . _ ~ ! $ ' ( ) * ; = : @ /``); a space becomes ``%20`` (accepted by every decoder, unlike
the minimal ``+``). Decoding follows B2: ``+`` means a space, so a literal plus is ``%2B``.

``encode_url_path`` additionally encodes the dots of ``.`` and ``..`` segments: an HTTP client
normalises those away (``a/../b`` would silently become ``b``), while B2 decodes ``%2E`` back.
"""

from __future__ import annotations

from urllib.parse import quote, unquote_plus

__all__ = ["decode", "encode", "encode_url_path"]

# RFC 3986 unreserved (letters, digits, "-._~", always kept by quote) plus these.
_SAFE = "!$'()*;=:@/"


def encode(value: str) -> str:
    """Percent-encode ``value`` for a B2 header (``X-Bz-File-Name``, ``X-Bz-Info-*``)."""
    return quote(value.encode("utf-8"), safe=_SAFE)


def decode(value: str) -> str:
    """Decode a B2 percent-encoded header value (``+`` is a space; UTF-8; strict)."""
    return unquote_plus(value, encoding="utf-8", errors="strict")


def encode_url_path(name: str) -> str:
    """Encode a file name for ``/file/<bucket>/<name>``: as :func:`encode`, with dot segments
    escaped so that no HTTP layer can collapse them."""
    segments = encode(name).split("/")
    return "/".join("%2E" * len(s) if s in (".", "..") else s for s in segments)
