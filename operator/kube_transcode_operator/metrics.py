"""The operator's Prometheus metrics (kube_transcode_operator_*) and their HTTP endpoint."""

from __future__ import annotations

import threading
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import REGISTRY, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PUBLISH_SECONDS = Histogram(
    "kube_transcode_operator_publish_seconds",
    "Time to publish a message and receive the broker's confirm.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
RECONCILE_ERRORS = Counter(
    "kube_transcode_operator_reconcile_errors_total",
    "Handler runs that failed, by handler and error kind.",
    ["handler", "error"],
)
EVENTS_CONSUMED = Counter(
    "kube_transcode_operator_worker_events_total",
    "Worker events consumed, by what became of them.",
    ["outcome"],
)
JOBS_PUBLISHED = Counter(
    "kube_transcode_operator_jobs_published_total",
    "Job messages published to work queues, by priority.",
    ["priority"],
)

PHASES = ("Pending", "Queued", "Running", "Retrying", "Succeeded", "Failed")


class JobPhases(Collector):
    """TranscodeJobs by phase, as the operator last saw them in its watch stream."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[str, str] = {}

    def observe(self, uid: str, phase: str | None) -> None:
        with self._lock:
            self._phases[uid] = phase or "Pending"

    def forget(self, uid: str) -> None:
        with self._lock:
            self._phases.pop(uid, None)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            counts = Tally(self._phases.values())
        family = GaugeMetricFamily(
            "kube_transcode_operator_jobs", "TranscodeJobs by phase.", labels=["phase"]
        )
        for phase in PHASES:
            family.add_metric([phase], counts.get(phase, 0))
        yield family


JOB_PHASES = JobPhases()
REGISTRY.register(JOB_PHASES)


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
