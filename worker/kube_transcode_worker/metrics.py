"""Prometheus metrics of one worker, on a registry of their own (served by health.py).

Names come from kube_transcode.metric_names, the one place every metric is named; the scrape
adds the `pool` label from the Pod's `kubetranscode.io/pool` label.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from kube_transcode import metric_names as names
from kube_transcode.metric_names import DURATION_BUCKETS, SPEED_BUCKETS, counter_name

OUTCOMES = ("succeeded", "failed", "retried", "requeued", "cancelled", "invalid", "abandoned")


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            counter_name(names.WORKER_JOBS),
            "Jobs ended, by outcome: succeeded, failed, retried, requeued, cancelled, "
            "invalid, abandoned (delivery lost with the broker connection).",
            [names.OUTCOME],
            registry=r,
        )
        for outcome in OUTCOMES:  # zeros from the start: a rate over them is 0, not nothing
            self.jobs.labels(outcome)
        self.fetch_seconds = Histogram(
            names.WORKER_FETCH_SECONDS,
            "Time to fetch a source.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            names.WORKER_ENCODE_SECONDS,
            "Time of the FFmpeg run for a whole ladder.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upload_seconds = Histogram(
            names.WORKER_UPLOAD_SECONDS,
            "Time to store a ladder.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.fetched_bytes = Counter(
            counter_name(names.WORKER_FETCHED_BYTES), "Source bytes fetched.", registry=r
        )
        self.uploaded_bytes = Counter(
            counter_name(names.WORKER_UPLOADED_BYTES), "Output bytes stored.", registry=r
        )
        self.busy = Gauge(names.WORKER_BUSY, "1 while a job runs on this worker.", registry=r)
        self.encode_speed = Histogram(
            names.WORKER_ENCODE_SPEED,
            "Source seconds encoded per wall-clock second (x real time), per job.",
            buckets=SPEED_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            counter_name(names.WORKER_RETRIES),
            "Jobs sent back for another attempt after a transient error.",
            registry=r,
        )
        self.dead_lettered = Counter(
            counter_name(names.WORKER_DEAD_LETTERED),
            "Jobs sent to the dead-letter queue, by reason.",
            [names.REASON],
            registry=r,
        )
        self.broker_connected = Gauge(
            names.WORKER_BROKER_CONNECTED, "1 while connected to RabbitMQ.", registry=r
        )
