"""One blocking AMQP connection used from asyncio: the operator's publisher and its queue
inspector each own one.

pika's BlockingConnection belongs to the thread that made it, so every call runs on a
single-thread executor and the handlers await it. A channel in confirm mode is opened on
first use; a queue is declared (the same declaration as the worker's) once per connection.
An AMQP or socket error drops the connection and is raised as BrokerUnavailableError; the
next call reconnects, so a broker restart costs one failed call, not an operator restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Concatenate, ParamSpec, TypeVar

import pika
import pika.exceptions

from kube_transcode.messages import declare_topology

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
Channel = Any  # pika's BlockingChannel (untyped)


class BrokerUnavailableError(Exception):
    """The broker could not be reached or failed the call; calling again is safe."""


class AmqpLink:
    def __init__(
        self,
        url: str,
        *,
        name: str,
        timeout_seconds: float,
        on_connect: Callable[[Channel], None] | None = None,
    ) -> None:
        self._params = pika.URLParameters(url)
        self._params.socket_timeout = timeout_seconds
        self._params.blocked_connection_timeout = timeout_seconds
        self._params.connection_attempts = 1
        self._on_connect = on_connect
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._connection: pika.BlockingConnection | None = None
        self._channel: Channel = None
        self._declared: set[str] = set()

    async def call(
        self, fn: Callable[Concatenate[Channel, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """fn(channel, *args) on the connection's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self._call(fn, *args, **kwargs))

    def declare_queue(self, channel: Channel, queue: str) -> None:
        """From within a call: the queue with its dead-letter and retry queues, once per
        connection."""
        if queue not in self._declared:
            declare_topology(channel, queue)
            self._declared.add(queue)

    def reopen_channel(self) -> Channel:
        """From within a call: a new channel on the same connection, after the broker closed
        the last one (as it does on a passive declare of a missing queue)."""
        assert self._connection is not None
        self._channel = self._open_channel(self._connection)
        return self._channel

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, self._disconnect)
        self._executor.shutdown(wait=True)

    def _call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        try:
            return fn(self._ensure_channel(), *args, **kwargs)
        except (pika.exceptions.AMQPError, OSError) as error:
            self._disconnect()
            raise BrokerUnavailableError(f"{type(error).__name__}: {error}") from error

    def _ensure_channel(self) -> Channel:
        if self._connection is not None and self._connection.is_open:
            # Serve heartbeats that arrived while idle; raises if the broker went away.
            self._connection.process_data_events(time_limit=0)
            if self._channel is not None and self._channel.is_open:
                return self._channel
        self._disconnect()
        self._connection = pika.BlockingConnection(self._params)
        self._channel = self._open_channel(self._connection)
        return self._channel

    def _open_channel(self, connection: pika.BlockingConnection) -> Channel:
        channel = connection.channel()
        channel.confirm_delivery()
        if self._on_connect is not None:
            self._on_connect(channel)
        return channel

    def _disconnect(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._declared.clear()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (pika.exceptions.AMQPError, OSError):
                log.debug("closing a broken connection failed", exc_info=True)
