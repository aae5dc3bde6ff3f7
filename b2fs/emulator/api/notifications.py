"""Event notification rules: set and get (§6.27, §6.28, §11.1 validation, §4.6 shape).

Setting replaces every rule of the bucket. ``isSuspended``/``suspensionReason`` are output
only: rules are stored unsuspended whenever they are set (the way to resume a rule the
webhook sender suspended). Real B2 requires https webhook URLs; http:// is also accepted when
the host is a loopback address, so tests can run a local receiver.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from .. import shapes
from ..call import Call
from ..errors import B2Error, bad_request
from .registry import operation

EVENT_TYPES = {
    "b2:ObjectCreated": ("Upload", "MultipartUpload", "Copy", "Replica", "MultipartReplica"),
    "b2:ObjectDeleted": ("Delete", "LifecycleRule"),
    "b2:HideMarkerCreated": ("Hide", "LifecycleRule"),
}
MAX_RULES = 25
_RULE_NAME_RE = re.compile(r"^[A-Za-z0-9-]{6,63}$")
_SECRET_RE = re.compile(r"^[A-Za-z0-9]{32}$")


def expand(event_type: str) -> set[str]:
    """The concrete event types a (possibly wildcard) type stands for."""
    category, _, leaf = event_type.rpartition(":")
    if leaf == "*":
        return {f"{category}:{x}" for x in EVENT_TYPES[category]}
    return {event_type}


def _valid_type(t: object) -> bool:
    if not isinstance(t, str):
        return False
    category, _, leaf = t.rpartition(":")
    return category in EVENT_TYPES and (leaf == "*" or leaf in EVENT_TYPES[category])


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _target(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("targetConfiguration must be an object")
    if value.get("targetType") != "webhook":
        raise bad_request("targetConfiguration.targetType must be 'webhook'")
    url = value.get("url")
    if not isinstance(url, str):
        raise bad_request("targetConfiguration.url is required")
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise bad_request("webhook URLs must use https (http is accepted for loopback only)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise bad_request(f"invalid webhook URL: {url}")
    headers = value.get("customHeaders")
    if headers is not None:
        if not isinstance(headers, list) or len(headers) > 10:
            raise bad_request("customHeaders must be a list of at most 10 name/value pairs")
        for h in headers:
            if (
                not isinstance(h, dict)
                or not isinstance(h.get("name"), str)
                or not isinstance(h.get("value"), str)
                or not re.match(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$", h["name"])
                or any(ord(c) < 32 for c in h["value"])
            ):
                raise bad_request("each custom header needs a valid name and value")
            if h["name"].lower().startswith("x-bz-"):
                raise bad_request("custom header names must not start with X-Bz-")
        if sum(len(h["name"]) + len(h["value"]) + 4 for h in headers) > 2048:
            raise bad_request("customHeaders are larger than 2048 bytes")
    secret = value.get("hmacSha256SigningSecret")
    if secret is not None and (not isinstance(secret, str) or not _SECRET_RE.match(secret)):
        raise bad_request("hmacSha256SigningSecret must be 32 alphanumeric characters")
    out = dict(value)
    out["customHeaders"] = headers
    out["hmacSha256SigningSecret"] = secret
    batch = value.get("maxEventsPerBatch")
    if batch is not None:
        _check_batch(batch)
    return out


def _check_batch(batch: object) -> None:
    if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 50:
        raise bad_request("maxEventsPerBatch must be 1..50")


def _rule(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad_request("each event notification rule must be an object")
    name = value.get("name")
    if not isinstance(name, str) or not _RULE_NAME_RE.match(name):
        raise bad_request("rule name must be 6 to 63 letters, digits or '-'")
    if name.lower().startswith("b2-"):
        raise bad_request("rule names starting with 'b2-' are reserved")
    types = value.get("eventTypes")
    if not isinstance(types, list) or not types:
        raise B2Error(400, "event_types_empty", f"rule {name} has no event types")
    for t in types:
        if not _valid_type(t):
            raise B2Error(400, "event_type_invalid", f"invalid event type: {t}")
    seen: set[str] = set()
    for t in types:
        concrete = expand(t)
        if concrete & seen:
            raise B2Error(400, "event_type_overlap", f"rule {name} has overlapping event types")
        seen |= concrete
    prefix = value.get("objectNamePrefix")
    if not isinstance(prefix, str):
        raise bad_request('objectNamePrefix is required (use "" for all names)')
    enabled = value.get("isEnabled")
    if not isinstance(enabled, bool):
        raise bad_request("isEnabled is required and must be a boolean")
    out = {k: v for k, v in value.items() if k not in ("isSuspended", "suspensionReason")}
    out["targetConfiguration"] = _target(value.get("targetConfiguration"))
    if "maxEventsPerBatch" in value:
        _check_batch(value["maxEventsPerBatch"])
    out["isSuspended"] = False
    out["suspensionReason"] = ""
    return out


def _check_overlaps(rules: list[dict[str, Any]]) -> None:
    names: set[str] = set()
    for r in rules:
        if r["name"] in names:
            raise bad_request(f"duplicate rule name: {r['name']}")
        names.add(r["name"])
    for i, a in enumerate(rules):
        for b in rules[i + 1 :]:
            common = set().union(*(expand(t) for t in a["eventTypes"])) & set().union(
                *(expand(t) for t in b["eventTypes"])
            )
            pa, pb = a["objectNamePrefix"], b["objectNamePrefix"]
            if common and (pa.startswith(pb) or pb.startswith(pa)):
                shown = next(t for t in (*a["eventTypes"], *b["eventTypes"]) if expand(t) & common)
                raise bad_request(
                    "More than one event notification rule has overlapping prefixes "
                    f"({pa}),({pb}) for the same event type: {shown}"
                )


def _response(bucket_id: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(rules, key=lambda r: r["name"])
    return {"bucketId": bucket_id, "eventNotificationRules": [shapes.rule(r) for r in ordered]}


@operation("b2_set_bucket_notification_rules")
def set_bucket_notification_rules(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("writeBucketNotifications")
    p = call.params
    raw = p.opt_list("eventNotificationRules")
    if raw is None:
        raise bad_request("required field eventNotificationRules is missing")
    if len(raw) > MAX_RULES:
        raise bad_request(f"at most {MAX_RULES} event notification rules per bucket")
    rules = [_rule(r) for r in raw]
    _check_overlaps(rules)
    store = call.app.store
    with store.atomic():
        bucket = call.app.bucket(p.raw("bucketId"), who)
        bucket.rules = rules
        store.put_bucket(bucket)
    return _response(bucket.bucket_id, rules)


@operation("b2_get_bucket_notification_rules")
def get_bucket_notification_rules(call: Call) -> dict[str, Any]:
    who = call.principal()
    who.require("readBucketNotifications")
    bucket = call.app.bucket(call.params.raw("bucketId"), who)
    return _response(bucket.bucket_id, bucket.rules)
