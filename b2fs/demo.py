"""``make demo`` / ``make demo-stop``: b2fs in action without a Backblaze account.

``start`` runs the local B2 emulator with its data under ``./demo/``, fills a bucket with a few
files (through the B2 client, as any program would), mounts it at ``./demo-mount``, runs a short
tour of ordinary commands on the mount, and returns, leaving the emulator and the mount running
to explore. Running it again reuses what is already running. ``stop`` unmounts (after the
pending uploads) and stops the emulator.

The emulator's key is generated once and kept in ``demo/credentials`` (mode 600), which the
mount reads with ``--key-file``: it is never printed.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import trio

from b2fs.b2.client import B2Client
from b2fs.b2.credentials import read_key_file

ROOT = Path.cwd()
DEMO = ROOT / "demo"
MOUNT = ROOT / "demo-mount"
BUCKET = "demo-bucket"
CREDENTIALS = DEMO / "credentials"
URL_FILE = DEMO / "emulator.url"
PID_FILE = DEMO / "emulator.pid"

FILES = {
    "README.txt": b"Welcome to b2fs: this bucket lives in a local B2 emulator.\n",
    "notes/todo.txt": b"- try cp, mv, rm, mkdir on this mount\n- look at b2fs status\n",
    "notes/ideas.md": b"# Ideas\n\nMount a real bucket with B2_APPLICATION_KEY_ID/KEY.\n",
    "data/numbers.csv": b"".join(f"{i},{i * i}\n".encode() for i in range(1000)),
}


def _say(text: str) -> None:
    print(f"\033[1m==> {text}\033[0m" if sys.stdout.isatty() else f"==> {text}", flush=True)


def _b2fs(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "b2fs", *args], check=check, text=True, capture_output=not check
    )


def _credentials() -> tuple[str, str]:
    if not CREDENTIALS.exists():
        DEMO.mkdir(exist_ok=True)
        key_id = "demo" + secrets.token_hex(8)
        key = "K" + secrets.token_urlsafe(22)[:30]
        fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{key_id}:{key}\n")
    creds = read_key_file(CREDENTIALS)
    return creds.key_id, creds.key


def _emulator_running() -> str | None:
    try:
        url = URL_FILE.read_text().strip()
        pid = int(PID_FILE.read_text())
        os.kill(pid, 0)
        httpx.get(f"{url}/b2api/v3/b2_authorize_account", timeout=2)
    except (OSError, ValueError, httpx.HTTPError):
        return None
    return url


def _start_emulator(key_id: str, key: str) -> str:
    env = dict(os.environ, B2FS_EMULATOR_KEY_ID=key_id, B2FS_EMULATOR_KEY=key)
    log_path = DEMO / "emulator.log"
    log_path.write_bytes(b"")
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "b2fs",
                "emulator",
                "--listen",
                "127.0.0.1:0",
                "--data",
                str(DEMO / "emulator-data"),
            ],
            env=env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        for line in log_path.read_text(errors="replace").splitlines():
            if line.startswith("listening on "):
                url = line.split()[-1]
                URL_FILE.write_text(url + "\n")
                PID_FILE.write_text(f"{process.pid}\n")
                return url
        time.sleep(0.1)
    raise SystemExit(f"the emulator did not start; see {log_path}")


async def _fill_bucket(url: str, key_id: str, key: str) -> None:
    async with await B2Client.connect(key_id, key, endpoint=url) as client:
        buckets = await client.list_buckets(bucket_name=BUCKET)
        bucket = buckets[0] if buckets else await client.create_bucket(BUCKET, "allPrivate")
        names = {v.file_name async for v in client.list_file_names(bucket.bucket_id)}
        for name, data in FILES.items():
            if name not in names:
                await client.upload_file(
                    bucket.bucket_id,
                    name,
                    data,
                    file_info={"src_last_modified_millis": str(int(time.time() * 1000))},
                )


def _mounted() -> bool:
    return os.path.ismount(MOUNT)


def _tour() -> None:
    steps = [
        f"ls -l {MOUNT.name}",
        f"cat {MOUNT.name}/README.txt",
        f"ls -lR {MOUNT.name}/notes",
        f"wc -l {MOUNT.name}/data/numbers.csv",
        f"mkdir -p {MOUNT.name}/copies",
        f"cp {MOUNT.name}/notes/todo.txt {MOUNT.name}/copies/todo-copy.txt",
        f"sh -c 'date > {MOUNT.name}/copies/written-by-the-demo.txt'",
        f"ls -l {MOUNT.name}/copies",
    ]
    for step in steps:
        print(f"$ {step}", flush=True)
        subprocess.run(shlex.split(step), cwd=ROOT, check=True)


def start() -> int:
    key_id, key = _credentials()
    url = _emulator_running()
    if url is None:
        _say("starting the local B2 emulator (data in demo/emulator-data)")
        url = _start_emulator(key_id, key)
    else:
        _say(f"the emulator is already running at {url}")
    _say(f"filling bucket {BUCKET!r} through the B2 API")
    trio.run(_fill_bucket, url, key_id, key)
    MOUNT.mkdir(exist_ok=True)
    if _mounted():
        _say(f"{MOUNT.name} is already mounted")
    else:
        _say(f"mounting {BUCKET} at ./{MOUNT.name}")
        _b2fs(
            "mount",
            BUCKET,
            str(MOUNT),
            "--endpoint",
            url,
            "--key-file",
            str(CREDENTIALS),
            "--cache-dir",
            str(DEMO / "cache"),
        )
    _say("a short tour with ordinary programs")
    _tour()
    print()
    _say("the emulator and the mount keep running: explore ./demo-mount")
    print(f"    status:  .venv/bin/b2fs status {MOUNT.name}")
    print(f"    B2 view: B2_ENVIRONMENT={url} .venv/bin/b2 ... (key in demo/credentials)")
    print("    stop:    make demo-stop")
    return 0


def stop() -> int:
    if _mounted():
        _say("unmounting ./demo-mount (after its pending uploads)")
        _b2fs("unmount", str(MOUNT), check=False)
    try:
        pid = int(PID_FILE.read_text())
        os.kill(pid, signal.SIGTERM)
        _say("stopped the emulator")
    except (OSError, ValueError):
        _say("the emulator was not running")
    PID_FILE.unlink(missing_ok=True)
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["start"]:
        return start()
    if argv[1:] == ["stop"]:
        return stop()
    print("usage: python -m b2fs.demo start|stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
