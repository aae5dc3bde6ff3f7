"""The B2 operations, one module per area; importing this package registers them all."""

from . import buckets, downloads, files, keys, large, notifications, uploads
from .registry import OPERATIONS, Operation

__all__ = [
    "OPERATIONS",
    "Operation",
    "buckets",
    "downloads",
    "files",
    "keys",
    "large",
    "notifications",
    "uploads",
]
