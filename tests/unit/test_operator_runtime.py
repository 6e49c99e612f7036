"""One operator runtime: built once at startup, torn down by the one cleanup handler."""

from __future__ import annotations

import asyncio

import kopf
import pytest

from kube_transcode_operator import main, metrics
from kube_transcode_operator.metrics import PoolFigures
from kube_transcode_operator.runtime import Runtime
from kube_transcode_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit


def test_main_wires_one_startup_and_one_cleanup() -> None:
    activities = [
        handler.activity.value
        for handler in kopf.get_default_registry()._activities.get_all_handlers()
        if handler.activity is not None and handler.fn.__module__ == main.__name__
    ]
    assert activities.count("startup") == 1
    assert activities.count("cleanup") == 1


def test_the_cleanup_stops_everything_the_runtime_started(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KT_SERVICEACCOUNT_DIR", raising=False)
    monkeypatch.setattr(metrics, "POOLS", PoolFigures())  # the poll writes here
    settings = OperatorSettings(
        rabbitmq_url="amqp://nobody:nothing@127.0.0.1:1/%2F",  # type: ignore[arg-type]
        queue_metrics_seconds=0.05,
    )

    async def run() -> Runtime:
        runtime = Runtime.build(settings)
        runtime.start()
        await asyncio.sleep(0.2)  # the poll ran, and found no broker
        await runtime.close()
        return runtime

    runtime = asyncio.run(run())
    assert runtime.queue_metrics._task is not None and runtime.queue_metrics._task.done()
    assert runtime.consumer._thread is not None and not runtime.consumer._thread.is_alive()
    exported = {s.name: s.value for family in metrics.POOLS.collect() for s in family.samples}
    assert exported["kube_transcode_operator_broker_up"] == 0
