"""The emulator's state and the lookups every handler shares.

:class:`App` owns the store, the token authority, the notifier and the configuration, creates
the account and master key on first start, and offers ``bucket()``/``file()`` lookups that
fail with the error codes B2 uses, plus :meth:`App.new_version_id` for ids and timestamps.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

from . import ids
from .auth import ALL_CAPABILITIES, Auth, Principal
from .config import Config
from .errors import B2Error, bad_bucket_id, bad_request, not_found
from .models import Bucket, FileVersion, Key
from .notify import Notifier
from .store import Store


class App:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store = Store(config.data_dir)
        self.store.recover()
        # Tokens expired for more than a day only matter as "expired" vs "bad": forget them.
        self.store.purge_tokens(int(time.time() * 1000) - 86_400_000)
        self.auth = Auth(self.store, config.token_ttl)
        self.url = ""  # set once the server is bound
        self.account_id, self.master_key = self._ensure_account()
        self.notifier = Notifier(self)
        self._uploads_lock = threading.Lock()
        self._uploads: set[str] = set()

    def _ensure_account(self) -> tuple[str, Key]:
        cfg = self.config
        account = self.store.get_meta("account_id")
        if account is None:
            account = ids.account_id()
            self.store.set_meta("account_id", account)
        master = self.store.master_key()
        wanted_id = cfg.key_id or (master.key_id if master else account)
        wanted_secret = cfg.key or (master.secret if master else ids.key_secret())
        if master is None or master.key_id != wanted_id or master.secret != wanted_secret:
            if master is not None:
                self.store.delete_key(master.key_id)
            master = Key(
                key_id=wanted_id,
                secret=wanted_secret,
                name="master",
                capabilities=list(ALL_CAPABILITIES),
                bucket_ids=None,
                name_prefix=None,
                expires_ms=None,
                seq=self.store.next_seq(),
                is_master=True,
            )
            self.store.put_key(master)
        return account, master

    def close(self) -> None:
        self.notifier.stop()
        self.store.close()

    # -- lookups -----------------------------------------------------------------------------

    def bucket(
        self, bucket_id: object, who: Principal | None = None, code: str = "bad_bucket_id"
    ) -> Bucket:
        if not isinstance(bucket_id, str) or not bucket_id:
            raise bad_request("bucketId is required")
        if who is not None:
            who.check_bucket(bucket_id)
        b = self.store.get_bucket(bucket_id)
        if b is None:
            if code == "bad_bucket_id":
                raise bad_bucket_id(bucket_id)
            raise B2Error(400, code, f"Invalid bucketId: {bucket_id}")
        return b

    def file(self, file_id: object, *, missing: str = "bad_request") -> FileVersion:
        """A version by id; ``missing`` is "bad_request" (400) or "not_found" (404)."""
        if not isinstance(file_id, str) or not file_id:
            raise bad_request("fileId is required")
        f = self.store.get_file(file_id)
        if f is None:
            if missing == "not_found":
                raise not_found(f"File not present: {file_id}")
            raise bad_request(f"Invalid fileId: {file_id}")
        return f

    def new_version(
        self, bucket_id: str, large: bool, ts_ms: int | None = None
    ) -> tuple[str, int, int]:
        """(fileId, upload timestamp, sequence number) for a new version."""
        seq = self.store.next_seq()
        ts = ts_ms if ts_ms is not None else self.store.next_ts(int(time.time() * 1000))
        return ids.file_id(bucket_id, seq, ts, large), ts, seq

    def uploads_in_flight(self) -> int:
        with self._uploads_lock:
            return len(self._uploads)

    @contextlib.contextmanager
    def uploading(self, token: str) -> Iterator[None]:
        """Mark an upload token busy for the duration of one upload (one at a time)."""
        with self._uploads_lock:
            if token in self._uploads:
                raise B2Error(
                    400,
                    "auth_token_limit",
                    # The real message carries the token; a prefix keeps it out of logs.
                    f"more than one upload using auth token {token[:16]}...",
                )
            self._uploads.add(token)
        try:
            yield
        finally:
            with self._uploads_lock:
                self._uploads.discard(token)

    def secrets(self) -> set[str]:
        out = self.store.all_secrets()
        for b in self.store.list_buckets():
            for r in b.rules:
                secret = (r.get("targetConfiguration") or {}).get("hmacSha256SigningSecret")
                if secret:
                    out.add(secret)
        return out
