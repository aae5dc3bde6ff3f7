"""Mount options: the one table of every option, its type, default and meaning, and its parser.

Every way of giving an option (``-o`` on the command line, the fstab helper, the TOML file,
the environment) goes through :func:`parse_value` with the spec from :data:`OPTIONS`, so a
value means the same thing everywhere and a bad one gets the same one-line error naming the
option. ``docs/CONFIGURATION.md`` documents this table; keep them together.

Values: sizes take binary suffixes (``512K``, ``8M``, ``10G``, ``1T``; a bare number is bytes),
durations take ``ms``, ``s``, ``m``, ``h`` (a bare number is seconds), modes are octal.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


class OptionError(ValueError):
    """A bad option: the message is one line naming the option and what is wrong."""


_SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_DURATION_UNITS = {"": 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtb]?)(?:i?b)?\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a size (examples: 4096, 512K, 8M, 10G)")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*", text.lower())
    if not match:
        raise ValueError(f"{text!r} is not a duration (examples: 500ms, 1, 10s, 5m, 1h)")
    return float(match.group(1)) * _DURATION_UNITS[match.group(2)]


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("", "1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false)")


def parse_octal(text: str) -> int:
    try:
        value = int(text, 8)
    except ValueError:
        raise ValueError(f"{text!r} is not an octal mode (example: 022)") from None
    if not 0 <= value <= 0o7777:
        raise ValueError(f"{text!r} is out of range for a mode")
    return value


def parse_timestamp(text: str) -> int:
    """A moment as epoch milliseconds: ISO 8601 (UTC unless an offset is given) or a number
    of milliseconds since the epoch."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a moment (examples: 2026-11-26T12:00:00Z, 1795704740300)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return int(moment.timestamp() * 1000)


def parse_address(text: str) -> str:
    """Where to listen: ``HOST:PORT``, ``[IPv6]:PORT``, or a bare ``PORT`` (127.0.0.1);
    ``off`` or nothing turns it off (the empty string)."""
    text = text.strip()
    if text.lower() in ("", "off", "none"):
        return ""
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if host.startswith("[") and host.endswith("]"):
        inner = host[1:-1]
        valid_host = ":" in inner
    else:
        inner = host
        valid_host = bool(host) and ":" not in host
    if not valid_host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not an address (examples: 9100, 127.0.0.1:9100, [::1]:9100)")
    return f"[{inner}]:{int(port)}" if ":" in inner else f"{inner}:{int(port)}"


def parse_path(text: str) -> str:
    """An absolute path (``~`` is the home directory); nothing: unset. The daemon runs from
    ``/``, so a relative path would not mean what it meant where it was typed."""
    text = text.strip()
    if not text:
        return ""
    path = os.path.expanduser(text)
    if not os.path.isabs(path):
        raise ValueError(f"{text!r} is not an absolute path")
    return path


def parse_urls(text: str) -> str:
    """``http://`` or ``https://`` URLs separated by ``;`` (commas separate options)."""
    urls = [url.strip() for url in text.split(";") if url.strip()]
    for url in urls:
        if not re.fullmatch(r"https?://[^\s/;]+(/\S*)?", url):
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
    return ";".join(urls)


def parse_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


@dataclass(frozen=True)
class OptionSpec:
    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    kind: str = "str"  # what a TOML value must be: str, int, float, bool

    def convert(self, raw: Any) -> Any:
        """Parse a raw value (a string, or a typed TOML value) and check its range."""
        if isinstance(raw, bool) and self.kind != "bool":
            raise ValueError(f"{raw!r} is a boolean, expected {self.kind}")
        value = self.parse(raw) if isinstance(raw, str) else self._from_typed(raw)
        if self.choices and value not in self.choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(self.choices)}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"{raw!r} is below the minimum {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"{raw!r} is above the maximum {self.maximum:g}")
        return value

    def _from_typed(self, raw: Any) -> Any:
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
        elif self.kind in ("int", "size") and isinstance(raw, int):
            return raw
        elif self.kind in ("float", "duration") and isinstance(raw, int | float):
            return float(raw)
        raise ValueError(f"{raw!r} has the wrong type, expected {self.kind}")


_KiB, _MiB, _GiB = 1 << 10, 1 << 20, 1 << 30

_SPECS = [
    OptionSpec("ro", parse_bool, False, "Mount read-only.", kind="bool"),
    OptionSpec(
        "unlink",
        str,
        "hide",
        "What unlink does on B2: 'hide' adds a hide marker (old versions stay), "
        "'delete' deletes every version of the name.",
        choices=("hide", "delete"),
    ),
    OptionSpec(
        "uid",
        parse_int,
        None,
        "Owner of files without stored ownership (default: you).",
        kind="int",
        minimum=0,
    ),
    OptionSpec(
        "gid",
        parse_int,
        None,
        "Group of files without stored ownership (default: yours).",
        kind="int",
        minimum=0,
    ),
    OptionSpec(
        "umask", parse_octal, 0o022, "Bits removed from file_mode and dir_mode.", kind="int"
    ),
    OptionSpec(
        "file_mode",
        parse_octal,
        0o666,
        "Mode of files without a stored mode, before umask.",
        kind="int",
    ),
    OptionSpec("dir_mode", parse_octal, 0o777, "Mode of directories, before umask.", kind="int"),
    OptionSpec(
        "allow_other", parse_bool, False, "Let other users access the mount (FUSE).", kind="bool"
    ),
    OptionSpec(
        "cache_size",
        parse_size,
        4 * _GiB,
        "Bound of the read block cache on disk (dirty data waiting for upload comes on top).",
        kind="size",
        minimum=16 * _MiB,
    ),
    OptionSpec(
        "block_size",
        parse_size,
        1 * _MiB,
        "Size of a read cache block and of the unit fetched for a random read.",
        kind="size",
        minimum=64 * _KiB,
        maximum=64 * _MiB,
    ),
    OptionSpec(
        "attr_timeout",
        parse_duration,
        1.0,
        "How long the kernel may cache attributes and names before asking b2fs again.",
        kind="duration",
        minimum=0,
    ),
    OptionSpec(
        "dir_timeout",
        parse_duration,
        10.0,
        "How long a directory listing fetched from B2 is trusted; changes by other "
        "clients show up after at most this long (with notify_listen, in about a second while "
        "notifications are healthy).",
        kind="duration",
        minimum=0,
    ),
    OptionSpec(
        "retry_time",
        parse_duration,
        60.0,
        "Longest time one B2 request is retried after temporary failures (B2 busy or down, "
        "network errors), with exponential backoff and jitter and at most 6 attempts, before "
        "it fails: a read then returns EIO; a pending upload stays queued and is tried again "
        "later, so no closed file is ever dropped.",
        kind="duration",
        minimum=0,
        maximum=86400,
    ),
    OptionSpec(
        "large_file_threshold",
        parse_size,
        16 * _MiB,
        "Files above this size are uploaded as B2 large files, parts in parallel.",
        kind="size",
        minimum=10 * _MiB,
        maximum=5 * 10**9,
    ),
    OptionSpec(
        "part_size",
        parse_size,
        8 * _MiB,
        "Size of the parts of a large upload (B2's minimum is 5 MB).",
        kind="size",
        minimum=5 * 10**6,
        maximum=5 * 10**9,
    ),
    OptionSpec(
        "upload_concurrency",
        parse_int,
        32,
        "Upload requests in flight at once (small files and parts together); also how many "
        "files a directory rename copies at once.",
        kind="int",
        minimum=1,
        maximum=256,
    ),
    OptionSpec(
        "writeback_delay",
        parse_duration,
        1.0,
        "How long a closed file waits before its upload starts, so that a rename, chmod or "
        "utime right after the close changes the pending upload instead of repeating it "
        "(fsync and unmount do not wait).",
        kind="duration",
        minimum=0,
        maximum=3600,
    ),
    OptionSpec(
        "download_concurrency",
        parse_int,
        16,
        "Ranged downloads in flight at once for reads and prefetch.",
        kind="int",
        minimum=1,
        maximum=256,
    ),
    OptionSpec(
        "list_concurrency",
        parse_int,
        16,
        "List calls in flight at once when a recursive walk (ls -R, find, du) fetches every "
        "name below a directory in ranges.",
        kind="int",
        minimum=1,
        maximum=64,
    ),
    OptionSpec(
        "readahead",
        parse_size,
        128 * _MiB,
        "Largest prefetch window of a sequential reader.",
        kind="size",
        minimum=0,
        maximum=1 * _GiB,
    ),
    OptionSpec(
        "kernel_readahead",
        parse_size,
        4 * _MiB,
        "How far the kernel reads ahead of a sequential reader; it also sets how large FUSE "
        "read requests get (up to 1 MiB). Needs root to change; 0 keeps the kernel's 128K.",
        kind="size",
        minimum=0,
        maximum=1 * _GiB,
    ),
    OptionSpec(
        "versions_dir",
        str,
        ".versions",
        "Name of the read-only versions directory at the mount root ('none' turns it off).",
    ),
    OptionSpec(
        "version_at",
        parse_timestamp,
        None,
        "Mount read-only as the bucket was at this moment (ISO 8601, UTC unless an offset "
        "is given, or epoch milliseconds): each name shows its newest version uploaded at or "
        "before it; names hidden then are absent.",
        kind="int",
    ),
    OptionSpec("fsname", str, "", "Name shown in the mount table (default: b2fs:BUCKET)."),
    OptionSpec(
        "metrics",
        parse_address,
        "",
        "Serve Prometheus metrics (the counters of b2fs status) over HTTP at HOST:PORT/metrics; "
        "a bare PORT listens on 127.0.0.1. Off when empty.",
    ),
    OptionSpec(
        "notify_listen",
        parse_address,
        "",
        "Receive B2 event notifications (a webhook) at HOST:PORT, so that changes made "
        "elsewhere show up here in about a second (docs/NOTIFICATIONS.md); a bare PORT "
        "listens on 127.0.0.1. Needs a BUCKET source and the rule's signing secret. Off when "
        "empty.",
    ),
    OptionSpec(
        "notify_secret_file",
        parse_path,
        "",
        "Absolute path of the file holding the notification rule's signing secret (mode 600; "
        "b2fs notify setup writes it). Default: the systemd credential b2fs-notify-secret.",
    ),
    OptionSpec(
        "notify_tls_cert",
        parse_path,
        "",
        "Serve the receiver over HTTPS with this certificate chain (PEM, absolute path); "
        "without it, plain HTTP (for a TLS reverse proxy in front).",
    ),
    OptionSpec(
        "notify_tls_key",
        parse_path,
        "",
        "The private key (PEM, absolute path) of notify_tls_cert.",
    ),
    OptionSpec(
        "notify_forward",
        parse_urls,
        "",
        "Forward every event B2 delivers here to the receivers of other mounts of the bucket "
        "(URLs separated by ';'): B2 sends an event to one URL only.",
    ),
    OptionSpec(
        "notify_dir_timeout",
        parse_duration,
        3600.0,
        "How long a listing is trusted while notifications are healthy (dir_timeout applies "
        "otherwise, and is used if longer).",
        kind="duration",
        minimum=0,
    ),
    OptionSpec(
        "notify_silence",
        parse_duration,
        3600.0,
        "Fall back to dir_timeout when no event has arrived for this long (0: never); the next "
        "event ends the fallback.",
        kind="duration",
        minimum=0,
    ),
    OptionSpec(
        "notify_poll",
        parse_duration,
        300.0,
        "How often the bucket's notification rules are read, to fall back to dir_timeout while "
        "the rule is suspended, disabled or gone (0: never; needs readBucketNotifications).",
        kind="duration",
        minimum=0,
    ),
]

OPTIONS: dict[str, OptionSpec] = {spec.name: spec for spec in _SPECS}

# Generic mount(8)/fstab words: meaningful to mount or systemd, not to b2fs, and accepted here
# so that fstab lines work unchanged. 'rw' is the opposite of 'ro'.
_IGNORED = {
    "defaults",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "nofail",
    "_netdev",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "diratime",
    "nodiratime",
    "async",
    "sync",
    "owner",
    "group",
    "comment",
}


@dataclass(frozen=True)
class MountOptions:
    ro: bool = False
    unlink: str = "hide"
    uid: int = field(default_factory=os.getuid)
    gid: int = field(default_factory=os.getgid)
    umask: int = 0o022
    file_mode: int = 0o666
    dir_mode: int = 0o777
    allow_other: bool = False
    cache_size: int = 4 * _GiB
    block_size: int = 1 * _MiB
    attr_timeout: float = 1.0
    dir_timeout: float = 10.0
    retry_time: float = 60.0
    large_file_threshold: int = 16 * _MiB
    part_size: int = 8 * _MiB
    upload_concurrency: int = 32
    writeback_delay: float = 1.0
    download_concurrency: int = 16
    list_concurrency: int = 16
    readahead: int = 128 * _MiB
    kernel_readahead: int = 4 * _MiB
    versions_dir: str = ".versions"
    version_at: int | None = None
    fsname: str = ""
    metrics: str = ""
    notify_listen: str = ""
    notify_secret_file: str = ""
    notify_tls_cert: str = ""
    notify_tls_key: str = ""
    notify_forward: str = ""
    notify_dir_timeout: float = 3600.0
    notify_silence: float = 3600.0
    notify_poll: float = 300.0

    @property
    def file_permissions(self) -> int:
        return self.file_mode & ~self.umask & 0o7777

    @property
    def dir_permissions(self) -> int:
        return self.dir_mode & ~self.umask & 0o7777

    def replace(self, **changes: Any) -> MountOptions:
        return dataclasses.replace(self, **changes)


def split_option_string(text: str) -> list[str]:
    """Split ``a=1,b,c=x`` into items (empty items from ',,' are dropped)."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_items(items: Iterable[str], *, source: str = "-o") -> dict[str, Any]:
    """Parse ``key[=value]`` items into typed values; raise OptionError naming the bad one."""
    values: dict[str, Any] = {}
    for item in items:
        key, has_value, raw = item.partition("=")
        key = key.strip()
        if key in _IGNORED or key.startswith(("x-systemd.", "x-gvfs-", "comment=")):
            continue
        if key == "rw" and not has_value:
            values["ro"] = False
            continue
        spec = OPTIONS.get(key)
        if spec is None:
            raise OptionError(f"{source}: unknown mount option {key!r}")
        if not has_value and spec.kind != "bool":
            raise OptionError(f"{source}: mount option {key!r} needs a value ({key}=...)")
        values[key] = convert(spec, raw if has_value else "true", source)
    return values


def convert(spec: OptionSpec, raw: Any, source: str) -> Any:
    try:
        return spec.convert(raw)
    except ValueError as exc:
        raise OptionError(f"{source}: option {spec.name}: {exc}") from None


def build(values: Mapping[str, Any], *, source: str = "-o") -> MountOptions:
    """Make MountOptions from parsed values, checking the rules that tie options together
    (``source`` names where the values came from, for the error)."""
    options = MountOptions(**{k: v for k, v in values.items() if v is not None})
    if options.part_size > options.large_file_threshold:
        raise OptionError(
            f"{source}: part_size ({options.part_size}) must not exceed large_file_threshold "
            f"({options.large_file_threshold})"
        )
    if options.versions_dir != "none" and (
        "/" in options.versions_dir or options.versions_dir in ("", ".", "..")
    ):
        raise OptionError(f"{source}: option versions_dir: {options.versions_dir!r} is not a name")
    if bool(options.notify_tls_cert) != bool(options.notify_tls_key):
        raise OptionError(f"{source}: notify_tls_cert and notify_tls_key go together")
    if options.notify_listen and options.version_at is not None:
        raise OptionError(
            f"{source}: notify_listen: a mount at version_at shows a past that never changes"
        )
    return options


def parse_option_strings(strings: Iterable[str]) -> MountOptions:
    """Parse every ``-o`` argument given on a command line into MountOptions."""
    values: dict[str, Any] = {}
    for text in strings:
        values.update(parse_items(split_option_string(text)))
    return build(values)


def _show_default(spec: OptionSpec) -> str:
    value = spec.default
    if value is None:
        return "yours" if spec.name in ("uid", "gid") else "none"
    if spec.kind == "size":
        for unit, size in (("G", _GiB), ("M", _MiB), ("K", _KiB)):
            if value >= size and value % size == 0:
                return f"{value // size}{unit}"
    if spec.name.endswith(("mode", "umask")):
        return f"{value:03o}"
    if isinstance(value, bool):
        return "on" if value else "off"
    if spec.kind == "duration":
        for unit, seconds in (("h", 3600), ("m", 60)):
            if value >= seconds and value % seconds == 0:
                return f"{value / seconds:g}{unit}"
        return f"{value:g}s"
    return str(value) if value != "" else '""'


def markdown_table() -> str:
    """The option table of docs/CONFIGURATION.md (a test keeps the two identical)."""
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for spec in _SPECS:
        meaning = spec.help + (f" One of: {', '.join(spec.choices)}." if spec.choices else "")
        rows.append(f"| `{spec.name}` | `{_show_default(spec)}` | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
