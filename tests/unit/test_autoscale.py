"""The autoscaler's pure parts: the decision, deletion costs, the Deployment, spot fallback."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kube_transcode_operator.autoscale import (
    ABOVE_MAX,
    BUSY_FLOOR,
    COOLDOWN,
    SCALE_DOWN,
    SCALE_TO_ZERO,
    SCALE_UP,
    STEADY,
    QueueDepth,
    decide_replicas,
    demand_replicas,
    demand_since,
)
from kube_transcode_operator.deletion_cost import (
    BUSY_COST,
    DELETION_COST,
    IDLE_COST,
    WorkerPod,
    busy_workers,
    cost_changes,
)
from kube_transcode_operator.fallback import (
    MOVED_REASON,
    JobView,
    capacity_missing,
    jobs_to_move,
    moved_status,
    running_workers,
)
from kube_transcode_operator.placement import SPOT_TOLERATIONS
from kube_transcode_operator.pools import OnDemandFallback, PoolSpec, build_deployment

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def spec(**fields: Any) -> PoolSpec:
    return PoolSpec.from_body({"maxReplicas": 3, "scaleDownCooldownSeconds": 30, **fields})


def decide(
    ready: int, unacked: int, *, busy: int = 0, current: int, since: float = 0, **fields: Any
) -> tuple[int, str]:
    decision = decide_replicas(
        QueueDepth(ready, unacked),
        busy,
        current,
        spec(**fields),
        NOW - timedelta(seconds=since),
        NOW,
    )
    return decision.replicas, decision.reason


# ------------------------------------------------------------------ decide_replicas


def test_scales_up_at_once_to_the_jobs_waiting_and_running() -> None:
    assert decide(2, 0, current=0) == (2, SCALE_UP)
    assert decide(1, 1, current=1, since=0) == (2, SCALE_UP)


def test_demand_is_clamped_to_max_and_min() -> None:
    assert decide(50, 0, current=0) == (3, SCALE_UP)
    assert decide(0, 0, current=0, minReplicas=1) == (1, SCALE_UP)
    assert decide(0, 0, current=1, since=999, minReplicas=1) == (1, STEADY)


def test_jobs_per_replica_rounds_up() -> None:
    assert demand_replicas(QueueDepth(3, 0), spec(jobsPerReplica=2)) == 2
    assert demand_replicas(QueueDepth(4, 0), spec(jobsPerReplica=2)) == 2
    assert demand_replicas(QueueDepth(0, 0), spec(jobsPerReplica=2)) == 0


def test_scale_down_waits_for_the_cooldown_since_demand_changed() -> None:
    assert decide(0, 1, current=3, busy=1, since=10) == (3, COOLDOWN)
    assert decide(0, 1, current=3, busy=1, since=30) == (1, SCALE_DOWN)


def test_scales_to_zero_when_idle_and_min_is_zero() -> None:
    assert decide(0, 0, current=2, since=29.9) == (2, COOLDOWN)
    assert decide(0, 0, current=2, since=30) == (0, SCALE_TO_ZERO)


def test_zero_cooldown_scales_down_at_once() -> None:
    assert decide(0, 0, current=2, scaleDownCooldownSeconds=0) == (0, SCALE_TO_ZERO)


def test_never_below_the_busy_workers() -> None:
    # Two jobs per worker: demand 1 worker, but two workers are busy.
    assert decide(0, 2, busy=2, current=3, since=999, jobsPerReplica=2) == (2, SCALE_DOWN)
    assert decide(0, 2, busy=2, current=2, since=999, jobsPerReplica=2) == (2, BUSY_FLOOR)


def test_above_a_lowered_max_shrinks_at_once_but_keeps_busy_workers() -> None:
    assert decide(9, 0, current=5, since=0) == (3, ABOVE_MAX)
    assert decide(0, 4, busy=4, current=5, since=0) == (4, ABOVE_MAX)


def test_demand_since_moves_only_when_demand_changes() -> None:
    before = NOW - timedelta(seconds=40)
    assert demand_since(2, before, 2, NOW) == before
    assert demand_since(2, before, 1, NOW) == NOW
    assert demand_since(None, None, 0, NOW) == NOW


# ------------------------------------------------------------------ deletion cost


def pod(name: str, cost: str | None = None, **status: Any) -> WorkerPod:
    body: dict[str, Any] = {
        "metadata": {"name": name, "annotations": {DELETION_COST: cost} if cost else {}},
        "status": {"phase": "Running", **status},
    }
    return WorkerPod.from_body(body)


def test_busy_pods_cost_more_and_only_changes_are_patched() -> None:
    pods = [pod("a", IDLE_COST), pod("b", IDLE_COST), pod("c", BUSY_COST), pod("d")]
    busy = busy_workers(pods, {"a", "c", "elsewhere"})
    assert busy == {"a", "c"}
    assert cost_changes(pods, busy) == {"a": BUSY_COST, "d": IDLE_COST}


def test_unschedulable_pods_are_seen() -> None:
    stuck = pod(
        "p",
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}],
    )
    assert stuck.unschedulable and not stuck.ready
    assert capacity_missing([stuck])
    assert not capacity_missing([pod("q")])


# ------------------------------------------------------------------ the Deployment


DEFAULT_TEMPLATE = {
    "metadata": {"labels": {"team": "media"}},
    "spec": {
        "containers": [
            {
                "name": "worker",
                "command": ["kube-transcode-worker"],
                "env": [
                    {"name": "KT_RABBITMQ_URL", "value": "amqp://x"},
                    {"name": "A", "value": "1"},
                ],
                "resources": {"requests": {"cpu": "1"}},
            }
        ],
        "automountServiceAccountToken": True,
    },
}


def test_deployment_merges_the_pool_template_and_prefers_spot() -> None:
    pool = spec(
        queue="transcode.fast",
        template={
            "spec": {
                "containers": [
                    {"name": "worker", "env": [{"name": "A", "value": "2"}], "resources": {}}
                ]
            }
        },
    )
    body = build_deployment("fast", "ns", pool, DEFAULT_TEMPLATE, replicas=0)
    template = body["spec"]["template"]
    pod_spec = template["spec"]
    (worker,) = pod_spec["containers"]
    env = {e["name"]: e.get("value") for e in worker["env"]}
    assert env == {"KT_RABBITMQ_URL": "amqp://x", "A": "2", "KT_QUEUE": "transcode.fast"}
    assert worker["command"] == ["kube-transcode-worker"]
    assert worker["resources"] == {}
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["terminationGracePeriodSeconds"] == 30
    assert all(t in pod_spec["tolerations"] for t in SPOT_TOLERATIONS)
    preferred = pod_spec["affinity"]["nodeAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert {"karpenter.sh/capacity-type", "cloud.google.com/gke-spot"} <= {
        p["preference"]["matchExpressions"][0]["key"] for p in preferred
    }
    assert template["metadata"]["labels"]["kubetranscode.io/workerpool"] == "fast"
    assert template["metadata"]["labels"]["team"] == "media"
    assert body["spec"]["selector"] == {"matchLabels": {"kubetranscode.io/workerpool": "fast"}}
    assert body["spec"]["replicas"] == 0


def test_on_demand_pools_get_no_spot_placement_and_spot_only_requires_it() -> None:
    on_demand = build_deployment("od", "ns", spec(capacity="OnDemand"), DEFAULT_TEMPLATE)
    assert "tolerations" not in on_demand["spec"]["template"]["spec"]
    assert "affinity" not in on_demand["spec"]["template"]["spec"]
    assert "replicas" not in on_demand["spec"]
    only = build_deployment("so", "ns", spec(capacity="SpotOnly"), DEFAULT_TEMPLATE)
    affinity = only["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in affinity


def test_the_pool_template_affinity_replaces_the_generated_one() -> None:
    own: dict[str, Any] = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {}}}
    body = build_deployment("p", "ns", spec(template={"spec": {"affinity": own}}), {})
    assert body["spec"]["template"]["spec"]["affinity"] == own
    assert body["spec"]["template"]["spec"]["containers"][0]["command"] == ["kube-transcode-worker"]


# ------------------------------------------------------------------ fallback


def job(uid: str, priority: str = "high", waited: float = 100, phase: str = "Queued") -> JobView:
    return JobView(uid, "ns", uid, phase, priority, None, NOW - timedelta(seconds=waited))


def test_only_queued_jobs_of_a_fallback_priority_that_waited_long_enough_move() -> None:
    rule = OnDemandFallback(pool="ondemand", after_seconds=60, priorities=("high",))
    jobs = [
        job("old-high"),
        job("young-high", waited=10),
        job("old-low", priority="low"),
        job("running", phase="Running"),
    ]
    assert set(jobs_to_move(jobs, rule, NOW)) == {"old-high"}


def test_running_workers_come_from_running_jobs() -> None:
    a = JobView("1", "ns", "a", "Running", "normal", "pod-a", None)
    b = JobView("2", "ns", "b", "Queued", "normal", "pod-b", NOW)
    assert running_workers([a, b]) == {"pod-a"}


def test_every_worker_on_a_chunked_job_s_parts_is_busy() -> None:
    """A scale-in must not stop a worker in the middle of a part: each one is busy."""
    parts = JobView(
        "3", "ns", "c", "Running", "normal", "pod-c", None, frozenset({"pod-d", "pod-e"})
    )
    done = JobView("4", "ns", "d", "Succeeded", "normal", "pod-f", None, frozenset({"pod-g"}))
    assert running_workers([parts, done]) == {"pod-c", "pod-d", "pod-e"}


def test_moved_status_names_the_new_queue_and_keeps_the_attempt() -> None:
    status = {
        "observedGeneration": 1,
        "attempts": 1,
        "conditions": [
            {"type": "Queued", "status": "True", "reason": "Published", "lastTransitionTime": "x"}
        ],
        "published": {"queue": "transcode.spot", "key": "u/1/1"},
    }
    patch, event = moved_status(
        status, source="transcode.spot", target="transcode.od", pool="od", waited=61, now=NOW
    )
    (queued,) = patch["conditions"]
    assert (queued["status"], queued["reason"]) == ("True", MOVED_REASON)
    assert queued["lastTransitionTime"] == "x"
    assert patch["published"] == {"queue": "transcode.od", "key": "u/1/1"}
    assert "attempts" not in patch
    assert event.reason == MOVED_REASON
