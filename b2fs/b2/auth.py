"""Account authorization: ``b2_authorize_account`` and the single-flight renewal of the token.

Design
------
:class:`Authorizer` holds the application key and the current :class:`AuthState` (the account
token plus the parsed v3 answer: API and download URLs, part sizes, what the key may do). The
client reads the state at the start of each attempt and, when B2 answers 401
``bad_auth_token``/``expired_auth_token``, calls :meth:`Authorizer.reauthorize` with the token
that failed. Renewal is single-flight: the first caller with a stale token becomes the leader
and calls ``b2_authorize_account``; every other caller that arrives meanwhile (with the same
stale token) waits for that one result; a caller whose stale token was already replaced
returns at once. So a burst of N requests failing together costs exactly one authorize.

If the leader fails (the key was revoked: :class:`B2BadCredentials`), the waiters raise a copy
of the same error; if the leader is cancelled, one of the waiters takes over. A refused key is
never retried (no loop); 5xx/429/connection failures of the authorize call itself go through
the retry policy like any call.

The key and every token are registered with the transport's redactor, and no state object
shows the token in its ``repr``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from b2fs.b2.errors import B2Error, B2UnexpectedResponse
from b2fs.b2.models import AccountAuthorization
from b2fs.b2.retry import RetryPolicy
from b2fs.b2.transport import Transport

__all__ = ["API_VERSION", "AuthState", "Authorizer"]

log = logging.getLogger(__name__)

API_VERSION = "v3"
ENDPOINT = "b2_authorize_account"


@dataclass(frozen=True)
class AuthState:
    """The account token (not shown by ``repr``) with the authorization it came with."""

    token: str = field(repr=False)
    account: AccountAuthorization


class Authorizer:
    """Authorizes the account and renews its token once per expiry (see module docstring)."""

    def __init__(
        self,
        transport: Transport,
        key_id: str,
        key: str,
        realm_url: str,
        retry_policy: RetryPolicy,
    ) -> None:
        self._transport = transport
        self._key_id = key_id
        self._key = key
        self._realm_url = realm_url.rstrip("/")
        self._retry = retry_policy
        self._state: AuthState | None = None
        self._refreshing: trio.Event | None = None
        self._failure: B2Error | None = None
        transport.redact.add(key)

    def __repr__(self) -> str:
        return f"<Authorizer realm={self._realm_url!r} authorized={self._state is not None}>"

    @property
    def state(self) -> AuthState | None:
        """The current authorization, or ``None`` before the first one succeeded."""
        return self._state

    async def authorize(self) -> AuthState:
        """Call ``b2_authorize_account`` (with retries of temporary failures)."""
        state = await self._retry.call(
            self._authorize_once, endpoint=ENDPOINT, stats=self._transport.stats
        )
        self._state = state
        return state

    async def current(self) -> AuthState:
        """The current state, authorizing first if there is none yet."""
        state = self._state
        if state is not None:
            return state
        return await self.reauthorize(None)

    async def reauthorize(self, stale_token: str | None) -> AuthState:
        """Replace ``stale_token`` (single flight); returns the state to retry with."""
        while True:
            state = self._state
            if state is not None and state.token != stale_token:
                return state
            event = self._refreshing
            if event is None:
                return await self._lead_refresh(stale_token is not None)
            await event.wait()
            failure = self._failure
            state = self._state
            if failure is not None and (state is None or state.token == stale_token):
                raise failure.copy()

    async def _lead_refresh(self, is_renewal: bool) -> AuthState:
        event = self._refreshing = trio.Event()
        self._failure = None
        try:
            if is_renewal:
                self._transport.stats.record_reauthorization()
                log.info("the account token was refused as expired or invalid; re-authorizing")
            return await self.authorize()
        except B2Error as exc:
            self._failure = exc
            raise
        finally:
            self._refreshing = None
            event.set()

    async def _authorize_once(self, attempt: int) -> AuthState:
        data = await self._transport.json_call(
            ENDPOINT,
            "GET",
            f"{self._realm_url}/b2api/{API_VERSION}/{ENDPOINT}",
            auth=(self._key_id, self._key),
        )
        try:
            account, token = AccountAuthorization.from_v3_json(data)
        except B2UnexpectedResponse as exc:
            exc.endpoint = ENDPOINT
            raise
        self._transport.redact.add(token)
        allowed = account.allowed
        log.debug(
            "authorized: API %s, %d capabilities%s",
            account.api_url,
            len(allowed.capabilities),
            f", restricted to bucket {allowed.bucket_name!r} prefix {allowed.name_prefix!r}"
            if allowed.bucket_id
            else "",
        )
        return AuthState(token=token, account=account)
