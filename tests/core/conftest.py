"""Tier 3: the filesystem core driven directly (no FUSE), on the emulator over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from b2fs.b2.client import B2Client
from b2fs.b2.retry import RetryPolicy
from b2fs.cache.blocks import BlockCache
from b2fs.emulator import Emulator
from b2fs.fs.filesystem import Filesystem
from b2fs.fs.inodes import ROOT_INODE
from b2fs.mount import assemble
from b2fs.objectstore import BucketRef
from b2fs.options import MountOptions
from b2fs.remote import B2ObjectStore
from b2fs.transfer.journal import Journal


@dataclass
class Core:
    fs: Filesystem
    store: B2ObjectStore
    client: B2Client
    bucket: BucketRef
    emulator: Emulator

    async def upload(self, name: str, data: bytes) -> None:
        await self.client.upload_file(self.bucket.id, name, data)

    async def ino(self, path: str) -> int:
        ino = ROOT_INODE
        for part in path.strip("/").split("/"):
            if part:
                ino = (await self.fs.lookup(ino, part.encode())).ino
        return ino

    async def write_file(self, path: str, data: bytes) -> None:
        parent, _, name = path.rpartition("/")
        fh, _ = await self.fs.create(await self.ino(parent), name.encode(), 0o644, 0o1, 0, 0)
        await self.fs.write(fh, 0, data)
        await self.fs.flush(fh)
        await self.fs.release(fh)

    async def read_file(self, path: str) -> bytes:
        fh, _ = await self.fs.open(await self.ino(path), 0)
        try:
            return await self.fs.read(fh, 0, 1 << 30)
        finally:
            await self.fs.release(fh)

    def calls(self, name: str) -> int:
        return self.emulator.stats.calls().get(name, 0)


async def make_core(
    emulator: Emulator,
    tmp_path: Path,
    nursery: trio.Nursery,
    client: B2Client,
    **options: object,
) -> Filesystem:
    mount_options = MountOptions(**{"writeback_delay": 0.0, **options})  # type: ignore[arg-type]
    store = B2ObjectStore(client)
    bucket = await store.find_bucket("core-bucket")
    cache = BlockCache(tmp_path / "blocks", mount_options.cache_size, mount_options.block_size)
    await cache.open()
    journal = Journal(tmp_path / "journal.db")
    await journal.open()
    fs = assemble(store, mount_options, cache, journal, tmp_path / "staging", bucket, "", False)
    await fs.start(nursery)
    return fs


@pytest.fixture
async def core(emulator: Emulator, tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[Core]:
    async with await B2Client.connect(
        emulator.master_key_id,
        emulator.master_key,
        endpoint=emulator.url,
        retry_policy=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.05),
    ) as client:
        await client.create_bucket("core-bucket", "allPrivate")
        fs = await make_core(emulator, tmp_path, nursery, client)
        store = B2ObjectStore(client)
        assert fs.root.bucket is not None
        yield Core(fs, store, client, fs.root.bucket, emulator)
        nursery.cancel_scope.cancel()
