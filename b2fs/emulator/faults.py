"""Fault injection: probabilistic rules and scripted sequences.

Spec syntax (``--faults`` and :meth:`Faults.add`): comma-separated ``TARGET:KIND[:PROBABILITY]``

* TARGET: an endpoint class (``upload`` = b2_upload_file + b2_upload_part, ``download`` = both
  downloads, ``auth`` = b2_authorize_account, ``api`` = every other JSON call, ``all``) or an
  exact operation name such as ``b2_list_file_names``.
* KIND: ``503`` (service_unavailable), ``500`` (internal_error), ``429`` (too_many_requests
  with ``Retry-After``, 1 s unless written ``429@SECONDS``; ``503@SECONDS`` adds one too),
  ``401`` (expired_auth_token), ``reset`` (the connection is reset in the middle of a body:
  a download or JSON answer sends half its body first, an upload reads half of the request).
* PROBABILITY: 0..1, default 1.

Example: ``upload:503:0.1,download:reset:0.02,b2_list_file_names:429@0:0.5``.

Clients may also ask for faults themselves with the ``X-Bz-Test-Mode`` request header
(B2-API.md §2.5): ``fail_some_uploads`` fails every second upload with 503,
``expire_some_account_authorization_tokens`` every second JSON call with 401
``expired_auth_token``, ``force_cap_exceeded`` makes writes answer 403 ``storage_cap_exceeded``
and downloads 403 ``download_cap_exceeded``.

Scripted faults (:meth:`Faults.script`) hit exactly the next ``count`` matching calls, before
any probabilistic rule is considered. Random draws come from one ``random.Random`` seeded with
``seed`` (``--fault-seed``), so a seeded run injects the same faults for the same call order.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

CLASSES = ("upload", "download", "auth", "api", "all")
KINDS = ("503", "500", "429", "401", "reset")
CAPPED_WRITES = ("b2_get_upload_url", "b2_start_large_file", "b2_copy_file", "b2_copy_part")


@dataclass(frozen=True)
class Fault:
    kind: str
    retry_after: int | None = None


@dataclass(frozen=True)
class FaultRule:
    target: str
    fault: Fault
    probability: float = 1.0


def _check_target(target: str) -> str:
    if target in CLASSES or (target.startswith("b2_") and target[3:].replace("_", "").isalpha()):
        return target
    raise ValueError(f"unknown fault target {target!r}: use {', '.join(CLASSES)} or b2_<call>")


def parse_kind(text: str) -> Fault:
    kind, _, seconds = text.partition("@")
    if kind not in KINDS:
        raise ValueError(f"unknown fault kind {kind!r}: use {', '.join(KINDS)}")
    if seconds:
        if kind not in ("429", "503") or not seconds.isdigit():
            raise ValueError(f"bad fault kind {text!r}: only 429@N and 503@N take seconds")
        return Fault(kind, int(seconds))
    return Fault(kind, 1 if kind == "429" else None)


def parse_spec(spec: str) -> list[FaultRule]:
    rules = []
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        fields = item.split(":")
        if len(fields) not in (2, 3):
            raise ValueError(f"bad fault {item!r}: expected TARGET:KIND[:PROBABILITY]")
        probability = 1.0
        if len(fields) == 3:
            try:
                probability = float(fields[2])
            except ValueError:
                raise ValueError(f"bad probability in fault {item!r}") from None
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"probability out of 0..1 in fault {item!r}")
        rules.append(FaultRule(_check_target(fields[0]), parse_kind(fields[1]), probability))
    return rules


def _matches(target: str, operation: str, endpoint_class: str) -> bool:
    return target in ("all", operation, endpoint_class)


class Faults:
    def __init__(self, spec: str = "", seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._rules = parse_spec(spec)
        self._scripted: list[list[object]] = []  # [target, Fault, remaining]
        self._random = random.Random(seed)
        self._test_counter = 0

    def add(self, spec: str) -> None:
        rules = parse_spec(spec)
        with self._lock:
            self._rules.extend(rules)

    def script(self, target: str, kind: str, count: int = 1) -> None:
        fault = parse_kind(kind)
        _check_target(target)
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._scripted.append([target, fault, count])

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._scripted.clear()

    def seed(self, seed: int | None) -> None:
        with self._lock:
            self._random.seed(seed)

    def test_mode(self, mode: str, operation: str, endpoint_class: str) -> tuple[int, str] | None:
        """(status, code) to answer for an ``X-Bz-Test-Mode`` request header, if any."""
        with self._lock:
            if mode == "fail_some_uploads" and endpoint_class == "upload":
                self._test_counter += 1
                return (503, "service_unavailable") if self._test_counter % 2 == 0 else None
            if mode == "expire_some_account_authorization_tokens" and endpoint_class == "api":
                self._test_counter += 1
                return (401, "expired_auth_token") if self._test_counter % 2 == 0 else None
        if mode == "force_cap_exceeded":
            if endpoint_class == "download":
                return 403, "download_cap_exceeded"
            if endpoint_class == "upload" or operation in CAPPED_WRITES:
                return 403, "storage_cap_exceeded"
        return None

    def pick(self, operation: str, endpoint_class: str) -> Fault | None:
        """The fault to inject into this call, if any (consumes scripted ones)."""
        with self._lock:
            for entry in self._scripted:
                target, fault, remaining = entry
                assert isinstance(target, str) and isinstance(fault, Fault)
                assert isinstance(remaining, int)
                if _matches(target, operation, endpoint_class):
                    if remaining <= 1:
                        self._scripted.remove(entry)
                    else:
                        entry[2] = remaining - 1
                    return fault
            for rule in self._rules:
                if _matches(rule.target, operation, endpoint_class) and (
                    rule.probability >= 1.0 or self._random.random() < rule.probability
                ):
                    return rule.fault
        return None
