"""The operator's AMQP connection against the real RabbitMQ: a connection the broker drops
costs at most one failed call, and an unreachable broker is a clear error, never a hang."""

from __future__ import annotations

import asyncio
import socket
from urllib.parse import quote

import pytest
import requests

from kube_transcode_devstack.waiting import wait_until
from kube_transcode_operator.amqp_link import AmqpLink, BrokerUnavailableError, Channel
from tests.harness.broker import Vhost

pytestmark = pytest.mark.integration
QUEUE = "transcode.link-test"


def connections(vhost: Vhost) -> list[str]:
    resp = requests.get(
        f"{vhost.management_url}/api/vhosts/{quote(vhost.name, safe='')}/connections",
        auth=vhost.auth,
        timeout=10,
    )
    resp.raise_for_status()
    return [str(c["name"]) for c in resp.json()]


def close_from_the_broker(vhost: Vhost, name: str) -> None:
    requests.delete(
        f"{vhost.management_url}/api/connections/{quote(name, safe='')}",
        auth=vhost.auth,
        headers={"X-Reason": "test: broker side close"},
        timeout=10,
    ).raise_for_status()


async def outcome(link: AmqpLink) -> str:
    def waiting(channel: Channel) -> int:
        link.declare_queue(channel, QUEUE)
        count: int = channel.queue_declare(QUEUE, passive=True).method.message_count
        return count

    try:
        return f"ok {await link.call(waiting)}"
    except BrokerUnavailableError:
        return "unavailable"


def test_a_dropped_connection_costs_at_most_one_call(vhost: Vhost) -> None:
    link = AmqpLink(vhost.url, name="test-link", timeout_seconds=5)

    async def scenario() -> list[str]:
        first = await outcome(link)
        assert first == "ok 0"
        assert vhost.queue(QUEUE)["durable"], "declared as the worker declares it"
        [name] = wait_until("the link's connection", lambda: connections(vhost), 30)
        close_from_the_broker(vhost, name)  # the management API lists it for a while longer
        after = [await outcome(link) for _ in range(3)]
        await link.close()
        return after

    after = asyncio.run(scenario())
    assert after[1:] == ["ok 0", "ok 0"], after
    assert after[0] in ("unavailable", "ok 0"), after


def test_an_unreachable_broker_is_an_error_not_a_hang() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here once the socket is closed
    link = AmqpLink(f"amqp://guest:guest@127.0.0.1:{port}/", name="test-link", timeout_seconds=2)

    async def attempt() -> None:
        try:
            with pytest.raises(BrokerUnavailableError):
                await asyncio.wait_for(link.call(lambda channel: None), timeout=10)
        finally:
            await link.close()

    asyncio.run(attempt())
