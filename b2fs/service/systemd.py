"""systemd's notification protocol (sd_notify), without libsystemd.

``notify("READY=1")`` sends a datagram to ``$NOTIFY_SOCKET`` when systemd (or a test) set it;
otherwise it does nothing. Abstract socket names (starting with '@') are supported.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send one notification; returns whether a socket was there to receive it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(message.encode())
    return True
