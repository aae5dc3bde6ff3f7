"""The webhook receiver of a mount: only B2's signed payloads change anything; replays are
harmless; a burst of 1,000 events never blocks file operations; TLS and the secret's sources.

The tests post to the receiver themselves (they hold the secret), as B2 or an attacker would.
"""

from __future__ import annotations

import concurrent.futures
import os
import ssl
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from filesystem.mounting import Mounter
from filesystem.waiting import wait_until

from notify.conftest import (
    BUCKET,
    HOUR,
    B2View,
    NotifiedMount,
    Secret,
    event,
    notified_mount,
    payload,
    post,
)


def absent(path: Path) -> bool:
    return not os.path.lexists(path)


def test_a_forged_or_missing_signature_is_refused_and_changes_nothing(
    b2: B2View, notified: Callable[..., NotifiedMount]
) -> None:
    version = b2.upload("kept.txt", b"kept")
    assert version.file_id is not None
    b = notified(*HOUR)
    assert os.listdir(b.path) == ["kept.txt"]
    listed = b.list_calls()
    body = payload([event(b2.bucket_id(), "kept.txt", version.file_id, "b2:ObjectDeleted:Delete")])
    other = Secret("Z" * 32, b.secret.path)  # a secret that is not the rule's
    assert post(b.url, body, other.sign(body)) == 401
    assert post(b.url, body, None) == 401
    assert post(b.url, body, "v1=" + "0" * 64) == 401
    assert post(b.url, body, "v2=" + b.secret.sign(body)[3:]) == 401  # unknown version
    assert post(b.url, body + b" ", b.secret.sign(body)) == 401  # changed after signing
    # Not B2's kind of request at all.
    assert post(b.url, b"", None, method="GET") == 405
    big = b"x" * (300 * 1024)
    assert post(b.url, big, b.secret.sign(big)) == 413
    not_payload = b'{"hello": "world"}'
    assert post(b.url, not_payload, b.secret.sign(not_payload)) == 400

    # Nothing changed, nothing was listed again.
    assert (b.path / "kept.txt").read_bytes() == b"kept"
    assert os.listdir(b.path) == ["kept.txt"]
    assert b.list_calls() == listed
    notify = b.notify()
    assert notify["receiver"]["refused"] == 5 and notify["receiver"]["rejected"] == 3
    assert notify["events"]["received"] == 0 and notify["last_event_seconds_ago"] is None
    assert "refused 1 webhook request(s) with a missing or wrong signature" in b.mount.log_text
    human = b.mount.b2fs("status", str(b.path)).stdout
    assert "5 requests refused (bad signature)" in human and b.secret.value not in human

    # The header is a list: any v1 element that matches is enough (B2 may add signatures).
    test_event = payload([{**event(b2.bucket_id(), "x", "y"), "eventType": "b2:TestEvent"}])
    signature = f"v1={'0' * 64}, {b.secret.sign(test_event)}"
    assert post(b.url, test_event, signature) == 200
    assert b.notify()["events"]["ignored"] == 1


def test_a_replayed_event_is_harmless(b2: B2View, notified: Callable[..., NotifiedMount]) -> None:
    b2.upload("old.txt", b"old")
    b = notified(*HOUR)
    assert os.listdir(b.path) == ["old.txt"]
    version = b2.upload("new.txt", b"new")  # no rule: nothing tells B
    assert version.file_id is not None
    assert absent(b.path / "new.txt")  # B trusts its listing for an hour
    listed = b.list_calls()
    body = payload([event(b2.bucket_id(), "new.txt", version.file_id)])
    assert post(b.url, body, b.secret.sign(body)) == 200
    wait_until(lambda: (b.path / "new.txt").exists(), timeout=10, what="the event applied")
    assert b.list_calls() == listed + 1

    for _ in range(3):  # B2 delivers at least once: the same event again
        assert post(b.url, body, b.secret.sign(body)) == 200
    wait_until(lambda: b.notify()["events"]["duplicate"] == 3, timeout=10, what="the replays")
    assert sorted(os.listdir(b.path)) == ["new.txt", "old.txt"]
    assert (b.path / "new.txt").read_bytes() == b"new"
    assert b.list_calls() == listed + 1  # nothing was listed again
    assert b.notify()["events"]["applied"] == 1


def test_a_burst_of_1000_events_never_blocks_file_operations(
    b2: B2View, notified: Callable[..., NotifiedMount]
) -> None:
    data = os.urandom(2 << 20)
    b2.upload("big.bin", data)
    b2.upload("burst/seed.txt", b"seed")
    b = notified(*HOUR)
    assert os.listdir(b.path / "burst") == ["seed.txt"]  # the kernel knows the folder
    bucket_id = b2.bucket_id()
    bodies = [
        payload(event(bucket_id, f"burst/f{i:04d}.txt", f"id-{i}") for i in range(j, j + 10))
        for j in range(0, 1000, 10)
    ]
    done = threading.Event()
    answers: list[int] = []

    def burst() -> None:
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            answers.extend(pool.map(lambda body: post(b.url, body, b.secret.sign(body)), bodies))
        done.set()

    # File operations that reach the daemon (listing, xattrs, reads past the page cache)
    # while the burst arrives and is applied: each must complete, none may wait long.
    slowest = 0.0
    operations = 0
    sender = threading.Thread(target=burst)
    started = time.monotonic()
    sender.start()
    try:
        while not done.is_set() or b.notify()["queued"]:
            begun = time.monotonic()
            assert "big.bin" in os.listdir(b.path)
            assert os.getxattr(b.path / "big.bin", "user.b2.file_id")
            with open(b.path / "big.bin", "rb") as f:
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
                assert f.read(4096) == data[:4096]
            slowest = max(slowest, time.monotonic() - begun)
            operations += 1
            assert time.monotonic() - started < 60, "the burst was not absorbed in 60 s"
    finally:
        sender.join(timeout=120)
    absorbed = time.monotonic() - started
    print(
        f"1000 events in 100 requests absorbed in {absorbed:.2f}s; {operations} rounds of "
        f"file operations meanwhile, the slowest {slowest * 1000:.0f} ms"
    )
    assert answers == [200] * 100
    assert operations >= 1 and slowest < 5.0
    events = b.notify()["events"]
    assert events["received"] == 1000 and events["applied"] == 1000 and events["dropped"] == 0
    assert os.listdir(b.path / "burst") == ["seed.txt"]  # the names B2 does not have


def test_tls_receiver(b2: B2View, mounter: Mounter, secret: Secret, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    tls = [f"notify_tls_cert={cert}", f"notify_tls_key={key}"]
    key.chmod(0o644)
    refused = mounter.mount(
        BUCKET,
        options=["notify_listen=127.0.0.1:0", f"notify_secret_file={secret.path}", *tls],
        expect_failure=True,
    )
    assert "notify_tls_key" in refused.error and "mode 0644" in refused.error  # type: ignore[attr-defined]
    key.chmod(0o600)
    b = notified_mount(mounter, secret, *HOUR, f"notify_tls_cert={cert}", f"notify_tls_key={key}")
    assert b.url.startswith("https://127.0.0.1:")
    assert os.listdir(b.path) == []
    version = b2.upload("tls.txt", b"over tls")
    assert version.file_id is not None
    assert absent(b.path / "tls.txt")
    body = payload([event(b2.bucket_id(), "tls.txt", version.file_id)])
    context = ssl.create_default_context(cafile=str(cert))
    assert post(b.url, body, secret.sign(body), context=context) == 200
    wait_until(lambda: (b.path / "tls.txt").exists(), timeout=10, what="the event over TLS")
    with pytest.raises(OSError):  # plain HTTP is not spoken there
        post(b.url.replace("https://", "http://"), body, secret.sign(body))
    b.check_log()


def test_start_refusals_and_the_secret_from_a_file_or_a_systemd_credential(
    b2: B2View,
    mounter: Mounter,
    secret: Secret,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret.path.chmod(0o640)
    refused = mounter.mount(
        BUCKET,
        options=["notify_listen=127.0.0.1:0", f"notify_secret_file={secret.path}"],
        expect_failure=True,
    )
    error = refused.error  # type: ignore[attr-defined]
    assert "can be accessed by group or others (mode 0640)" in error and "chmod 600" in error
    assert secret.value not in error
    missing = mounter.mount(BUCKET, options=["notify_listen=127.0.0.1:0"], expect_failure=True)
    assert "notify_secret_file" in missing.error  # type: ignore[attr-defined]
    relative = mounter.mount(
        BUCKET,
        options=["notify_listen=127.0.0.1:0", "notify_secret_file=notify.secret"],
        expect_failure=True,
    )
    assert "is not an absolute path" in relative.error  # type: ignore[attr-defined]

    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "b2fs-notify-secret").write_text(secret.value + "\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    mount = mounter.mount(BUCKET, options=["notify_listen=127.0.0.1:0", *HOUR])
    b = NotifiedMount(mount, secret)
    body = payload([{**event(b2.bucket_id(), "x", "y"), "eventType": "b2:TestEvent"}])
    assert post(b.url, body, secret.sign(body)) == 200
    assert post(b.url, body, None) == 401
    b.check_log()
    # Every bucket at the root: an event names one bucket, and one rule serves one bucket.
    every = mounter.mount("", options=["notify_listen=127.0.0.1:0"], expect_failure=True)
    assert "notify_listen needs a BUCKET" in every.error  # type: ignore[attr-defined]
