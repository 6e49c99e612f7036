"""The system's figures the operator exports: jobs by pool, priority and phase, timings and
outcomes from phase changes, and queue and replica figures per pool."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import REGISTRY

from kube_transcode_devstack.prometheus import targets_from_pods
from kube_transcode_operator import metrics
from kube_transcode_operator.metrics import JobTracker, PoolFigure, PoolFigures
from kube_transcode_operator.queue_metrics import figures, replicas_by_pool

pytestmark = pytest.mark.unit


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def status(phase: str, **extra: Any) -> dict[str, Any]:
    return {"phase": phase, **extra}


def test_a_job_s_queue_wait_run_time_and_outcome_come_from_its_phase_changes() -> None:
    tracker, pool = JobTracker(), "unit-timings"
    tracker.observe("u1", {}, pool=pool, priority="high", now=100.0)
    tracker.observe("u1", status("Queued"), pool=pool, priority="high", now=101.0)
    tracker.observe("u1", status("Running"), pool=pool, priority="high", now=104.0)
    tracker.observe("u1", status("Running"), pool=pool, priority="high", now=105.0)  # progress
    tracker.observe("u1", status("Succeeded"), pool=pool, priority="high", now=110.0)

    wait = ("kube_transcode_job_queue_wait_seconds", {"pool": pool, "priority": "high"})
    assert sample(f"{wait[0]}_sum", **wait[1]) == 3.0
    assert sample(f"{wait[0]}_count", **wait[1]) == 1.0
    run = {"pool": pool, "outcome": "succeeded"}
    assert sample("kube_transcode_job_run_seconds_sum", **run) == 6.0
    done = {"pool": pool, "outcome": "succeeded", "reason": "Completed"}
    assert sample("kube_transcode_jobs_completed_total", **done) == 1.0


def test_a_failure_counts_with_its_reason_and_a_retry_waits_from_its_due_time() -> None:
    tracker, pool = JobTracker(), "unit-failures"
    tracker.observe("u2", status("Queued"), pool=pool, now=0.0)
    tracker.observe("u2", status("Running"), pool=pool, now=10.0)
    retry = status("Retrying", nextAttemptTime="1970-01-01T00:01:00Z")
    tracker.observe("u2", retry, pool=pool, now=20.0)
    tracker.observe("u2", status("Running"), pool=pool, now=65.0)
    failed = status(
        "Failed", conditions=[{"type": "Failed", "status": "True", "reason": "SourceNotFound"}]
    )
    tracker.observe("u2", failed, pool=pool, now=70.0)

    labels = {"pool": pool, "priority": "normal"}
    assert sample("kube_transcode_job_queue_wait_seconds_sum", **labels) == 10.0 + 5.0
    assert sample("kube_transcode_job_run_seconds_count", pool=pool, outcome="requeued") == 1.0
    assert sample("kube_transcode_job_run_seconds_count", pool=pool, outcome="failed") == 1.0
    reason = {"pool": pool, "outcome": "failed", "reason": "SourceNotFound"}
    assert sample("kube_transcode_jobs_completed_total", **reason) == 1.0


def test_jobs_that_ended_before_the_operator_saw_them_are_not_counted_again() -> None:
    tracker, pool = JobTracker(), "unit-restart"
    tracker.observe("u3", status("Succeeded"), pool=pool, now=0.0)
    done = {"pool": pool, "outcome": "succeeded", "reason": "Completed"}
    assert sample("kube_transcode_jobs_completed_total", **done) == 0.0


def test_jobs_by_phase_are_zero_filled_per_pool_and_priority() -> None:
    tracker = JobTracker()
    tracker.observe("a", status("Queued"), pool="p1", priority="high", now=0.0)
    tracker.observe("b", status("Queued"), pool="p1", priority="high", now=0.0)
    tracker.observe("c", status("Running"), pool="p1", priority="low", now=0.0)
    (family,) = tracker.collect()
    values = {tuple(s.labels.values()): s.value for s in family.samples}
    assert values[("p1", "high", "Queued")] == 2
    assert values[("p1", "low", "Running")] == 1
    assert values[("p1", "normal", "Queued")] == 0
    tracker.forget("a")
    (family,) = tracker.collect()
    values = {tuple(s.labels.values()): s.value for s in family.samples}
    assert values[("p1", "high", "Queued")] == 1


def test_pool_figures_prefer_the_autoscaler_s_recent_reading() -> None:
    now = [0.0]
    pools = PoolFigures(clock=lambda: now[0])
    pools.update({"default": PoolFigure(ready=4, dead_letters=1, desired_replicas=2)}, True)
    pools.observe("default", ready=5, unacknowledged=2, desired_replicas=3, ready_replicas=1)
    assert pools.current()["default"] == PoolFigure(5, 2, 1, 3, 1)
    now[0] = PoolFigures.OBSERVED_SECONDS + 1
    assert pools.current()["default"] == PoolFigure(ready=4, dead_letters=1, desired_replicas=2)
    exported = {s.name: s.value for family in pools.collect() for s in family.samples}
    assert exported["kube_transcode_queue_messages"] == 4
    assert exported["kube_transcode_operator_broker_up"] == 1


def test_queue_and_replica_readings_become_one_figure_per_pool() -> None:
    deployment = SimpleNamespace(
        metadata=SimpleNamespace(labels={"kubetranscode.io/pool": "default"}),
        spec=SimpleNamespace(replicas=3),
        status=SimpleNamespace(ready_replicas=None),
    )
    replicas = replicas_by_pool([deployment])
    assert replicas == {"default": (3, 0)}
    depths = {"transcode.default": 7, "transcode.default.dead": 0, "transcode.gpu": None}
    assert figures({"gpu"}, depths, replicas) == {
        "default": PoolFigure(ready=7, dead_letters=0, desired_replicas=3, ready_replicas=0),
        "gpu": PoolFigure(),
    }


def test_prometheus_targets_are_the_running_operator_and_worker_pods() -> None:
    def pod(name: str, component: str, ip: str | None, port: int, **labels: str) -> Any:
        return {
            "metadata": {
                "name": name,
                "namespace": "kube-transcode",
                "labels": {
                    "app.kubernetes.io/name": "kube-transcode",
                    "app.kubernetes.io/component": component,
                    **labels,
                },
            },
            "spec": {"containers": [{"ports": [{"name": "metrics", "containerPort": port}]}]},
            "status": {"phase": "Running" if ip else "Pending", "podIP": ip},
        }

    pods = [
        pod("op", "operator", "127.77.0.2", 9090),
        pod("w1", "worker", "127.77.0.3", 9100, **{"kubetranscode.io/pool": "gpu"}),
        pod("w2", "worker", None, 9100),
    ]
    assert targets_from_pods(pods) == [
        {
            "targets": ["127.77.0.2:9090"],
            "labels": {"namespace": "kube-transcode", "pod": "op", "component": "operator"},
        },
        {
            "targets": ["127.77.0.3:9100"],
            "labels": {
                "namespace": "kube-transcode",
                "pod": "w1",
                "component": "worker",
                "pool": "gpu",
            },
        },
    ]


def test_the_module_level_collectors_are_registered_once() -> None:
    assert metrics.JOB_PHASES is metrics.JOBS


def test_a_known_pool_has_its_series_at_zero_before_its_first_job() -> None:
    # rate() sees a counter's first increase only if the series was scraped at 0 before it.
    tracker, pool = JobTracker(), "unit-known-before-jobs"
    labels = {"pool": pool, "priority": "normal"}
    assert REGISTRY.get_sample_value("kube_transcode_job_queue_wait_seconds_count", labels) is None

    tracker.know_pool(pool)

    assert REGISTRY.get_sample_value("kube_transcode_job_queue_wait_seconds_count", labels) == 0.0
    run = {"pool": pool, "outcome": "succeeded"}
    assert REGISTRY.get_sample_value("kube_transcode_job_run_seconds_count", run) == 0.0
    assert REGISTRY.get_sample_value("kube_transcode_jobs_published_total", labels) == 0.0
