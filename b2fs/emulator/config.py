"""Every setting of the emulator, with production values as defaults (one place)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Config:
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: str | None = None
    key_id: str | None = None
    key: str | None = None
    latency_ms: float = 0.0
    bandwidth_mbps: float = 0.0
    faults: str = ""
    fault_seed: int | None = None
    token_ttl: float = 86400.0
    # What b2_authorize_account advertises and what finish_large_file enforces. Tests may lower
    # them to exercise the large-file path with small files; production values are the default.
    min_part_size: int = 5_000_000
    recommended_part_size: int = 100_000_000
    max_part_size: int = 5_000_000_000
    max_simple_file_size: int = 5_000_000_000
    # Old strict file-name rules (leading/trailing '/', '//', 250-byte segments, backslash).
    strict_names: bool = False
    # Seconds a connection may stay silent: mid-request it is answered 408, between requests
    # (an idle keep-alive connection) it is closed.
    request_timeout: float = 60.0
    # Webhook delivery: attempts per batch and the first retry delay (doubles each time).
    webhook_attempts: int = 5
    webhook_backoff: float = 1.0
    webhook_timeout: float = 5.0
    max_buckets: int = 100
