"""The public, in-process face of the emulator: start, stop, faults, stats, secrets.

``Emulator(...)`` only records settings; :meth:`Emulator.start` opens the store, binds the
socket and serves from a background thread (returning once it listens); :meth:`stop` closes
every connection and the store. Extra keyword options are :class:`Config` fields (for tests:
``min_part_size``, ``recommended_part_size``, ``fault_seed``, ``request_timeout``,
``webhook_backoff``...).
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from .app import App
from .config import Config
from .faults import Faults
from .server import Server
from .stats import Stats


class Emulator:
    def __init__(
        self,
        data_dir: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        key_id: str | None = None,
        key: str | None = None,
        latency_ms: float = 0.0,
        bandwidth_mbps: float = 0.0,
        faults: str = "",
        token_ttl: float = 86400.0,
        **options: Any,
    ) -> None:
        self.config = Config(
            host=host,
            port=port,
            data_dir=data_dir,
            key_id=key_id,
            key=key,
            latency_ms=latency_ms,
            bandwidth_mbps=bandwidth_mbps,
            faults=faults,
            token_ttl=token_ttl,
            **options,
        )
        self.faults = Faults(faults, seed=self.config.fault_seed)
        self.stats = Stats()
        self._app: App | None = None
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self._final_secrets: set[str] = set()
        self.url = ""

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> Emulator:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        app = App(self.config)
        try:
            server = Server((self.config.host, self.config.port), app, self.faults, self.stats)
        except BaseException:
            app.close()
            raise
        host, port = server.server_address[:2]
        assert isinstance(host, str) and isinstance(port, int)
        self.url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
        app.url = self.url
        self._app, self._server = app, server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="b2-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, app, thread = self._server, self._app, self._thread
        if server is None or app is None:
            return
        self._final_secrets = self.secrets()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        app.close()
        self._server = self._app = self._thread = None

    def __enter__(self) -> Emulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- inspection and control --------------------------------------------------------------

    @property
    def app(self) -> App:
        if self._app is None:
            raise RuntimeError("the emulator is not running")
        return self._app

    @property
    def master_key_id(self) -> str:
        return self.app.master_key.key_id

    @property
    def master_key(self) -> str:
        return self.app.master_key.secret

    @property
    def account_id(self) -> str:
        return self.app.account_id

    def expire_tokens(self) -> None:
        """Every account token issued so far is now expired (401 expired_auth_token)."""
        self.app.auth.expire_account_tokens()

    def secrets(self) -> set[str]:
        """Every secret it knows: keys, tokens, webhook signing secrets."""
        if self._app is None:
            return set(self._final_secrets)
        return self._app.secrets() | self._final_secrets
