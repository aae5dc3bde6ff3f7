"""``b2fs status MOUNTPOINT``: what a running mount is doing, from its control socket.

Human output by default, ``--json`` for scripts (the snapshot of ``b2fs.service.status``, as
the daemon sent it). It only ever shows counts, sizes, options and file names: the daemon's
status has no secrets in it. Only the mount's owner (and root) can ask: the control socket
refuses everyone else.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

PENDING_SHOWN = 20  # the human output lists this many pending uploads, then counts the rest


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "status", help="show pending uploads, cache use, B2 requests and errors"
    )
    parser.add_argument("mountpoint", type=Path)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=run_status)


def request(mountpoint: Path, message: dict[str, Any]) -> dict[str, Any]:
    """Send one request to the mount's control socket and return its (first) answer."""
    from b2fs.commands.mount import connect_control

    with connect_control(mountpoint) as sock:
        sock.sendall(json.dumps(message).encode() + b"\n")
        with sock.makefile("rb") as answers:
            line = answers.readline()
    answer: dict[str, Any] = json.loads(line)
    return answer


def run_status(args: argparse.Namespace) -> int:
    from b2fs.commands.mount import not_yours

    mountpoint = args.mountpoint.absolute()
    try:
        status = request(mountpoint, {"command": "status"})
    except PermissionError:
        print(f"b2fs: {not_yours(mountpoint)}", file=sys.stderr)
        return 1
    except (OSError, ValueError):
        print(f"b2fs: no running b2fs mount at {mountpoint}", file=sys.stderr)
        return 1
    if "error" in status:
        print(f"b2fs: {status['error']}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(status))
    return 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {seconds}s" if minutes else f"{seconds}s"


def format_status(status: dict[str, Any]) -> str:
    from b2fs.service.status import human_size

    cache = status["cache"]
    b2 = status["b2"]
    ratio = cache["hit_ratio"]
    mode = "read-only" if status["read_only"] else "read-write"
    lines = [
        f"{status['source'] or 'all buckets'} at {status['mountpoint']}: {status['state']}, "
        f"{mode}, up {_duration(status['uptime_seconds'])} (pid {status['pid']}, "
        f"b2fs {status['version']})",
        f"cache directory: {status['cache_dir']}",
    ]
    count = status["pending_files"]
    if count:
        lines.append(
            f"pending uploads: {count} ({human_size(status['pending_bytes'])}, "
            f"{human_size(status['pending_sent_bytes'])} sent)"
        )
        for p in status["pending"][:PENDING_SHOWN]:
            state = "waiting"
            if p["uploading"]:
                percent = p["sent"] / p["size"] if p["size"] else 1.0
                state = f"uploading {percent:.0%}"
            line = f"  {p['bucket']}/{p['name']}  {human_size(p['size'])}  {state}"
            if p["error"]:
                line += f"  (last try failed: {p['error']})"
            lines.append(line)
        if count > PENDING_SHOWN:
            lines.append(f"  ... and {count - PENDING_SHOWN} more")
    else:
        lines.append("pending uploads: none")
    lines += [
        f"cache: {human_size(cache['used_bytes'])} of {human_size(cache['capacity_bytes'])}, "
        f"hit ratio {'-' if ratio is None else f'{ratio:.0%}'} "
        f"({cache['hits']} hits, {cache['misses']} misses)",
        f"transferred: {human_size(b2['bytes_uploaded'])} up, "
        f"{human_size(b2['bytes_downloaded'])} down",
        f"B2 requests: {b2['requests_total']}, errors: {b2['errors_total']}, retries: "
        f"{b2['retries_total']}, re-authorizations: {b2['reauthorizations']}",
    ]
    width = max((len(e) for e in b2["requests"]), default=0)
    for endpoint, n in sorted(b2["requests"].items()):
        extra = ""
        if b2["errors"].get(endpoint):
            extra += f"  {b2['errors'][endpoint]} errors"
        if b2["retries"].get(endpoint):
            extra += f"  {b2['retries'][endpoint]} retries"
        lines.append(f"  {endpoint:<{width}}  {n:>7}{extra}")
    if b2["errors_by_code"]:
        lines.append("errors by code:")
        for code, n in sorted(b2["errors_by_code"].items()):
            lines.append(f"  {code}  {n}")
    if status.get("metrics"):
        lines.append(f"metrics: http://{status['metrics']}/metrics")
    if status.get("notify"):
        lines += format_notify(status["notify"])
    return "\n".join(lines)


def format_notify(notify: dict[str, Any]) -> list[str]:
    """The event notification lines of the human status."""
    ttl = _duration(notify["listing_ttl_seconds"])
    if notify["state"] == "healthy":
        head = f"notifications: healthy, listings trusted for {ttl}"
    else:
        head = f"notifications: FALLBACK to dir_timeout ({ttl}): " + "; ".join(notify["reasons"])
    ago = notify["last_event_seconds_ago"]
    events = notify["events"]
    receiver = notify["receiver"]
    lines = [
        head,
        f"  receiver {notify['url']}, last event "
        + ("never" if ago is None else f"{_duration(ago)} ago"),
        f"  events: {events['applied']} applied, {events['own']} own, {events['duplicate']} "
        f"repeated, {events['ignored']} ignored, {events['dropped']} dropped; "
        f"{receiver['refused']} requests refused (bad signature), {receiver['rejected']} "
        "rejected",
    ]
    for rule in notify["rules"] or []:
        state = "enabled" if rule["enabled"] else "disabled"
        if rule["suspended"]:
            state = f"SUSPENDED ({rule['suspension_reason']})"
        lines.append(f"  rule {rule['name']} (prefix {rule['prefix']!r}): {state}")
    if notify["rules_error"]:
        lines.append(f"  rules: {notify['rules_error']}")
    for peer in notify["forward"]:
        line = f"  forwarding to {peer['url']}: {peer['forwarded']} sent, {peer['failed']} failed"
        if peer["last_error"]:
            line += f" (last error: {peer['last_error']})"
        lines.append(line)
    return lines
