"""Event notification rules and webhook delivery (§6.27, §6.28, §11)."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from emu_helpers import B2, wait_for

from b2fs.emulator import Emulator

SECRET = "A" * 16 + "b" * 16


class Receiver:
    """A local webhook endpoint recording every delivery; can be told to fail."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.deliveries.append((dict(self.headers.items()), body))
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def events(self) -> list[dict[str, Any]]:
        return [e for _, body in self.deliveries for e in json.loads(body)["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def rule(
    name: str = "my-rule-1", url: str = "https://example.com/hook", **extra: Any
) -> dict[str, Any]:
    target = {"targetType": "webhook", "url": url}
    target.update(extra.pop("target", {}))
    return {
        "name": name,
        "eventTypes": ["b2:ObjectCreated:*"],
        "isEnabled": True,
        "objectNamePrefix": "",
        "targetConfiguration": target,
        **extra,
    }


def test_set_and_get_rules(b2: B2) -> None:
    bucket = b2.create_bucket()
    rules = [
        rule("zeta-rule", objectNamePrefix="a/"),
        rule(
            "alpha-rule",
            objectNamePrefix="b/",
            maxEventsPerBatch=5,
            target={
                "hmacSha256SigningSecret": SECRET,
                "customHeaders": [{"name": "X-My", "value": "v"}],
            },
        ),
    ]
    doc = b2.ok("b2_set_bucket_notification_rules", bucketId=bucket, eventNotificationRules=rules)
    assert doc["bucketId"] == bucket
    got = doc["eventNotificationRules"]
    assert [r["name"] for r in got] == ["alpha-rule", "zeta-rule"]
    assert got[0]["isSuspended"] is False and got[0]["suspensionReason"] == ""
    assert got[0]["maxEventsPerBatch"] == 5
    assert got[0]["targetConfiguration"]["hmacSha256SigningSecret"] == SECRET
    assert got[1]["targetConfiguration"]["customHeaders"] is None
    assert got[1]["targetConfiguration"]["hmacSha256SigningSecret"] is None
    r = b2.call("b2_get_bucket_notification_rules", method="GET", bucketId=bucket)
    assert r.status_code == 200 and r.json() == doc
    assert (
        b2.ok("b2_set_bucket_notification_rules", bucketId=bucket, eventNotificationRules=[])[
            "eventNotificationRules"
        ]
        == []
    )
    b2.error("b2_get_bucket_notification_rules", 400, "bad_bucket_id", bucketId="0" * 24)


@pytest.mark.parametrize(
    ("rules", "code"),
    [
        ([rule(eventTypes=[])], "event_types_empty"),
        ([rule(eventTypes=["b2:ObjectCreated:Nope"])], "event_type_invalid"),
        (
            [rule(eventTypes=["b2:ObjectCreated:*", "b2:ObjectCreated:Upload"])],
            "event_type_overlap",
        ),
        ([rule("short")], "bad_request"),
        ([rule("b2-reserved")], "bad_request"),
        ([rule(url="http://example.com/hook")], "bad_request"),
        ([rule(url="ftp://example.com/hook")], "bad_request"),
        ([rule(target={"targetType": "sqs"})], "bad_request"),
        ([rule(target={"hmacSha256SigningSecret": "short"})], "bad_request"),
        ([rule(target={"customHeaders": [{"name": "X-Bz-Nope", "value": "v"}]})], "bad_request"),
        ([rule(maxEventsPerBatch=51)], "bad_request"),
        ([rule(isEnabled="yes")], "bad_request"),
        ([rule("rule-one"), rule("rule-one")], "bad_request"),
        (
            [
                rule("rule-one", objectNamePrefix="images"),
                rule("rule-two", objectNamePrefix="images/raw"),
            ],
            "bad_request",
        ),
        ([rule(f"rule-{i:03d}", objectNamePrefix=f"p{i}/") for i in range(26)], "bad_request"),
    ],
)
def test_rule_validation(b2: B2, rules: list[dict[str, Any]], code: str) -> None:
    bucket = b2.create_bucket()
    b2.error(
        "b2_set_bucket_notification_rules", 400, code, bucketId=bucket, eventNotificationRules=rules
    )


def test_overlap_message_and_disjoint_rules(b2: B2) -> None:
    bucket = b2.create_bucket()
    doc = b2.error(
        "b2_set_bucket_notification_rules",
        400,
        "bad_request",
        bucketId=bucket,
        eventNotificationRules=[
            rule("rule-one", objectNamePrefix="images"),
            rule("rule-two", objectNamePrefix="images/raw"),
        ],
    )
    assert doc["message"] == (
        "More than one event notification rule has overlapping prefixes "
        "(images),(images/raw) for the same event type: b2:ObjectCreated:*"
    )
    b2.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[
            rule("rule-one", objectNamePrefix="images"),
            rule("rule-two", objectNamePrefix="images/raw", eventTypes=["b2:ObjectDeleted:*"]),
        ],
    )


def test_webhook_delivery_and_signature(b2: B2, emulator: Emulator, receiver: Receiver) -> None:
    bucket = b2.create_bucket()
    b2.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[
            rule(
                "created-rule",
                url=receiver.url,
                objectNamePrefix="in/",
                target={
                    "hmacSha256SigningSecret": SECRET,
                    "customHeaders": [{"name": "X-Custom", "value": "yes"}],
                },
            ),
            rule(
                "other-events",
                url=receiver.url,
                objectNamePrefix="in/",
                eventTypes=["b2:ObjectDeleted:*", "b2:HideMarkerCreated:*"],
            ),
        ],
    )
    up = b2.upload(bucket, "in/a.txt", b"hello")
    b2.upload(bucket, "out/b.txt", b"ignored")
    wait_for(lambda: len(receiver.deliveries) >= 1, what="a webhook delivery")
    headers, body = receiver.deliveries[0]
    assert headers["User-Agent"] == "B2/EventNotifications"
    assert headers["Content-Type"].startswith("application/json")
    assert headers["X-Custom"] == "yes"
    expected = "v1=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Bz-Event-Notification-Signature"] == expected
    (event,) = json.loads(body)["events"]
    assert event["eventType"] == "b2:ObjectCreated:Upload"
    assert event["objectName"] == "in/a.txt" and event["objectSize"] == 5
    assert event["objectVersionId"] == up["fileId"]
    assert event["bucketName"] == "test-bucket" and event["bucketId"] == bucket
    assert event["accountId"] == b2.account_id and event["eventVersion"] == 1
    assert event["matchedRuleName"] == "created-rule"
    assert len(event["eventId"]) == 64 and event["eventTimestamp"] > 0
    b2.ok("b2_hide_file", bucketId=bucket, fileName="in/a.txt")
    b2.ok("b2_delete_file_version", fileId=up["fileId"], fileName="in/a.txt")
    b2.ok("b2_copy_file", sourceFileId=b2.upload(bucket, "in/c", b"c")["fileId"], fileName="in/d")
    wait_for(lambda: len(receiver.events()) == 5, what="all events")
    types = sorted(e["eventType"] for e in receiver.events())
    assert types == [
        "b2:HideMarkerCreated:Hide",
        "b2:ObjectCreated:Copy",
        "b2:ObjectCreated:Upload",
        "b2:ObjectCreated:Upload",
        "b2:ObjectDeleted:Delete",
    ]
    unsigned = [h for h, _ in receiver.deliveries if "X-Bz-Event-Notification-Signature" not in h]
    assert len(unsigned) == 2  # the rule without a secret
    wait_for(emulator.app.notifier.idle, what="the sender to go idle")


def test_large_file_event(b2: B2, receiver: Receiver) -> None:
    from emu_helpers import sha1

    bucket = b2.create_bucket()
    b2.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[rule("large-rule", url=receiver.url)],
    )
    f = b2.start_large(bucket, "big")
    b2.upload_part(f, 1, b"a" * 5_000_000)
    b2.upload_part(f, 2, b"b")
    b2.ok("b2_finish_large_file", fileId=f, partSha1Array=[sha1(b"a" * 5_000_000), sha1(b"b")])
    wait_for(lambda: receiver.events(), what="the event")
    assert receiver.events()[0]["eventType"] == "b2:ObjectCreated:MultipartUpload"
    assert receiver.events()[0]["objectSize"] == 5_000_001


def test_failing_webhook_is_retried_then_suspended(
    emulator_factory: Callable[..., Emulator],
    client_factory: Callable[..., B2],
    receiver: Receiver,
) -> None:
    emu = emulator_factory(webhook_attempts=3, webhook_backoff=0.01)
    c = client_factory(emu)
    bucket = c.create_bucket()
    c.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[rule("flaky-rule", url=receiver.url)],
    )
    receiver.status = 500
    c.upload(bucket, "x", b"x")  # the upload does not wait for the webhook

    def suspended() -> dict[str, Any] | None:
        rules = c.ok("b2_get_bucket_notification_rules", bucketId=bucket)
        r: dict[str, Any] = rules["eventNotificationRules"][0]
        return r if r["isSuspended"] else None

    r = wait_for(suspended, what="the rule to be suspended")
    assert "500" in r["suspensionReason"]
    assert len(receiver.deliveries) == 3
    receiver.status = 200
    c.upload(bucket, "y", b"y")
    wait_for(emu.app.notifier.idle, what="the sender to go idle")
    assert len(receiver.deliveries) == 3  # suspended rules get nothing
    c.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[rule("flaky-rule", url=receiver.url)],
    )
    c.upload(bucket, "z", b"z")
    wait_for(lambda: len(receiver.deliveries) == 4, what="delivery after re-enabling")


def test_batching(
    emulator_factory: Callable[..., Emulator], client_factory: Callable[..., B2], receiver: Receiver
) -> None:
    emu = emulator_factory()
    c = client_factory(emu)
    bucket = c.create_bucket()
    c.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[rule("batch-rule", url=receiver.url, maxEventsPerBatch=50)],
    )
    for i in range(20):
        c.upload(bucket, f"f{i}", b"x")
    wait_for(lambda: len(receiver.events()) == 20, what="20 events")
    assert all(1 <= len(json.loads(b)["events"]) <= 50 for _, b in receiver.deliveries)


def test_signing_secret_is_a_secret(b2: B2, emulator: Emulator) -> None:
    bucket = b2.create_bucket()
    b2.ok(
        "b2_set_bucket_notification_rules",
        bucketId=bucket,
        eventNotificationRules=[rule(target={"hmacSha256SigningSecret": SECRET})],
    )
    assert SECRET in emulator.secrets()
