"""Prometheus metrics of one worker, on a registry of their own (served by health.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "kube_transcode_worker"
# Seconds: a tiny clip to a feature film.
DURATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400)
SPEED_BUCKETS = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.jobs = Counter(
            f"{PREFIX}_jobs",
            "Jobs ended, by outcome: succeeded, failed, retried, requeued, cancelled, "
            "invalid, abandoned (delivery lost with the broker connection).",
            ["outcome"],
            registry=r,
        )
        self.fetch_seconds = Histogram(
            f"{PREFIX}_fetch_seconds",
            "Time to fetch a source.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.encode_seconds = Histogram(
            f"{PREFIX}_encode_seconds",
            "Time of the FFmpeg run for a whole ladder.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.upload_seconds = Histogram(
            f"{PREFIX}_upload_seconds",
            "Time to store a ladder.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.fetched_bytes = Counter(f"{PREFIX}_fetched_bytes", "Source bytes fetched.", registry=r)
        self.uploaded_bytes = Counter(
            f"{PREFIX}_uploaded_bytes", "Output bytes stored.", registry=r
        )
        self.busy = Gauge(f"{PREFIX}_busy", "1 while a job runs on this worker.", registry=r)
        self.encode_speed = Histogram(
            f"{PREFIX}_encode_speed_ratio",
            "Source seconds encoded per wall-clock second (x real time), per job.",
            buckets=SPEED_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            f"{PREFIX}_retries",
            "Jobs sent back for another attempt after a transient error.",
            registry=r,
        )
        self.dead_lettered = Counter(
            f"{PREFIX}_dead_lettered",
            "Jobs sent to the dead-letter queue, by reason.",
            ["reason"],
            registry=r,
        )
        self.broker_connected = Gauge(
            f"{PREFIX}_broker_connected", "1 while connected to RabbitMQ.", registry=r
        )
