"""Fixtures for the emulator's tests: a raw client bound to an in-process emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from emu_helpers import B2

from b2fs.emulator import Emulator


@pytest.fixture
def secret_registry(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """The suite-wide secret registry of tests/conftest.py (for keys of subprocesses)."""
    for plugin in request.config.pluginmanager.get_plugins():
        fn = getattr(plugin, "register_secret", None)
        if callable(fn) and hasattr(plugin, "_live_emulators"):
            return fn  # type: ignore[no-any-return]
    raise RuntimeError("tests/conftest.py register_secret not found")


@pytest.fixture
def client_factory(emulator_factory: Callable[..., Emulator]) -> Iterator[Callable[..., B2]]:
    made: list[B2] = []

    def make(
        emu: Emulator | None = None,
        version: int = 3,
        key_id: str | None = None,
        key: str | None = None,
        **options: Any,
    ) -> B2:
        emu = emu or emulator_factory(**options)
        c = B2(emu.url, key_id or emu.master_key_id, key or emu.master_key, version=version)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def b2(emulator: Emulator, client_factory: Callable[..., B2]) -> B2:
    """A master-key client (API v3) on a fresh in-memory emulator."""
    return client_factory(emulator)
