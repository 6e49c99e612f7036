"""A WorkerPool's status from what an autoscaler tick read and decided (pool_status, pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kube_transcode_operator.autoscale import SCALE_DOWN, SCALE_UP, STEADY, QueueDepth
from kube_transcode_operator.conditions import timestamp
from kube_transcode_operator.deletion_cost import WorkerPod
from kube_transcode_operator.pool_status import (
    PoolReading,
    observed,
    plan,
    queue_unreachable,
    scaled,
)
from kube_transcode_operator.pools import PoolSpec

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
SPEC = PoolSpec.from_body({"maxReplicas": 4, "scaleDownCooldownSeconds": 30})


def pod(name: str, *, unschedulable: bool = False, terminating: bool = False) -> WorkerPod:
    return WorkerPod(name, "Pending" if unschedulable else "Running", not unschedulable,
                     unschedulable, terminating, None)  # fmt: skip


def reading(
    ready: int = 0,
    unacked: int = 0,
    *,
    busy: int = 0,
    replicas: int = 1,
    ready_replicas: int = 1,
    pods: tuple[WorkerPod, ...] = (),
) -> PoolReading:
    deployment = {
        "spec": {"replicas": replicas},
        "status": {"replicas": replicas, "readyReplicas": ready_replicas},
    }
    return PoolReading("transcode.gpu", QueueDepth(ready, unacked), busy, pods, deployment)


def conditions(patch: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["message"]) for c in patch["conditions"]}


def test_a_tick_reports_the_queue_the_workers_and_the_decision() -> None:
    seen = reading(3, 1, busy=1, replicas=1, ready_replicas=1)
    decided = plan({}, seen, SPEC, T0)
    assert (decided.demand, decided.decision.replicas, decided.decision.reason) == (4, 4, SCALE_UP)
    patch = observed({}, reading=seen, plan=decided, moved=0, generation=2, now=T0)
    assert {k: v for k, v in patch.items() if k != "conditions"} == {
        "queue": "transcode.gpu",
        "queueDepth": {"ready": 3, "unacknowledged": 1, "busyWorkers": 1},
        "replicas": 1,
        "readyReplicas": 1,
        "unschedulableReplicas": 0,
        "desiredReplicas": 4,
        "demandReplicas": 4,
        "demandSince": "2026-11-22T12:00:00Z",
        "observedGeneration": 2,
    }
    assert conditions(patch) == {
        "QueueReachable": ("True", "Connected", "reading transcode.gpu"),
        "Available": ("False", "WorkersStarting", "1 of 4 workers ready"),
        "Schedulable": ("True", "Scheduled", "every worker has a node"),
    }


def test_only_what_changed_is_patched() -> None:
    seen = reading(1, 0, replicas=1, ready_replicas=1)
    first = observed({}, reading=seen, plan=plan({}, seen, SPEC, T0), moved=0, generation=1,
                     now=T0)  # fmt: skip
    later = T0 + timedelta(seconds=5)
    again = observed(first, reading=seen, plan=plan(first, seen, SPEC, later), moved=0,
                     generation=1, now=later)  # fmt: skip
    assert again == {}


def test_the_cooldown_counts_from_when_demand_last_changed() -> None:
    before = {"demandReplicas": 1, "demandSince": timestamp(T0)}
    idle = reading(1, 0, replicas=2, ready_replicas=2)
    waiting = plan(before | {"demandReplicas": 2}, idle, SPEC, T0 + timedelta(seconds=40))
    assert waiting.decision.replicas == 2  # demand just changed to 1: the cooldown starts
    assert waiting.demand_since == T0 + timedelta(seconds=40)
    shrinking = plan(before, idle, SPEC, T0 + timedelta(seconds=40))
    assert (shrinking.decision.replicas, shrinking.decision.reason) == (1, SCALE_DOWN)
    assert shrinking.demand_since == T0


def test_pods_without_a_node_make_the_pool_unschedulable() -> None:
    pods = (pod("w-1"), pod("w-2", unschedulable=True), pod("w-3", unschedulable=True,
                                                            terminating=True))  # fmt: skip
    seen = reading(0, 2, busy=2, replicas=2, ready_replicas=1, pods=pods)
    patch = observed({}, reading=seen, plan=plan({}, seen, SPEC, T0), moved=0, generation=1,
                     now=T0)  # fmt: skip
    assert patch["unschedulableReplicas"] == 1
    assert conditions(patch)["Schedulable"] == ("False", "Unschedulable",
                                                "1 workers found no node")  # fmt: skip


def test_moved_jobs_add_up() -> None:
    seen = reading(0, 1, busy=1)
    decided = plan({}, seen, SPEC, T0)
    assert decided.decision.reason == STEADY
    patch = observed({"movedToOnDemand": 2}, reading=seen, plan=decided, moved=3, generation=1,
                     now=T0)  # fmt: skip
    assert patch["movedToOnDemand"] == 5
    assert "movedToOnDemand" not in observed(
        {"movedToOnDemand": 2}, reading=seen, plan=decided, moved=0, generation=1, now=T0
    )


def test_an_unreachable_broker_and_a_scale_are_recorded() -> None:
    patch = queue_unreachable({}, error="connection refused", generation=3, now=T0)
    assert conditions(patch) == {
        "QueueReachable": ("False", "BrokerUnavailable", "connection refused")
    }
    decided = plan({}, reading(2, 0, replicas=0, ready_replicas=0), SPEC, T0)
    assert scaled(decided.decision, T0) == {
        "lastScaleTime": "2026-11-22T12:00:00Z",
        "lastScaleReason": SCALE_UP,
        "lastScaleMessage": "2 waiting, 0 running: 2 workers wanted, had 0",
    }
