"""Shared fixtures and the suite-wide secret check.

Every emulator a test starts registers the secrets it issued (master key, created keys, account,
upload and download tokens). After each test phase, `pytest_runtest_makereport` fails the test
if any of them appears in what the test printed or logged (captured at DEBUG level, see
pyproject.toml) or in its failure report: secrets must never reach a log line or an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from b2fs.emulator import Emulator

# Emulators started by the running test; their secrets are checked when its reports are made.
_live_emulators: list[Emulator] = []
# Extra secrets a test registers (for instance keys it minted itself).
_extra_secrets: set[str] = set()


def register_secret(secret: str) -> None:
    """Make the suite-wide check also look for ``secret`` in this test's output."""
    if secret:
        _extra_secrets.add(secret)


def _current_secrets() -> set[str]:
    secrets = set(_extra_secrets)
    for emu in _live_emulators:
        secrets.update(emu.secrets())
    # Very short strings would match by accident; real keys and tokens are long.
    return {s for s in secrets if len(s) >= 12}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    secrets = _current_secrets()
    if secrets:
        texts = [content for _, content in report.sections]
        if report.longrepr is not None:
            texts.append(str(report.longrepr))
        leaked = sorted({s[:4] for s in secrets for text in texts if s in text})
        if leaked:
            report.outcome = "failed"
            report.longrepr = (
                f"a secret leaked into the test's output or logs (secrets starting {leaked}); "
                "keys and tokens must never be printed or logged"
            )
    if report.when == "teardown":
        _live_emulators.clear()
        _extra_secrets.clear()


@pytest.fixture
def secret_registry() -> Callable[[str], None]:
    """Register a secret (a key a test minted, say) for the suite-wide leak check."""
    return register_secret


@pytest.fixture
def emulator_factory() -> Iterator[Callable[..., Emulator]]:
    """Start emulators in this process (each on a free port); all are stopped at teardown."""
    from b2fs.emulator import Emulator

    started: list[Emulator] = []

    def start(**options: Any) -> Emulator:
        emu = Emulator(**options)
        emu.start()
        started.append(emu)
        _live_emulators.append(emu)
        return emu

    try:
        yield start
    finally:
        for emu in started:
            emu.stop()


@pytest.fixture
def emulator(emulator_factory: Callable[..., Emulator]) -> Emulator:
    """An in-memory emulator on a free port, stopped after the test."""
    return emulator_factory()
