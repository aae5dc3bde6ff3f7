"""Where the application key comes from, and where ``b2_authorize_account`` is called.

Design
------
:func:`load_credentials` looks in this order and takes the first that is present:

1. an explicit key file (``--key-file PATH``): one line ``keyID:applicationKey``. It is refused
   when its mode lets the group or others read it (like ssh does with private keys);
2. systemd credentials (``LoadCredential=``/``SetCredential=``): when ``$CREDENTIALS_DIRECTORY``
   is set, the file ``b2-key-file`` there (``keyID:applicationKey``, as above) or else the pair
   of files ``b2-key-id`` and ``b2-key``. systemd makes that directory private to the service,
   so the mode of those files is not checked;
3. the environment, ``B2_APPLICATION_KEY_ID`` and ``B2_APPLICATION_KEY`` (the variables the
   official ``b2`` tool reads).

Surrounding whitespace (a trailing newline) is ignored. Errors (:class:`CredentialsError`)
say which source was wrong and how, never the key. :class:`Credentials` shows the key id and
the source in its ``repr``, never the key.

:func:`resolve_endpoint`: an explicit URL, else ``$B2FS_ENDPOINT``, else
``https://api.backblazeb2.com``.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from b2fs.b2.errors import CredentialsError

__all__ = [
    "DEFAULT_ENDPOINT",
    "ENDPOINT_ENV",
    "KEY_ENV",
    "KEY_ID_ENV",
    "Credentials",
    "load_credentials",
    "resolve_endpoint",
]

DEFAULT_ENDPOINT = "https://api.backblazeb2.com"
ENDPOINT_ENV = "B2FS_ENDPOINT"
KEY_ID_ENV = "B2_APPLICATION_KEY_ID"
KEY_ENV = "B2_APPLICATION_KEY"
CREDENTIALS_DIRECTORY_ENV = "CREDENTIALS_DIRECTORY"
SYSTEMD_KEY_FILE = "b2-key-file"
SYSTEMD_KEY_ID = "b2-key-id"
SYSTEMD_KEY = "b2-key"


@dataclass(frozen=True)
class Credentials:
    """An application key id and its secret key (not shown by ``repr``)."""

    key_id: str
    key: str = field(repr=False)
    source: str = "given"

    def __post_init__(self) -> None:
        if not self.key_id or not self.key:
            raise CredentialsError(f"{self.source}: the key id and the key must not be empty")
        for what, value in (("key id", self.key_id), ("key", self.key)):
            if any(c.isspace() or ord(c) < 32 for c in value):
                raise CredentialsError(f"{self.source}: the {what} contains whitespace")


def _parse_key_file_text(text: str, source: str) -> Credentials:
    content = text.strip()
    if "\n" in content:
        raise CredentialsError(f"{source}: expected one line 'keyID:applicationKey'")
    key_id, sep, key = content.partition(":")
    if not sep or not key_id.strip() or not key.strip():
        raise CredentialsError(f"{source}: expected the form 'keyID:applicationKey'")
    return Credentials(key_id.strip(), key.strip(), source)


def read_key_file(path: str | os.PathLike[str]) -> Credentials:
    """Read ``keyID:applicationKey`` from a file that only its owner may read."""
    path = Path(path)
    source = f"key file {str(path)!r}"
    try:
        with open(path, encoding="utf-8") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise CredentialsError(
                    f"{source} can be accessed by group or others (mode "
                    f"{stat.S_IMODE(mode):04o}); refusing it: run 'chmod 600 {path}'"
                )
            text = file.read(64 * 1024)
    except OSError as exc:
        raise CredentialsError(f"cannot read {source}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CredentialsError(f"{source} is not UTF-8 text") from None
    return _parse_key_file_text(text, source)


def _read_systemd(directory: Path) -> Credentials | None:
    key_file = directory / SYSTEMD_KEY_FILE
    id_file, secret_file = directory / SYSTEMD_KEY_ID, directory / SYSTEMD_KEY
    try:
        if key_file.exists():
            source = f"systemd credential {SYSTEMD_KEY_FILE!r}"
            return _parse_key_file_text(key_file.read_text(encoding="utf-8"), source)
        if id_file.exists() or secret_file.exists():
            source = f"systemd credentials {SYSTEMD_KEY_ID!r}/{SYSTEMD_KEY!r}"
            if not (id_file.exists() and secret_file.exists()):
                raise CredentialsError(f"{source}: both files are needed, one is missing")
            return Credentials(
                id_file.read_text(encoding="utf-8").strip(),
                secret_file.read_text(encoding="utf-8").strip(),
                source,
            )
    except OSError as exc:
        raise CredentialsError(
            f"cannot read the systemd credentials in ${CREDENTIALS_DIRECTORY_ENV}: {exc.strerror}"
        ) from None
    except UnicodeDecodeError:
        raise CredentialsError("the systemd credentials are not UTF-8 text") from None
    return None


def load_credentials(
    *,
    key_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Credentials:
    """The application key from the first source present (see the module docstring)."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        return read_key_file(key_file)
    directory = env.get(CREDENTIALS_DIRECTORY_ENV)
    if directory:
        found = _read_systemd(Path(directory))
        if found is not None:
            return found
    key_id, key = env.get(KEY_ID_ENV), env.get(KEY_ENV)
    if key_id or key:
        if not (key_id and key):
            missing = KEY_ENV if key_id else KEY_ID_ENV
            raise CredentialsError(f"environment: {missing} is not set (both are needed)")
        return Credentials(key_id.strip(), key.strip(), "environment")
    raise CredentialsError(
        f"no B2 application key: set {KEY_ID_ENV} and {KEY_ENV}, give a key file "
        f"(keyID:applicationKey, mode 600), or systemd credentials {SYSTEMD_KEY_FILE!r}"
    )


def resolve_endpoint(explicit: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """Where ``b2_authorize_account`` is called: ``explicit``, ``$B2FS_ENDPOINT`` or B2's."""
    env = os.environ if environ is None else environ
    url = explicit or env.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CredentialsError(f"endpoint {url!r} must start with http:// or https://")
    return url
