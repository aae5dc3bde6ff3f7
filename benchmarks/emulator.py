"""The emulator as a subprocess, with one network profile, and a small synchronous B2 client.

Every profile runs on the same ``--data`` directory, so the data sets are made once (unshaped)
and each profile restarts the emulator with its shaping. The master key is generated at the
first start and kept in the data directory.

:class:`Api` is a minimal stdlib client for the runner's own checks (is a written file on B2
yet?). It counts its calls so that they can be taken out of the emulator's statistics.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from benchmarks import procs


@dataclass(frozen=True)
class Profile:
    name: str
    latency_ms: float
    bandwidth_mbps: float

    def describe(self) -> str:
        if not self.latency_ms and not self.bandwidth_mbps:
            return "unshaped (loopback, no added latency, no bandwidth cap)"
        per_conn = self.bandwidth_mbps / 8
        return (
            f"--latency-ms {self.latency_ms:g} --bandwidth-mbps {self.bandwidth_mbps:g} "
            f"({self.latency_ms:g} ms before every response, {per_conn:g} MB/s per connection "
            "each way)"
        )


class EmulatorProcess:
    """``b2fs emulator --data DIR`` with a profile's shaping, until :meth:`stop`."""

    def __init__(self, data_dir: str, profile: Profile, log_path: str) -> None:
        self.data_dir = data_dir
        self.profile = profile
        self.log_path = log_path
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.key_id = ""
        self.key = ""

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        command = [sys.executable, "-m", "b2fs", "emulator", "--listen", "127.0.0.1:0"]
        command += ["--data", self.data_dir]
        if self.profile.latency_ms:
            command += ["--latency-ms", f"{self.profile.latency_ms:g}"]
        if self.profile.bandwidth_mbps:
            command += ["--bandwidth-mbps", f"{self.profile.bandwidth_mbps:g}"]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                start_new_session=True,
            )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline()
        if not first.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"the emulator did not start (see {self.log_path}): {first!r}")
        self.url = first.split()[-1]
        self.key_id = self.proc.stdout.readline().split(": ", 1)[1].strip()
        self.key = self.proc.stdout.readline().split(": ", 1)[1].strip()

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    # -- statistics --------------------------------------------------------------------------

    def calls(self) -> dict[str, int]:
        with urllib.request.urlopen(f"{self.url}/_emulator/stats", timeout=30) as answer:
            calls: dict[str, int] = json.loads(answer.read())["calls"]
        return calls

    def reset_calls(self) -> None:
        request = urllib.request.Request(f"{self.url}/_emulator/stats/reset", data=b"{}")
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.pid)

    def bytes_sent(self) -> int:
        return procs.bytes_written(self.pid)


class Api:
    """A few B2 calls over one keep-alive connection (stdlib only), each counted."""

    def __init__(self, url: str, key_id: str, key: str) -> None:
        self.url = url
        self.counts: Counter[str] = Counter()
        parts = urlsplit(url)
        self._conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, 600)
        basic = base64.b64encode(f"{key_id}:{key}".encode()).decode()
        auth = self._request("GET", "b2_authorize_account", None, f"Basic {basic}")
        self.token: str = auth["authorizationToken"]
        self.account_id: str = auth["accountId"]

    def _request(self, method: str, op: str, body: Any, authorization: str) -> Any:
        self.counts[op] += 1
        payload = json.dumps(body) if body is not None else None
        headers = {"Authorization": authorization}
        for attempt in range(3):
            try:
                self._conn.request(method, f"/b2api/v3/{op}", body=payload, headers=headers)
                answer = self._conn.getresponse()
                data = answer.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self._conn.close()
                if attempt == 2:
                    raise
        if answer.status != 200:
            raise RuntimeError(f"{op}: {answer.status} {data[:300]!r}")
        return json.loads(data)

    def call(self, op: str, **params: Any) -> Any:
        return self._request("POST", op, params, self.token)

    def upload(self, target: dict[str, Any], name: str, body: bytes) -> None:
        """``b2_upload_file`` of ``body`` to an upload URL from ``b2_get_upload_url`` (same
        host as the API: the emulator's)."""
        self.counts["b2_upload_file"] += 1
        headers = {
            "Authorization": target["authorizationToken"],
            "X-Bz-File-Name": quote(name, safe="/"),
            "Content-Type": "b2/x-auto",
            "X-Bz-Content-Sha1": hashlib.sha1(body).hexdigest(),
            "Content-Length": str(len(body)),
        }
        self._conn.request("POST", urlsplit(target["uploadUrl"]).path, body, headers)
        answer = self._conn.getresponse()
        data = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"upload of {name!r}: {answer.status} {data[:300]!r}")

    def close(self) -> None:
        self._conn.close()

    def bucket_id(self, name: str) -> str:
        found = self.call("b2_list_buckets", accountId=self.account_id, bucketName=name)
        return str(found["buckets"][0]["bucketId"])

    def list_names(self, bucket_id: str, prefix: str) -> dict[str, dict[str, Any]]:
        """Every visible file under ``prefix`` (recursively): name -> file object."""
        files: dict[str, dict[str, Any]] = {}
        start: str | None = None
        while True:
            params: dict[str, Any] = {"bucketId": bucket_id, "prefix": prefix}
            params["maxFileCount"] = 10_000
            if start is not None:
                params["startFileName"] = start
            page = self.call("b2_list_file_names", **params)
            for item in page["files"]:
                if item["action"] == "upload":
                    files[item["fileName"]] = item
            start = page.get("nextFileName")
            if start is None:
                return files

    def wait_for(
        self,
        bucket_id: str,
        prefix: str,
        expected: dict[str, int],
        *,
        timeout: float,
        interval: float = 0.2,
    ) -> float:
        """Poll until every name of ``expected`` (relative to ``prefix``) is on B2 with its
        size; returns when it was seen (time.perf_counter()). Raises after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            files = self.list_names(bucket_id, prefix)
            seen = time.perf_counter()
            missing = [
                name
                for name, size in expected.items()
                if files.get(prefix + name, {}).get("contentLength") != size
            ]
            if not missing:
                return seen
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(missing)} of {len(expected)} files not on B2 after {timeout:.0f} s "
                    f"(first: {missing[0]!r})"
                )
            time.sleep(interval)
