"""Mount settings from three places: the command line, the environment and a TOML file.

Precedence, key by key: command line > environment > file > the defaults of ``options.py``.
Every mount option is parsed by its spec in ``b2fs.options`` (``convert``), whichever place it
comes from, so a value means the same everywhere; this module only finds the values and says
where a bad one came from, in one line, before anything is mounted.

The file (``b2fs mount --config FILE``; the systemd unit reads ``/etc/b2fs/NAME.toml``) holds
flat keys: every mount option of ``options.py`` plus the settings of :data:`SETTINGS`::

    source = "my-bucket/photos"   # BUCKET[/PREFIX]; absent or "": every bucket
    mountpoint = "/srv/photos"
    key_file = "photos.key"       # relative paths are relative to this file
    cache_size = "20G"            # or a number of bytes
    dir_timeout = "30s"           # or a number of seconds
    umask = "027"                 # modes as octal strings (or TOML's 0o027; 27 is decimal)
    unlink = "delete"
    ro = false

TOML types are checked: a size or duration may be a string (parsed like ``-o``) or a number,
a mode an octal string or a number, a boolean must be ``true``/``false``, a count a number, a
string option a string; ``version_at`` may be a string, a number or a TOML date-time. An
unknown key, a wrong type or a bad value is a one-line :class:`~b2fs.options.OptionError`
naming the file and the key.

The environment: ``B2FS_<OPTION>`` (the option's name in upper case, e.g.
``B2FS_CACHE_SIZE=20G``) for every mount option, parsed like ``-o`` values, plus
``B2FS_CACHE_DIR`` and ``B2FS_KEY_FILE``; ``B2FS_ENDPOINT`` and the key variables are read by
``b2fs.b2.credentials``, which also decides between a key file and the other credential
sources. An empty variable counts as unset; other ``B2FS_*`` names are not read here.
"""

from __future__ import annotations

import datetime
import difflib
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from b2fs.b2.credentials import ENDPOINT_ENV
from b2fs.options import (
    OPTIONS,
    MountOptions,
    OptionError,
    OptionSpec,
    build,
    convert,
    parse_items,
    parse_octal,
    parse_timestamp,
    split_option_string,
)

ENV_PREFIX = "B2FS_"

# Settings that are not mount options: where to mount what, and how to reach B2.
# name -> (TOML type, meaning). Paths are strings; relative ones are relative to the file.
SETTINGS: dict[str, tuple[str, str]] = {
    "source": ("str", "BUCKET or BUCKET/PREFIX to mount; empty: every bucket the key lists"),
    "mountpoint": ("path", "the directory to mount on"),
    "endpoint": ("str", "URL where b2_authorize_account is called"),
    "cache_dir": ("path", "cache, staging and journal directory"),
    "key_file": ("path", "file holding keyID:applicationKey (mode 600)"),
    "debug": ("bool", "log every B2 request with its timing"),
}
# Settings that may also come from the environment (endpoint: see b2fs.b2.credentials).
ENV_SETTINGS = ("cache_dir", "key_file")


def env_name(name: str) -> str:
    """The environment variable of an option or setting: ``B2FS_CACHE_SIZE``."""
    return ENV_PREFIX + name.upper()


@dataclass
class Resolved:
    """Everything ``b2fs mount`` needs to know, merged from the three places."""

    source: str = ""
    mountpoint: Path | None = None
    endpoint: str | None = None  # explicit: None lets b2fs.b2.credentials decide
    cache_dir: Path | None = None
    key_file: Path | None = None
    debug: bool = False
    options: MountOptions = field(default_factory=MountOptions)
    config_file: Path | None = None


def _unknown(key: str, where: str) -> OptionError:
    known = [*OPTIONS, *SETTINGS]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return OptionError(f"{where}: unknown key {key!r}{hint}")


def _setting(name: str, raw: Any, where: str, base: Path | None) -> Any:
    kind = SETTINGS[name][0]
    if kind == "bool":
        if not isinstance(raw, bool):
            raise OptionError(f"{where}: key {name!r}: {raw!r} is not a boolean (true/false)")
        return raw
    if not isinstance(raw, str):
        raise OptionError(f"{where}: key {name!r}: {raw!r} is not a string")
    if kind == "path":
        if not raw.strip():
            raise OptionError(f"{where}: key {name!r}: the path is empty")
        path = Path(raw).expanduser()
        return path if path.is_absolute() or base is None else base / path
    return raw


def _check_toml_type(spec: OptionSpec, raw: Any, where: str) -> None:
    """Strings stand for values with a unit or a notation (sizes, durations, modes, moments);
    a TOML file gives booleans and counts as booleans and numbers."""
    if not isinstance(raw, str):
        return
    if spec.kind == "bool":
        raise OptionError(
            f"{where}: option {spec.name}: {raw!r} is a string, expected true or false"
        )
    if spec.kind == "int" and spec.parse not in (parse_octal, parse_timestamp):
        raise OptionError(f"{where}: option {spec.name}: {raw!r} is a string, expected a number")


def read_file(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings and the mount options a TOML file holds, checked and typed."""
    where = str(path)
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise OptionError(f"cannot read the configuration file {where}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"{where}: not valid TOML: {exc}") from None
    base = path.absolute().parent
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for key, raw in data.items():
        if key in SETTINGS:
            settings[key] = _setting(key, raw, where, base)
        elif key in OPTIONS:
            if isinstance(raw, datetime.datetime | datetime.date):
                raw = raw.isoformat()  # version_at = 2026-11-26T12:00:00Z
            _check_toml_type(OPTIONS[key], raw, where)
            options[key] = convert(OPTIONS[key], raw, where)
        else:
            raise _unknown(key, where)
    return settings, options


def from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings and the mount options given as ``B2FS_*`` variables."""
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}
    for name in ENV_SETTINGS:
        value = environ.get(env_name(name))
        if value:
            settings[name] = _setting(name, value, f"environment {env_name(name)}", None)
    for name, spec in OPTIONS.items():
        value = environ.get(env_name(name))
        if value:
            options[name] = convert(spec, value, f"environment {env_name(name)}")
    return settings, options


def resolve(
    *,
    config_file: Path | None,
    environ: Mapping[str, str],
    cli_settings: Mapping[str, Any],
    cli_options: Iterable[str],
) -> Resolved:
    """Merge the three places (command line > environment > file). ``cli_settings`` holds
    the settings given on the command line (None: not given); ``cli_options`` the ``-o``
    arguments."""
    file_settings: dict[str, Any] = {}
    file_options: dict[str, Any] = {}
    if config_file is not None:
        file_settings, file_options = read_file(config_file)
    env_settings, env_options = from_environment(environ)
    settings = {**file_settings, **env_settings}
    if environ.get(ENDPOINT_ENV):
        settings.pop("endpoint", None)  # the environment's endpoint beats the file's
    settings.update({k: v for k, v in cli_settings.items() if v is not None})
    values = {**file_options, **env_options}
    for text in cli_options:
        values.update(parse_items(split_option_string(text)))
    where = "mount options" if config_file is None else f"mount options (with {config_file})"
    return Resolved(
        source=str(settings.get("source") or "").strip("/"),
        mountpoint=settings.get("mountpoint"),
        endpoint=settings.get("endpoint"),
        cache_dir=settings.get("cache_dir"),
        key_file=settings.get("key_file"),
        debug=bool(settings.get("debug", False)),
        options=build(values, source=where),
        config_file=config_file,
    )
