"""Fixtures for the filesystem tiers: an emulator with a bucket, a B2 view to check against,
and real mounts that are always cleaned up."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from b2fs.b2.client import B2Client
from b2fs.b2.models import FileVersion
from b2fs.emulator import Emulator
from filesystem.mounting import Mounter, client_call

BUCKET = "test-bucket"


class B2View:
    """Synchronous checks straight on B2 (the emulator), outside the mount."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator
        self._bucket_ids: dict[str, str] = {}

    def _call(self, fn: Callable[[B2Client], Any]) -> Any:
        return client_call(self.emulator, fn)

    def bucket_id(self, bucket: str = BUCKET) -> str:
        if bucket not in self._bucket_ids:
            found = self._call(lambda c: c.get_bucket(bucket))
            self._bucket_ids[bucket] = found.bucket_id
        return self._bucket_ids[bucket]

    def create_bucket(self, name: str = BUCKET) -> str:
        bucket = self._call(lambda c: c.create_bucket(name, "allPrivate"))
        self._bucket_ids[name] = bucket.bucket_id
        return str(bucket.bucket_id)

    def upload(
        self,
        name: str,
        data: bytes,
        *,
        info: Mapping[str, str] | None = None,
        bucket: str = BUCKET,
    ) -> FileVersion:
        bucket_id = self.bucket_id(bucket)
        return self._call(  # type: ignore[no-any-return]
            lambda c: c.upload_file(bucket_id, name, data, file_info=info)
        )

    def read(self, name: str, bucket: str = BUCKET) -> bytes:
        return self._call(lambda c: c.download_bytes_by_name(bucket, name))  # type: ignore[no-any-return]

    def read_id(self, file_id: str) -> bytes:
        return self._call(lambda c: c.download_bytes_by_id(file_id))  # type: ignore[no-any-return]

    def names(self, prefix: str = "", bucket: str = BUCKET) -> dict[str, FileVersion]:
        bucket_id = self.bucket_id(bucket)

        async def fetch(c: B2Client) -> dict[str, FileVersion]:
            return {v.file_name: v async for v in c.list_file_names(bucket_id, prefix=prefix)}

        return self._call(fetch)  # type: ignore[no-any-return]

    def versions(self, prefix: str = "", bucket: str = BUCKET) -> list[FileVersion]:
        bucket_id = self.bucket_id(bucket)

        async def fetch(c: B2Client) -> list[FileVersion]:
            return [v async for v in c.list_file_versions(bucket_id, prefix=prefix)]

        return self._call(fetch)  # type: ignore[no-any-return]

    def unfinished(self, bucket: str = BUCKET) -> list[FileVersion]:
        bucket_id = self.bucket_id(bucket)

        async def fetch(c: B2Client) -> list[FileVersion]:
            return [v async for v in c.list_unfinished_large_files(bucket_id)]

        return self._call(fetch)  # type: ignore[no-any-return]

    def delete_version(self, version: FileVersion) -> None:
        assert version.file_id is not None
        file_id = version.file_id
        self._call(lambda c: c.delete_file_version(file_id, version.file_name))

    def hide(self, name: str, bucket: str = BUCKET) -> None:
        bucket_id = self.bucket_id(bucket)
        self._call(lambda c: c.hide_file(bucket_id, name))

    def calls(self) -> dict[str, int]:
        return self.emulator.stats.calls()


@pytest.fixture
def b2(emulator: Emulator) -> B2View:
    view = B2View(emulator)
    view.create_bucket()
    return view


@pytest.fixture
def mounter(emulator: Emulator, tmp_path: Path) -> Iterator[Mounter]:
    mounter = Mounter(emulator, tmp_path)
    try:
        yield mounter
    finally:
        problems = mounter.cleanup()
    assert not problems, "\n".join(problems)
