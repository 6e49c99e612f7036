"""The operator's Prometheus metrics and their HTTP endpoint.

Names come from kube_transcode.metric_names. Besides its own figures (kube_transcode_operator_*)
the operator exports the system's: jobs by pool, priority and phase, job timings and outcomes
(all from the TranscodeJobs' watch stream, `JobTracker`), and queue, dead-letter and replica
figures per pool (`PoolFigures`, filled by queue_metrics.py).
"""

from __future__ import annotations

import threading
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import astuple, dataclass, replace
from datetime import datetime
from typing import Any

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from kube_transcode import metric_names as names
from kube_transcode.metric_names import DURATION_BUCKETS, WAIT_BUCKETS, counter_name

PUBLISH_SECONDS = Histogram(
    names.OPERATOR_PUBLISH_SECONDS,
    "Time to publish a message and receive the broker's confirm.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    counter_name(names.OPERATOR_RECONCILE_ERRORS),
    "Handler runs that failed, by handler and error kind.",
    ["handler", "error"],
)
EVENTS_CONSUMED = Counter(
    counter_name(names.OPERATOR_WORKER_EVENTS),
    "Worker events consumed, by what became of them.",
    [names.OUTCOME],
)
JOBS_PUBLISHED = Counter(
    counter_name(names.JOBS_PUBLISHED),
    "Job messages published to work queues, by pool and priority.",
    [names.POOL, names.PRIORITY],
)
JOBS_COMPLETED = Counter(
    counter_name(names.JOBS_COMPLETED),
    "TranscodeJobs that ended, by pool, outcome (succeeded, failed) and reason.",
    [names.POOL, names.OUTCOME, names.REASON],
)
JOB_QUEUE_WAIT_SECONDS = Histogram(
    names.JOB_QUEUE_WAIT_SECONDS,
    "Time a job waited in its queue (published, requeued or due for a retry) until it ran.",
    [names.POOL, names.PRIORITY],
    buckets=WAIT_BUCKETS,
)
JOB_RUN_SECONDS = Histogram(
    names.JOB_RUN_SECONDS,
    "Time of one attempt from Running to its end, by outcome (succeeded, failed, requeued).",
    [names.POOL, names.OUTCOME],
    buckets=DURATION_BUCKETS,
)

PHASES = ("Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed")
PRIORITIES = ("low", "normal", "high")
WAITING_PHASES = frozenset({"Queued", "Retrying"})
TERMINAL_PHASES = frozenset({"Succeeded", "Failed"})


@dataclass(frozen=True)
class _Seen:
    phase: str
    pool: str
    priority: str
    # Epoch seconds: when the job last started waiting in its queue, and started running.
    queued_since: float | None = None
    running_since: float | None = None


class JobTracker(Collector):
    """TranscodeJobs by pool, priority and phase as the operator's watch stream shows them; and
    from each change of phase, the job's queue wait, run time and outcome.

    Only changes seen happen are timed and counted: after an operator restart the jobs already
    waiting or running are timed from their conditions' transition times, the ones that ended
    while it was away are not counted again.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, _Seen] = {}
        self._pools: set[str] = set()

    def observe(
        self,
        uid: str,
        status: Mapping[str, Any],
        *,
        pool: str = "default",
        priority: str = "normal",
        now: float,
    ) -> None:
        phase = str(status.get("phase") or "Pending")
        self.know_pool(pool)
        with self._lock:
            before = self._jobs.get(uid)
            seen = _next(before, status, phase, pool, priority, now)
            self._jobs[uid] = seen
        if before is not None and before.phase != phase:
            _record_change(before, seen, status, now)

    def know_pool(self, pool: str) -> None:
        """The pool's counters and histograms at zero from now on, before its first job: at
        startup for the default pool, when a WorkerPool is reconciled for the others."""
        with self._lock:
            if pool in self._pools:
                return
            self._pools.add(pool)
        _zeros_for(pool)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._jobs.pop(uid, None)

    def pools(self) -> set[str]:
        with self._lock:
            return {seen.pool for seen in self._jobs.values()}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            counts = Tally((s.pool, s.priority, s.phase) for s in self._jobs.values())
        family = GaugeMetricFamily(
            names.JOBS,
            "TranscodeJobs by pool, priority and phase; phase Queued is the queue depth by "
            "priority (published, not yet started).",
            labels=[names.POOL, names.PRIORITY, names.PHASE],
        )
        # Every phase and priority of every known pool, zeros included: a query then says 0
        # where nothing waits, rather than nothing.
        for pool in sorted({pool for pool, _, _ in counts} | POOLS.pools()):
            for priority in PRIORITIES:
                for phase in PHASES:
                    family.add_metric(
                        [pool, priority, phase], counts.get((pool, priority, phase), 0)
                    )
        yield family


def _zeros_for(pool: str) -> None:
    """A pool's counters and histograms from 0 at once: Prometheus's rate() and increase() see
    the first event only if the series existed before it."""
    for priority in PRIORITIES:
        JOBS_PUBLISHED.labels(pool, priority)
        JOB_QUEUE_WAIT_SECONDS.labels(pool, priority)
    for outcome in ("succeeded", "failed", "requeued"):
        JOB_RUN_SECONDS.labels(pool, outcome)
    JOBS_COMPLETED.labels(pool, "succeeded", "Completed")


def _next(
    before: _Seen | None,
    status: Mapping[str, Any],
    phase: str,
    pool: str,
    priority: str,
    now: float,
) -> _Seen:
    seen = _Seen(phase, pool, priority)
    if before is not None and before.phase == phase:
        return replace(before, pool=pool, priority=priority)
    if phase in WAITING_PHASES:
        # At first sight (e.g. after a restart) the status knows since when.
        since = (_condition_time(status, "Queued") if before is None else None) or now
        due = _parse(status.get("nextAttemptTime"))
        return replace(seen, queued_since=max(since, due) if due is not None else since)
    if phase == "Running":
        if before is None:
            return replace(seen, running_since=_condition_time(status, "Running") or now)
        return replace(seen, queued_since=before.queued_since, running_since=now)
    return replace(seen, running_since=before.running_since if before else None)


def _record_change(before: _Seen, after: _Seen, status: Mapping[str, Any], now: float) -> None:
    if after.phase == "Running" and before.queued_since is not None:
        JOB_QUEUE_WAIT_SECONDS.labels(after.pool, after.priority).observe(
            max(0.0, now - before.queued_since)
        )
    if before.phase == "Running" and before.running_since is not None:
        outcome = after.phase.lower() if after.phase in TERMINAL_PHASES else "requeued"
        JOB_RUN_SECONDS.labels(after.pool, outcome).observe(max(0.0, now - before.running_since))
    if after.phase in TERMINAL_PHASES and before.phase not in TERMINAL_PHASES:
        reason = _condition_reason(status, after.phase) or "Completed"
        JOBS_COMPLETED.labels(after.pool, after.phase.lower(), reason).inc()


def _condition(status: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in status.get("conditions") or ():
        if condition.get("type") == type_ and condition.get("status") == "True":
            return dict(condition)
    return None


def _condition_time(status: Mapping[str, Any], type_: str) -> float | None:
    condition = _condition(status, type_)
    return _parse(condition.get("lastTransitionTime")) if condition else None


def _condition_reason(status: Mapping[str, Any], type_: str) -> str | None:
    condition = _condition(status, type_)
    return str(condition.get("reason")) if condition and condition.get("reason") else None


def _parse(value: Any) -> float | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class PoolFigure:
    """What queue_metrics.py last read about one pool; None where it could not tell."""

    ready: int | None = None
    unacked: int | None = None
    dead_letters: int | None = None
    desired_replicas: int | None = None
    ready_replicas: int | None = None


class PoolFigures(Collector):
    """Queue depth, dead letters and replicas per pool, as last read from the broker and the
    worker Deployments (queue_metrics.py); what was never read is not exported.

    The autoscaler, which reads a pool's depth (ready and unacknowledged) and decides its
    replicas on every tick, reports them with `observe` (through queue_metrics too): fresher
    than the poll, they win for OBSERVED_SECONDS.
    """

    OBSERVED_SECONDS = 120.0

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._figures: dict[str, PoolFigure] = {}
        self._observed: dict[str, tuple[float, PoolFigure]] = {}
        self._broker_up: bool | None = None

    def update(self, figures: Mapping[str, PoolFigure], broker_up: bool | None = None) -> None:
        """The poll's reading of every pool (queue_metrics.py)."""
        with self._lock:
            self._figures = dict(figures)
            if broker_up is not None:
                self._broker_up = broker_up

    def observe(
        self,
        pool: str,
        *,
        ready: int | None = None,
        unacknowledged: int | None = None,
        desired_replicas: int | None = None,
        ready_replicas: int | None = None,
    ) -> None:
        """One pool's figures as the autoscaler just read or decided them."""
        figure = PoolFigure(ready, unacknowledged, None, desired_replicas, ready_replicas)
        with self._lock:
            self._observed[pool] = (self._clock(), figure)

    def pools(self) -> set[str]:
        with self._lock:
            return set(self._figures) | set(self._observed)

    def current(self) -> dict[str, PoolFigure]:
        """Per pool, the autoscaler's recent figures over the poll's."""
        with self._lock:
            figures, observed = dict(self._figures), dict(self._observed)
        horizon = self._clock() - self.OBSERVED_SECONDS
        for pool, (at, fresh) in observed.items():
            if at < horizon:
                continue
            base = figures.get(pool, PoolFigure())
            figures[pool] = PoolFigure(
                *(
                    new if new is not None else old
                    for new, old in zip(astuple(fresh), astuple(base), strict=True)
                )
            )
        return figures

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.current()
        with self._lock:
            broker_up = self._broker_up
        queue = GaugeMetricFamily(
            names.QUEUE_MESSAGES,
            "Messages in the pool's work queue as the broker counts them, by state.",
            labels=[names.POOL, names.STATE],
        )
        dead = GaugeMetricFamily(
            names.DEAD_LETTER_MESSAGES,
            "Messages in the pool's dead-letter queue.",
            labels=[names.POOL],
        )
        desired = GaugeMetricFamily(
            names.POOL_DESIRED_REPLICAS,
            "Worker replicas the pool's Deployment asks for (spec.replicas).",
            labels=[names.POOL],
        )
        ready = GaugeMetricFamily(
            names.POOL_READY_REPLICAS,
            "Worker replicas of the pool that are Ready.",
            labels=[names.POOL],
        )
        for pool, figure in sorted(figures.items()):
            _add(queue, [pool, "ready"], figure.ready)
            _add(queue, [pool, "unacked"], figure.unacked)
            _add(dead, [pool], figure.dead_letters)
            _add(desired, [pool], figure.desired_replicas)
            _add(ready, [pool], figure.ready_replicas)
        yield from (queue, dead, desired, ready)
        if broker_up is not None:
            yield GaugeMetricFamily(
                names.OPERATOR_BROKER_UP,
                "1 when the operator's last queue poll reached RabbitMQ.",
                value=int(broker_up),
            )


def _add(family: GaugeMetricFamily, labels: Iterable[str], value: int | None) -> None:
    if value is not None:
        family.add_metric(list(labels), value)


POOLS = PoolFigures()
JOBS = JobTracker()
REGISTRY.register(POOLS)
REGISTRY.register(JOBS)
# The name it had before JobTracker timed jobs too.
JOB_PHASES = JOBS


def serve(address: str, port: int) -> None:
    """Serve /metrics in a daemon thread; port 0 turns the endpoint off."""
    if port:
        start_http_server(port, addr=address)


@contextmanager
def counting_errors(handler: str) -> Iterator[None]:
    """Count a handler's failures (kopf's retry errors included), then let them through."""
    try:
        yield
    except Exception as error:
        RECONCILE_ERRORS.labels(handler, type(error).__name__).inc()
        raise
