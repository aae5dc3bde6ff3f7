"""A tiny raw B2 client on httpx for the conformance tests (no b2fs.b2 code on purpose)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until ``condition()`` is truthy (returns it) or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


class B2:
    """Raw calls against an emulator: ``b2.call(op, **params)`` returns the httpx response."""

    def __init__(self, url: str, key_id: str, key: str, version: int = 3) -> None:
        self.url = url
        self.version = version
        self.http = httpx.Client(timeout=30, verify=False)
        self.key_id, self.key = key_id, key
        self.authorize()

    def authorize(self) -> dict[str, Any]:
        r = self.http.get(
            f"{self.url}/b2api/v{self.version}/b2_authorize_account", auth=(self.key_id, self.key)
        )
        assert r.status_code == 200, r.text
        self.auth = r.json()
        self.token = self.auth["authorizationToken"]
        self.account_id = self.auth["accountId"]
        return self.auth

    def close(self) -> None:
        self.http.close()

    def call(
        self, op: str, method: str = "POST", token: str | None = None, **params: Any
    ) -> httpx.Response:
        headers = {"Authorization": token if token is not None else self.token}
        url = f"{self.url}/b2api/v{self.version}/{op}"
        if method == "GET":
            return self.http.get(url, headers=headers, params=params)
        return self.http.post(url, headers=headers, json=params)

    def ok(self, op: str, **params: Any) -> dict[str, Any]:
        r = self.call(op, **params)
        assert r.status_code == 200, f"{op}: {r.status_code} {r.text}"
        doc: dict[str, Any] = r.json()
        return doc

    def error(self, op: str, status: int, code: str | None = None, **params: Any) -> dict[str, Any]:
        r = self.call(op, **params)
        assert r.status_code == status, f"{op}: expected {status}, got {r.status_code} {r.text}"
        doc: dict[str, Any] = r.json()
        assert doc["status"] == status
        if code is not None:
            assert doc["code"] == code, doc
        return doc

    def create_bucket(
        self, name: str = "test-bucket", kind: str = "allPrivate", **extra: Any
    ) -> str:
        doc = self.ok(
            "b2_create_bucket",
            accountId=self.account_id,
            bucketName=name,
            bucketType=kind,
            **extra,
        )
        bucket_id: str = doc["bucketId"]
        return bucket_id

    def upload(
        self,
        bucket_id: str,
        name: str,
        data: bytes = b"data",
        content_type: str = "application/octet-stream",
        sha1: str | None = None,
        info: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        expect: int = 200,
    ) -> dict[str, Any]:
        u = self.ok("b2_get_upload_url", bucketId=bucket_id)
        h = {
            "Authorization": u["authorizationToken"],
            "X-Bz-File-Name": quote(name.encode(), safe="/"),
            "Content-Type": content_type,
            "X-Bz-Content-Sha1": sha1 or hashlib.sha1(data).hexdigest(),
        }
        for k, v in (info or {}).items():
            h[f"X-Bz-Info-{k}"] = quote(v.encode(), safe="")
        h.update(headers or {})
        r = self.http.post(u["uploadUrl"], headers=h, content=data)
        assert r.status_code == expect, r.text
        doc: dict[str, Any] = r.json()
        return doc

    def start_large(self, bucket_id: str, name: str, **extra: Any) -> str:
        doc = self.ok(
            "b2_start_large_file",
            bucketId=bucket_id,
            fileName=name,
            contentType="application/octet-stream",
            **extra,
        )
        file_id: str = doc["fileId"]
        return file_id

    def upload_part(
        self, file_id: str, number: int, data: bytes, expect: int = 200, sha1: str | None = None
    ) -> dict[str, Any]:
        u = self.ok("b2_get_upload_part_url", fileId=file_id)
        r = self.http.post(
            u["uploadUrl"],
            headers={
                "Authorization": u["authorizationToken"],
                "X-Bz-Part-Number": str(number),
                "X-Bz-Content-Sha1": sha1 or hashlib.sha1(data).hexdigest(),
            },
            content=data,
        )
        assert r.status_code == expect, r.text
        doc: dict[str, Any] = r.json()
        return doc

    def download(self, path: str, token: str | None = None, **kw: Any) -> httpx.Response:
        headers = dict(kw.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = token
        elif "Authorization" not in headers and token is None:
            headers["Authorization"] = self.token
        return self.http.request(
            kw.pop("method", "GET"), f"{self.url}{path}", headers=headers, **kw
        )


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class EmulatorProcess:
    """``b2fs emulator`` as a subprocess: started, read, killed; always cleaned up."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        cmd = [sys.executable, "-m", "b2fs", "emulator", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first.startswith("listening on "):
            self.stop()
            raise AssertionError(f"emulator did not start: {first!r}")
        self.url = first.split()[-1]
        self.key_id = self.proc.stdout.readline().split(": ", 1)[1].strip()
        self.key = self.proc.stdout.readline().split(": ", 1)[1].strip()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=10)

    def stop(self) -> None:
        try:
            self.terminate()
        except subprocess.TimeoutExpired:
            self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
