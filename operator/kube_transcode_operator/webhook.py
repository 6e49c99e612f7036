"""Delivering a signed event to one receiver over HTTP: guarded addresses, bounded retries.

Retried (exponential backoff with full jitter, for `give_up_seconds` in total) on connection
errors, timeouts, 5xx, 408 and 429; any other answer settles it. The receiver's name is
resolved by a resolver that refuses every forbidden address, so the connection goes only to
an address that was checked (no window for DNS to change in between); a literal IP is
checked before connecting. Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

import aiohttp
import tenacity
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from kube_transcode.addresses import Network, first_forbidden
from kube_transcode_operator.notifications import is_retryable_status

log = logging.getLogger(__name__)
USER_AGENT: Final = "kube-transcode-operator"


class ForbiddenAddressError(OSError):
    """The receiver's name resolves to an address it may not be reached at."""


class RetryableError(Exception):
    """An answer that asks for another try (5xx, 408, 429)."""


class RejectedError(Exception):
    """An answer that settles the delivery without success (another 4xx, a redirect)."""


@dataclass(frozen=True)
class Policy:
    give_up_seconds: float
    timeout_seconds: float
    backoff_seconds: float
    max_backoff_seconds: float


def check_address(host: str, addresses: Sequence[str], allowed: Sequence[Network]) -> None:
    found = first_forbidden((ipaddress.ip_address(a.split("%")[0]) for a in addresses), allowed)
    if found is not None:
        ip, reason = found
        raise ForbiddenAddressError(f"{host} resolves to {ip}, a {reason} address")


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses the host if any address is forbidden."""

    def __init__(self, allowed: Sequence[Network]) -> None:
        self._inner = ThreadedResolver()
        self._allowed = tuple(allowed)

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        check_address(host, [r["host"] for r in results], self._allowed)
        return results

    async def close(self) -> None:
        await self._inner.close()


def check_literal(url: str, allowed: Sequence[Network]) -> None:
    """aiohttp connects to a literal IP without asking the resolver: check it here."""
    host = urlsplit(url).hostname or ""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return
    check_address(host, [host], allowed)


def session(allowed: Sequence[Network]) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(allowed), use_dns_cache=False)
    return aiohttp.ClientSession(connector=connector, headers={"User-Agent": USER_AGENT})


async def post_once(
    client: aiohttp.ClientSession, url: str, headers: dict[str, str], body: bytes, timeout: float
) -> int:
    async with client.post(
        url, data=body, headers=headers, allow_redirects=False,
        timeout=aiohttp.ClientTimeout(total=timeout),
    ) as response:  # fmt: skip
        await response.read()
        if 200 <= response.status < 300:
            return response.status
        if is_retryable_status(response.status):
            raise RetryableError(f"the receiver answered {response.status}")
        raise RejectedError(f"the receiver answered {response.status}")


def _retryable(error: BaseException) -> bool:
    if is_forbidden(error):
        return False
    return isinstance(error, RetryableError | aiohttp.ClientError | asyncio.TimeoutError | OSError)


@dataclass(frozen=True)
class Attempts:
    count: int
    error: Exception | None  # None: the receiver took it


async def deliver(
    client: aiohttp.ClientSession,
    url: str,
    headers: dict[str, str],
    body: bytes,
    policy: Policy,
    allowed: Sequence[Network],
) -> Attempts:
    """POST until the receiver takes it, an answer settles it or time is up."""
    try:
        check_literal(url, allowed)
    except ForbiddenAddressError as error:
        return Attempts(0, error)
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_before_delay(policy.give_up_seconds),
        wait=tenacity.wait_random_exponential(
            multiplier=policy.backoff_seconds, max=policy.max_backoff_seconds
        ),
        retry=tenacity.retry_if_exception(_retryable),
        reraise=True,
    )
    attempts = 0
    try:
        async for attempt in retrying:
            with attempt:
                attempts = attempt.retry_state.attempt_number
                await post_once(client, url, headers, body, policy.timeout_seconds)
    except Exception as error:  # every failure is reported in the condition
        log.info("webhook %s not delivered after %d attempts: %s", url, attempts, error)
        return Attempts(0 if is_forbidden(error) else attempts, error)
    return Attempts(attempts, None)


def describe(error: BaseException) -> str:
    forbidden = getattr(error, "os_error", None)
    if isinstance(forbidden, ForbiddenAddressError):
        return str(forbidden)
    if isinstance(error, asyncio.TimeoutError):
        return "no answer in time"
    return str(error) or type(error).__name__


def is_forbidden(error: BaseException) -> bool:
    return isinstance(error, ForbiddenAddressError) or isinstance(
        getattr(error, "os_error", None), ForbiddenAddressError
    )
