"""Content storage: one immutable file per blob, written through a temp file and a rename.

Layout under the root: ``tmp/`` holds blobs being written, ``blobs/<2 hex>/<id>`` the finished
ones. A writer streams into ``tmp``, and :meth:`BlobWriter.commit` renames the file into place;
only then does the caller commit the metadata row that references it. A crash (kill -9) can
therefore leave a temp file or an unreferenced blob, never a row pointing at missing or partial
content: :meth:`BlobStore.cleanup` removes both at start-up.

Blobs are never modified after commit, so readers need no lock: a row may be deleted while a
download of its blob is running (the open file descriptor keeps the content readable).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterable


class BlobWriter:
    """Streams bytes into a temp file while computing SHA1 and MD5."""

    def __init__(self, store: BlobStore) -> None:
        self._store = store
        self.blob_id = secrets.token_hex(16)
        self.tmp_path = os.path.join(store.tmp_dir, self.blob_id)
        self._fd: int | None = os.open(self.tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.sha1 = hashlib.sha1()
        self.md5 = hashlib.md5()
        self.size = 0

    def write(self, data: bytes | memoryview) -> None:
        self.sha1.update(data)
        self.md5.update(data)
        assert self._fd is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self.size += len(data)

    def commit(self) -> str:
        """Move the finished content into place; returns its blob id."""
        self._close()
        final = self._store.path(self.blob_id)
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.replace(self.tmp_path, final)
        return self.blob_id

    def abort(self) -> None:
        self._close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_path)

    def _close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class BlobStore:
    def __init__(self, root: str) -> None:
        self.root = root
        self.tmp_dir = os.path.join(root, "tmp")
        self.blob_dir = os.path.join(root, "blobs")
        os.makedirs(self.tmp_dir, exist_ok=True)
        os.makedirs(self.blob_dir, exist_ok=True)

    def path(self, blob_id: str) -> str:
        return os.path.join(self.blob_dir, blob_id[:2], blob_id)

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    def delete(self, blob_ids: Iterable[str | None]) -> None:
        for blob_id in blob_ids:
            if blob_id:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path(blob_id))

    def cleanup(self, referenced: set[str]) -> int:
        """Remove temp files and blobs no metadata row references; returns how many."""
        removed = 0
        for name in os.listdir(self.tmp_dir):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.tmp_dir, name))
                removed += 1
        for sub in os.listdir(self.blob_dir):
            subdir = os.path.join(self.blob_dir, sub)
            if not os.path.isdir(subdir):
                continue
            for name in os.listdir(subdir):
                if name not in referenced:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(subdir, name))
                        removed += 1
        return removed
