"""The data the workloads use: local sources to write from, and files put on B2 beforehand.

Local (in the run's temporary directory, made once):

- ``source.bin``: random bytes, the size of the sequential read and write workloads (the big
  file on B2 has the same bytes, so random reads can be checked against it);
- ``small/``: the small files copied in by workload 5 (random bytes each);
- ``stdlib.tar``: the Python standard library's ``.py`` files (the interpreter the venv runs
  on, without ``site-packages`` and ``__pycache__``), for workload 7.

On B2 (uploaded straight to the emulator, unshaped, before any profile runs):

- ``read/big.bin``: ``source.bin`` as a large file (read by workloads 1-3);
- ``tree/dNNN/fNNNN``: the folders and files listed by workload 6.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import trio

from b2fs.b2.client import B2Client
from b2fs.b2.sources import FileSource
from benchmarks.emulator import Api

BUCKET = "bench-bucket"
BIG_NAME = "read/big.bin"
TREE_PREFIX = "tree/"
_CHUNK = 8 << 20


@dataclass
class LocalData:
    source: Path
    source_size: int
    small_dir: Path
    small_files: dict[str, int]
    tar: Path
    tar_files: dict[str, int]  # path inside the tar -> size
    tar_dirs: int


@dataclass
class RemoteData:
    bucket_id: str
    big_file_id: str
    big_size: int
    tree_folders: int
    tree_files: int
    extra: dict[str, str] = field(default_factory=dict)


def _random_file(path: Path, size: int) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, _CHUNK)
            f.write(os.urandom(n))
            left -= n


def stdlib_files(limit: int | None) -> tuple[Path, list[Path]]:
    """The standard library's directory and its ``.py`` files (sorted; the first ``limit``)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[Path] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(
            d for d in dirs if d not in ("site-packages", "dist-packages", "__pycache__")
        )
        found.extend(Path(directory) / name for name in sorted(files) if name.endswith(".py"))
    return root, found[:limit] if limit is not None else found


def make_local(
    tmp: Path, source_size: int, small_count: int, small_size: int, stdlib_limit: int | None
) -> LocalData:
    source = tmp / "source.bin"
    _random_file(source, source_size)
    small_dir = tmp / "small"
    small_dir.mkdir()
    small_files = {}
    for i in range(small_count):
        name = f"f{i:05d}.bin"
        (small_dir / name).write_bytes(os.urandom(small_size))
        small_files[name] = small_size
    root, files = stdlib_files(stdlib_limit)
    tar_path = tmp / "stdlib.tar"
    tar_files: dict[str, int] = {}
    dirs: set[str] = set()
    top = f"python{sysconfig.get_python_version()}"
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in files:
            name = f"{top}/{path.relative_to(root)}"
            tar.add(path, arcname=name, recursive=False)
            tar_files[name] = path.stat().st_size
            parent = os.path.dirname(name)
            while parent:
                dirs.add(parent)
                parent = os.path.dirname(parent)
    return LocalData(source, source_size, small_dir, small_files, tar_path, tar_files, len(dirs))


async def _upload_remote(
    url: str, key_id: str, key: str, local: LocalData, folders: int, per_folder: int
) -> RemoteData:
    async with await B2Client.connect(key_id, key, endpoint=url, max_connections=32) as client:
        bucket = await client.create_bucket(BUCKET, "allPrivate")
        bucket_id = bucket.bucket_id
        size = local.source_size
        part = 64 << 20
        if size > part:
            started = await client.start_large_file(bucket_id, BIG_NAME)
            assert started.file_id is not None
            large_id = started.file_id
            count = (size + part - 1) // part
            sha1s: list[str] = [""] * count

            async def put_part(number: int) -> None:
                offset = (number - 1) * part
                length = min(part, size - offset)
                done = await client.upload_part(
                    large_id, number, FileSource(local.source, offset, length)
                )
                sha1s[number - 1] = done.content_sha1

            async with trio.open_nursery() as nursery:
                for number in range(1, count + 1):
                    nursery.start_soon(put_part, number)
            version = await client.finish_large_file(large_id, sha1s)
        else:
            version = await client.upload_file(bucket_id, BIG_NAME, FileSource(local.source))
        assert version.file_id is not None
        return RemoteData(bucket_id, version.file_id, size, folders, folders * per_folder)


def _upload_tree(url: str, key_id: str, key: str, bucket_id: str, names: list[str]) -> None:
    """Upload many tiny files from threads with the stdlib client (lighter per call than
    httpx under trio, which matters for 10,000 files on two shared cores)."""

    def worker(share: list[str]) -> None:
        api = Api(url, key_id, key)
        try:
            target = api.call("b2_get_upload_url", bucketId=bucket_id)
            for name in share:
                body = hashlib.sha1(name.encode()).hexdigest().encode() + b"\n"
                api.upload(target, name, body)
        finally:
            api.close()

    threads = 8
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(worker, [names[i::threads] for i in range(threads)]))


def make_remote(
    url: str, key_id: str, key: str, local: LocalData, folders: int, per_folder: int
) -> RemoteData:
    """Create the bucket and upload the read file and the listing tree (unshaped emulator)."""
    remote = trio.run(_upload_remote, url, key_id, key, local, folders, per_folder)
    names = [
        f"{TREE_PREFIX}d{d:03d}/f{f:04d}.txt" for d in range(folders) for f in range(per_folder)
    ]
    _upload_tree(url, key_id, key, remote.bucket_id, names)
    return remote
