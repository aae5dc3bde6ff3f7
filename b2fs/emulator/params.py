"""Typed access to a JSON call's parameters, from a JSON body or from the query string.

B2 accepts every call as POST with a JSON object and as GET with query parameters (§1.3).
:func:`parse_params` turns either into a :class:`Params`; its getters check types and raise
``400 bad_request`` naming the field. ``null`` counts as absent. Query strings are coerced:
numbers and booleans from their text, arrays from a JSON-encoded value or repeated keys.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs

from .errors import B2Error, bad_request

_ARRAY_FIELDS = {"bucketTypes", "capabilities", "bucketIds", "partSha1Array", "eventTypes"}
_INT_FIELDS = {
    "maxFileCount",
    "maxKeyCount",
    "maxPartCount",
    "startPartNumber",
    "partNumber",
    "validDurationInSeconds",
    "ifRevisionIs",
    "customUploadTimestamp",
}
_BOOL_FIELDS = {"bypassGovernance", "fileLockEnabled"}
_OBJECT_FIELDS = {
    "bucketInfo",
    "fileInfo",
    "defaultServerSideEncryption",
    "defaultRetention",
    "replicationConfiguration",
    "fileRetention",
    "serverSideEncryption",
    "sourceServerSideEncryption",
    "destinationServerSideEncryption",
}


def parse_params(method: str, body: bytes, query: str) -> Params:
    values: dict[str, Any] = {}
    if query:
        for name, items in parse_qs(query, keep_blank_values=True).items():
            values[name] = _coerce(name, items)
    if method == "POST" and body.strip():
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise B2Error(400, "bad_json", "request body is not valid JSON") from None
        if not isinstance(doc, dict):
            raise B2Error(400, "bad_json", "request body must be a JSON object")
        values.update(doc)
    return Params({k: v for k, v in values.items() if v is not None})


def _coerce(name: str, items: list[str]) -> Any:
    if name in _ARRAY_FIELDS or name in _OBJECT_FIELDS:
        if len(items) == 1 and items[0][:1] in ("[", "{"):
            try:
                return json.loads(items[0])
            except ValueError:
                raise bad_request(f"{name} is not valid JSON") from None
        if name in _ARRAY_FIELDS:
            return [part for item in items for part in item.split(",") if part]
    value = items[-1]
    if name in _BOOL_FIELDS and value in ("true", "false"):
        return value == "true"
    if name in _INT_FIELDS and value.lstrip("-").isdigit():
        return int(value)
    return value


class Params:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def raw(self, name: str) -> Any:
        return self.values.get(name)

    def req_str(self, name: str) -> str:
        value = self.values.get(name)
        if value is None:
            raise bad_request(f"required field {name} is missing")
        if not isinstance(value, str):
            raise bad_request(f"{name} must be a string")
        return value

    def opt_str(self, name: str) -> str | None:
        return self.req_str(name) if name in self.values else None

    def opt_int(
        self, name: str, lo: int | None = None, hi: int | None = None, code: str = "bad_request"
    ) -> int | None:
        value = self.values.get(name)
        if value is None:
            return None
        if isinstance(value, str) and value.lstrip("-").isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad_request(f"{name} must be an integer")
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise B2Error(400, code, f"{name} out of range: {value} (allowed {lo}..{hi})")
        return value

    def req_int(self, name: str, lo: int | None = None, hi: int | None = None) -> int:
        value = self.opt_int(name, lo, hi)
        if value is None:
            raise bad_request(f"required field {name} is missing")
        return value

    def opt_bool(self, name: str) -> bool | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not isinstance(value, bool):
            raise bad_request(f"{name} must be a boolean")
        return value

    def opt_list(self, name: str) -> list[Any] | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not isinstance(value, list):
            raise bad_request(f"{name} must be an array")
        return value

    def opt_dict(self, name: str) -> dict[str, Any] | None:
        value = self.values.get(name)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise bad_request(f"{name} must be an object")
        return value
