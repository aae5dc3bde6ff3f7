"""Fixtures of the notification tests: an emulator that gives up on a dead webhook quickly,
the filesystem tier's bucket and mounter, a signing secret in a file, and mounts with a
receiver (``NotifiedMount``) whose status and webhook the tests reach directly."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import string
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from core.conftest import core  # noqa: F401 (fixture: the filesystem core without FUSE)
from filesystem.conftest import BUCKET, B2View, b2, mounter  # noqa: F401 (fixtures)
from filesystem.mounting import Mount, Mounter, client_call

from b2fs.b2.client import B2Client
from b2fs.b2.models import NotificationRule, WebhookTarget
from b2fs.commands.status import request
from b2fs.emulator import Emulator

__all__ = [
    "BUCKET",
    "HOUR",
    "B2View",
    "NotifiedMount",
    "Secret",
    "event",
    "notified_mount",
    "payload",
    "post",
    "rules",
    "set_rule",
]

HOUR = ["dir_timeout=1h", "attr_timeout=1h"]
EVENT_TYPES = ("b2:ObjectCreated:*", "b2:HideMarkerCreated:*", "b2:ObjectDeleted:*")


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    """Webhook deliveries that fail are retried 5 times within about a second (not 15 s)."""
    return emulator_factory(webhook_backoff=0.05, webhook_timeout=2.0)


@dataclass
class Secret:
    value: str = field(repr=False)  # shown in no assertion message
    path: Path = Path()

    def sign(self, body: bytes) -> str:
        return "v1=" + hmac.new(self.value.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def secret(tmp_path: Path, secret_registry: Callable[[str], None]) -> Secret:
    value = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(32))
    secret_registry(value)
    path = tmp_path / "notify.secret"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return Secret(value, path)


@pytest.fixture(autouse=True)
def _runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`request()` finds the mounts' control sockets where the mounter puts them."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


class NotifiedMount:
    """A mount with a receiver: its status, its webhook URL, and the log checks."""

    def __init__(self, mount: Mount, secret: Secret) -> None:
        self.mount = mount
        self.path = mount.path
        self.secret = secret

    def status(self) -> dict[str, Any]:
        return request(self.path, {"command": "status"})

    def notify(self) -> dict[str, Any]:
        found: dict[str, Any] = self.status()["notify"]
        return found

    @property
    def url(self) -> str:
        return str(self.notify()["url"])

    def list_calls(self) -> int:
        return int(self.status()["list_calls"])

    def check_log(self) -> None:
        text = self.mount.log_text
        assert self.secret.value not in text
        assert "Traceback" not in text


def notified_mount(
    on: Mounter, secret: Secret, *options: str, listen: str = "127.0.0.1:0"
) -> NotifiedMount:
    mount = on.mount(
        BUCKET,
        options=[f"notify_listen={listen}", f"notify_secret_file={secret.path}", *options],
    )
    return NotifiedMount(mount, secret)


@pytest.fixture
def notified(
    mounter: Mounter,  # noqa: F811 (the fixture imported above)
    secret: Secret,
) -> Iterator[Callable[..., NotifiedMount]]:
    made: list[NotifiedMount] = []

    def make(*options: str) -> NotifiedMount:
        mount = notified_mount(mounter, secret, *options)
        made.append(mount)
        return mount

    yield make
    for mount in made:
        mount.check_log()


def set_rule(
    emulator: Emulator,
    url: str,
    secret: Secret,
    *,
    enabled: bool = True,
    name: str = "b2fs-mounts",
    prefix: str = "",
) -> None:
    """Make the bucket's only rule send every change to ``url``."""

    async def apply(client: B2Client) -> None:
        bucket = await client.get_bucket(BUCKET)
        rule = NotificationRule(
            name=name,
            event_types=EVENT_TYPES,
            target=WebhookTarget(url=url, hmac_sha256_signing_secret=secret.value),
            object_name_prefix=prefix,
            is_enabled=enabled,
        )
        await client.set_bucket_notification_rules(bucket.bucket_id, [rule])

    client_call(emulator, apply)


def rules(emulator: Emulator) -> list[NotificationRule]:
    async def fetch(client: B2Client) -> list[NotificationRule]:
        bucket = await client.get_bucket(BUCKET)
        return await client.get_bucket_notification_rules(bucket.bucket_id)

    return client_call(emulator, fetch)  # type: ignore[return-value]


def payload(events: Iterable[dict[str, Any]]) -> bytes:
    return json.dumps({"events": list(events)}, indent=2).encode()


def event(
    bucket_id: str,
    name: str,
    file_id: str,
    event_type: str = "b2:ObjectCreated:Upload",
    event_id: str | None = None,
) -> dict[str, Any]:
    return {
        "accountId": "account",
        "bucketId": bucket_id,
        "bucketName": BUCKET,
        "eventId": event_id or secrets.token_hex(32),
        "eventTimestamp": 1,
        "eventType": event_type,
        "eventVersion": 1,
        "matchedRuleName": "b2fs-mounts",
        "objectName": name,
        "objectSize": 0,
        "objectVersionId": file_id,
    }


def post(
    url: str,
    body: bytes,
    signature: str | None,
    *,
    method: str = "POST",
    context: Any = None,
) -> int:
    """Send one webhook request; returns the HTTP status."""
    headers = {"Content-Type": "application/json; charset=UTF-8"}
    if signature is not None:
        headers["X-Bz-Event-Notification-Signature"] = signature
    req = urllib.request.Request(url, data=body if method == "POST" else None, method=method)
    for key, value in headers.items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
