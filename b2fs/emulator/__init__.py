"""A local server of the Backblaze B2 Native API (v1 to v4), for tests, benchmarks and demos.

``from b2fs.emulator import Emulator`` runs it in-process; ``b2fs emulator`` runs it from the
command line (see :mod:`b2fs.emulator.cli` and docs/EMULATOR.md). It shares no code with the
client in ``b2fs.b2``: the two agree only through the wire format.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = ["Emulator"]


def __getattr__(name: str) -> Any:
    # Imported lazily so that `b2fs --help` does not pay for the server's imports.
    if name == "Emulator":
        from .emulator import Emulator

        return Emulator
    raise AttributeError(name)
