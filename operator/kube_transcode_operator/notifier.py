"""The deliveries in flight: one asyncio task per finished job generation, owned by the Runtime.

Handlers never wait on a receiver: they start a delivery and look at its result on a later
run. Results are kept for a while after they are done, so a handler that runs again before
its status write is seen does not deliver twice; a restart forgets them all, and the job's
status (no final Notified condition yet) makes the operator deliver again: at least once.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import kubernetes

from kube_transcode_operator import webhook
from kube_transcode_operator.notifications import (
    Delivery,
    Outcome,
    Receiver,
    build_event,
    request_of,
)
from kube_transcode_operator.settings import OperatorSettings

log = logging.getLogger(__name__)
KEEP_DONE_SECONDS: Final = 600.0
Key = tuple[str, int]  # uid, generation
ReadSecret = Callable[[Receiver], bytes | None]


@dataclass
class _Entry:
    outcome: Outcome
    task: asyncio.Task[list[Delivery]]
    done_at: float | None = None
    deliveries: list[Delivery] = field(default_factory=list)


def read_secret(receiver: Receiver) -> bytes | None:
    """The signing key, or None when the Secret or its key is missing."""
    try:
        secret = kubernetes.client.CoreV1Api().read_namespaced_secret(
            receiver.secret_name, receiver.secret_namespace
        )
    except kubernetes.client.ApiException as error:
        if error.status in (403, 404):
            return None
        raise
    value = (secret.data or {}).get(receiver.secret_key)
    return base64.b64decode(value) if value else None


class Notifier:
    def __init__(
        self,
        settings: OperatorSettings,
        read: ReadSecret = read_secret,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allowed = settings.notify_allowed_networks
        self._policy = webhook.Policy(
            give_up_seconds=settings.notify_give_up_seconds,
            timeout_seconds=settings.notify_timeout_seconds,
            backoff_seconds=settings.notify_backoff_seconds,
            max_backoff_seconds=settings.notify_max_backoff_seconds,
        )
        self._read = read
        self._clock = clock
        self._entries: dict[Key, _Entry] = {}
        self._session: aiohttp.ClientSession | None = None

    def outcome(self, key: Key) -> Outcome | None:
        entry = self._entries.get(key)
        return entry.outcome if entry else None

    def result(self, key: Key) -> list[Delivery] | None:
        """How every receiver's delivery ended; None while running or never started."""
        entry = self._entries.get(key)
        if entry is None or not entry.task.done():
            return None
        return entry.task.result()

    def ensure(
        self,
        key: Key,
        body: Mapping[str, Any],
        outcome: Outcome,
        receivers: list[Receiver],
    ) -> bool:
        """Start delivering unless this generation's delivery exists; True when started now."""
        self._prune()
        if key in self._entries:
            return False
        event = build_event(body, outcome, datetime.now(UTC))
        task = asyncio.get_running_loop().create_task(
            self._deliver_all(event, receivers), name=f"notify {key[0]}/{key[1]}"
        )
        entry = _Entry(outcome, task)
        task.add_done_callback(lambda _: setattr(entry, "done_at", self._clock()))
        self._entries[key] = entry
        return True

    async def _deliver_all(self, event: Any, receivers: list[Receiver]) -> list[Delivery]:
        return list(await asyncio.gather(*(self._deliver(event, r) for r in receivers)))

    async def _deliver(self, event: Any, receiver: Receiver) -> Delivery:
        try:
            secret = await asyncio.to_thread(self._read, receiver)
        except (kubernetes.client.ApiException, OSError) as error:
            return Delivery(receiver, False, 0, "NoSecret", f"cannot read the Secret: {error}")
        if secret is None:
            message = (
                f"no key {receiver.secret_key} in Secret "
                f"{receiver.secret_namespace}/{receiver.secret_name}"
            )
            return Delivery(receiver, False, 0, "NoSecret", message)
        headers, body = request_of(event, secret)
        attempts = await webhook.deliver(
            self._client(), receiver.url, headers, body, self._policy, self._allowed
        )
        if attempts.error is None:
            return Delivery(receiver, True, attempts.count, "Delivered")
        if webhook.is_forbidden(attempts.error):
            reason = "Refused"
        elif isinstance(attempts.error, webhook.RejectedError):
            reason = "Rejected"
        else:
            reason = "GaveUp"
        return Delivery(receiver, False, attempts.count, reason, webhook.describe(attempts.error))

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = webhook.session(self._allowed)
        return self._session

    def _prune(self) -> None:
        now = self._clock()
        for key, entry in list(self._entries.items()):
            if entry.done_at is not None and now - entry.done_at > KEEP_DONE_SECONDS:
                del self._entries[key]

    async def close(self) -> None:
        for entry in self._entries.values():
            entry.task.cancel()
        await asyncio.gather(*(e.task for e in self._entries.values()), return_exceptions=True)
        self._entries.clear()
        if self._session is not None:
            await self._session.close()
