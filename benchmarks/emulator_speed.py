"""How fast is the B2 emulator, unshaped, on this machine?

    .venv/bin/python -m benchmarks.emulator_speed [--size-gib 1] [--parallel 8]
                                                   [--part-mb 100] [--json-seconds 5] [--quick]

Starts ``b2fs emulator`` as a subprocess (``--data`` in a temp directory) and measures it with
a light stdlib client (threads; the socket I/O releases the GIL), in a separate process from
the server:

1. downloads: ``--parallel`` clients each download the same ``--size-gib`` file at once;
2. part uploads: ``--parallel`` clients each upload parts of ``--part-mb`` MB (SHA1 sent in
   the header, as b2sdk does for parts) to one large file, two rounds;
3. JSON calls: ``b2_get_file_info`` over keep-alive connections, 1 and 4 clients.

For each it prints the aggregate rate, the emulator's CPU seconds per GiB (or per call) and
its peak resident memory (which must stay flat whatever the file size). Client and emulator
share the machine's cores, and so does anything else running: the 1-minute load average
before the run is reported so that a busy machine shows.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

MB = 1_000_000
GIB = 1 << 30
CHUNK = 1 << 20


# -- a minimal raw client (stdlib only; keeps the client's own cost low) ---------------------


def _conn(url: str) -> http.client.HTTPConnection:
    u = urlsplit(url)
    return http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port, timeout=600)


def _call(conn: http.client.HTTPConnection, token: str, op: str, **params: Any) -> Any:
    body = json.dumps(params)
    conn.request("POST", f"/b2api/v3/{op}", body=body, headers={"Authorization": token})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{op}: {r.status} {data[:200]!r}")
    return json.loads(data)


def _authorize(url: str, key_id: str, key: str) -> dict[str, Any]:
    import base64

    c = _conn(url)
    basic = base64.b64encode(f"{key_id}:{key}".encode()).decode()
    c.request("GET", "/b2api/v3/b2_authorize_account", headers={"Authorization": f"Basic {basic}"})
    r = c.getresponse()
    doc: dict[str, Any] = json.loads(r.read())
    c.close()
    return doc


def _upload_stream(url: str, headers: dict[str, str], source: str) -> Any:
    """POST the whole file ``source`` with sendfile (a light client: no copies in Python)."""
    u = urlsplit(url)
    c = _conn(url)
    c.putrequest("POST", u.path)
    for k, v in headers.items():
        c.putheader(k, v)
    c.putheader("Content-Length", str(os.stat(source).st_size))
    c.endheaders()
    assert c.sock is not None
    with open(source, "rb") as f:
        c.sock.sendfile(f)
    r = c.getresponse()
    data = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError(f"upload: {r.status} {data[:200]!r}")
    return json.loads(data)


# -- workers (one thread each) --------------------------------------------------------


def _download_worker(args: tuple[str, str, str, int]) -> int:
    url, token, path, size = args
    c = _conn(url)
    c.request("GET", path, headers={"Authorization": token})
    r = c.getresponse()
    buf = bytearray(CHUNK)
    got = 0
    while True:
        n = r.readinto(buf)
        if not n:
            break
        got += n
    c.close()
    if got != size:
        raise RuntimeError(f"short download: {got} of {size}")
    return got


_SOURCES: dict[int, tuple[str, str]] = {}


def _prepare_source(tmp: str, size: int) -> tuple[str, str]:
    """A file of ``size`` bytes to upload from, and its SHA1 (built outside timed regions)."""
    if size not in _SOURCES:
        path = os.path.join(tmp, f"source-{size}")
        sha = hashlib.sha1()
        block = _part_block(min(size, 8 * MB))
        with open(path, "wb") as f:
            left = size
            while left:
                piece = block[: min(left, len(block))]
                f.write(piece)
                sha.update(piece)
                left -= len(piece)
        _SOURCES[size] = (path, sha.hexdigest())
    return _SOURCES[size]


def _part_worker(args: tuple[str, str, str, list[int], int]) -> int:
    url, token, file_id, numbers, part_size = args
    source, digest = _SOURCES[part_size]
    conn = _conn(url)
    total = 0
    for n in numbers:
        target = _call(conn, token, "b2_get_upload_part_url", fileId=file_id)
        _upload_stream(
            target["uploadUrl"],
            {
                "Authorization": target["authorizationToken"],
                "X-Bz-Part-Number": str(n),
                "X-Bz-Content-Sha1": digest,
            },
            source,
        )
        total += part_size
    conn.close()
    return total


def _json_worker(args: tuple[str, str, str, float]) -> int:
    url, token, file_id, seconds = args
    conn = _conn(url)
    body = json.dumps({"fileId": file_id})
    headers = {"Authorization": token}
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        conn.request("POST", "/b2api/v3/b2_get_file_info", body=body, headers=headers)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise RuntimeError(f"get_file_info: {r.status}")
        count += 1
    conn.close()
    return count


def _part_block(size: int) -> bytes:
    seed = hashlib.sha256(b"b2fs-emulator-benchmark").digest() * (MB // 32)
    return (seed * (size // len(seed) + 1))[:size]


# -- measuring the emulator process ----------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _timed(pid: int, fn: Any, jobs: list[Any]) -> tuple[float, float, list[Any]]:
    """Run ``fn`` on every job at once (one thread each); (seconds, emulator CPU s, results)."""
    with ThreadPoolExecutor(len(jobs)) as pool:
        cpu0 = _cpu_seconds(pid)
        t0 = time.perf_counter()
        results = list(pool.map(fn, jobs))
        elapsed = time.perf_counter() - t0
        return elapsed, _cpu_seconds(pid) - cpu0, results


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size-gib", type=float, default=1.0, help="download file size (GiB)")
    p.add_argument("--parallel", type=int, default=8, help="parallel transfers")
    p.add_argument("--part-mb", type=int, default=100, help="upload part size (MB)")
    p.add_argument("--json-seconds", type=float, default=5.0, help="JSON-call measuring time")
    p.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = p.parse_args(argv)
    if args.quick:
        args.size_gib, args.part_mb, args.json_seconds = 0.05, 10, 1.0
    size = int(args.size_gib * GIB)
    part_size = args.part_mb * MB

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="b2fs-bench-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "b2fs", "emulator", "--listen", "127.0.0.1:0", "--data", tmp],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().split()[-1]
            key_id = proc.stdout.readline().split(": ", 1)[1].strip()
            key = proc.stdout.readline().split(": ", 1)[1].strip()
            with tempfile.TemporaryDirectory(prefix="b2fs-bench-client-") as client_tmp:
                report = _run(client_tmp, url, key_id, key, proc.pid, size, part_size, args)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(json.dumps(report, indent=2))
    return 0


def _run(
    client_tmp: str,
    url: str,
    key_id: str,
    key: str,
    pid: int,
    size: int,
    part_size: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    auth = _authorize(url, key_id, key)
    token = auth["authorizationToken"]
    account = auth["accountId"]
    conn = _conn(url)
    bucket = _call(
        conn,
        token,
        "b2_create_bucket",
        accountId=account,
        bucketName="bench-bucket",
        bucketType="allPrivate",
    )["bucketId"]

    # The download source: one file of `size` bytes, uploaded as a simple upload.
    source, digest = _prepare_source(client_tmp, size)
    target = _call(conn, token, "b2_get_upload_url", bucketId=bucket)
    src = _upload_stream(
        target["uploadUrl"],
        {
            "Authorization": target["authorizationToken"],
            "X-Bz-File-Name": "big.bin",
            "Content-Type": "application/octet-stream",
            "X-Bz-Content-Sha1": digest,
        },
        source,
    )
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}",
        "load_average_before": os.getloadavg()[0],
        "settings": {
            "parallel": args.parallel,
            "download_size_bytes": size,
            "part_size_bytes": part_size,
            "shaping": "none",
            "store": "--data (tmp)",
        },
    }
    _prepare_source(client_tmp, part_size)
    jobs = [(url, token, "/file/bench-bucket/big.bin", size)] * args.parallel
    _download_worker(jobs[0])  # warm the page cache
    elapsed, cpu, _ = _timed(pid, _download_worker, jobs)
    total = size * args.parallel
    report["downloads"] = {
        "MB_per_s": round(total / elapsed / MB, 1),
        "seconds": round(elapsed, 2),
        "emulator_cpu_s_per_GiB": round(cpu / (total / GIB), 2),
    }

    large = _call(
        conn,
        token,
        "b2_start_large_file",
        bucketId=bucket,
        fileName="parts.bin",
        contentType="application/octet-stream",
    )["fileId"]
    rounds = 2
    jobs = [
        (url, token, large, [w + 1 + r * args.parallel for r in range(rounds)], part_size)
        for w in range(args.parallel)
    ]
    elapsed, cpu, _ = _timed(pid, _part_worker, jobs)
    total = part_size * args.parallel * rounds
    report["part_uploads"] = {
        "MB_per_s": round(total / elapsed / MB, 1),
        "seconds": round(elapsed, 2),
        "emulator_cpu_s_per_GiB": round(cpu / (total / GIB), 2),
    }
    _call(conn, token, "b2_cancel_large_file", fileId=large)

    report["json_calls"] = {}
    for clients in (1, 4):
        jobs = [(url, token, src["fileId"], args.json_seconds)] * clients
        elapsed, cpu, counts = _timed(pid, _json_worker, jobs)
        calls = sum(counts)
        report["json_calls"][f"{clients}_clients"] = {
            "calls_per_s": round(calls / elapsed),
            "emulator_cpu_ms_per_call": round(cpu / calls * 1000, 3),
        }
    report["emulator_peak_rss_MB"] = round(_peak_rss_mb(pid), 1)
    conn.close()
    return report


if __name__ == "__main__":
    sys.exit(main())
