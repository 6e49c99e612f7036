"""Every Prometheus metric kube-transcode exports, named once; operator and worker import these.

The scheme (dramatiq's): `kube_transcode_<thing>[_<unit>]`, counters end in `_total`, times in
`_seconds`. What describes the system (jobs, queues, pools) is named after the thing and
exported once, by the operator; what describes one process is named after the process
(`kube_transcode_operator_*`, `kube_transcode_worker_*`). Labels stay low-cardinality: pool,
priority, phase, outcome, reason, state; never a job's name, namespace or uid.

Worker metrics carry no `pool` label of their own: the scrape adds it from the Pod label
`kubetranscode.io/pool` (the chart's PodMonitor and the local stack's Prometheus both do), so
a worker needs to know nothing about how it is deployed.

Queue depth by priority: RabbitMQ keeps one depth per queue, not per priority, so the depth
per pool and priority is `kube_transcode_jobs{phase="Queued"}`: jobs published and not yet
started, counted from the TranscodeJobs' status, which is the truth a user sees with
`kubectl get tj`. The broker's own figure per pool is `kube_transcode_queue_messages`.
"""

from __future__ import annotations

from typing import Final

PREFIX: Final = "kube_transcode"

# Labels.
POOL: Final = "pool"
PRIORITY: Final = "priority"
PHASE: Final = "phase"
OUTCOME: Final = "outcome"
REASON: Final = "reason"
STATE: Final = "state"
# The Pod label the scrape turns into `pool` on worker metrics.
POOL_POD_LABEL: Final = "kubetranscode.io/pool"

# The system, exported by the operator.
# gauge {pool, priority, phase}: TranscodeJobs by phase (Pending, Queued, Running, Retrying,
# Succeeded, Failed).
JOBS: Final = f"{PREFIX}_jobs"
# counter {pool, priority}: job messages published to work queues (one per generation).
JOBS_PUBLISHED: Final = f"{PREFIX}_jobs_published_total"
# counter {pool, outcome, reason}: jobs that ended, outcome succeeded or failed; reason is the
# Failed condition's reason (one PascalCase word from a fixed set) or Completed.
JOBS_COMPLETED: Final = f"{PREFIX}_jobs_completed_total"
# histogram {pool, priority}: from Queued (published, requeued, or due for a retry) to Running.
JOB_QUEUE_WAIT_SECONDS: Final = f"{PREFIX}_job_queue_wait_seconds"
# histogram {pool, outcome}: one attempt from Running to its end; outcome succeeded, failed or
# requeued (retried, or handed back on a spot interruption).
JOB_RUN_SECONDS: Final = f"{PREFIX}_job_run_seconds"
# gauge {pool, state}: messages in the pool's work queue as the broker counts them; state
# `ready` (waiting) and, where the broker's management API is read, `unacked` (delivered).
QUEUE_MESSAGES: Final = f"{PREFIX}_queue_messages"
# gauge {pool}: messages in the pool's dead-letter queue transcode.<pool>.dead.
DEAD_LETTER_MESSAGES: Final = f"{PREFIX}_dead_letter_messages"
# gauges {pool}: the worker Deployment's spec.replicas (what the autoscaler asked for) and
# status.readyReplicas.
POOL_DESIRED_REPLICAS: Final = f"{PREFIX}_pool_desired_replicas"
POOL_READY_REPLICAS: Final = f"{PREFIX}_pool_ready_replicas"

# The operator process.
OPERATOR_PUBLISH_SECONDS: Final = f"{PREFIX}_operator_publish_seconds"
# counter {handler, error}
OPERATOR_RECONCILE_ERRORS: Final = f"{PREFIX}_operator_reconcile_errors_total"
# counter {outcome}
OPERATOR_WORKER_EVENTS: Final = f"{PREFIX}_operator_worker_events_total"
# gauge: 1 when the last queue poll reached the broker.
OPERATOR_BROKER_UP: Final = f"{PREFIX}_operator_broker_up"

# One worker process (the scrape adds `pool`).
# counter {outcome}: attempts ended: succeeded, failed, retried, requeued, cancelled, invalid,
# abandoned.
WORKER_JOBS: Final = f"{PREFIX}_worker_jobs_total"
# gauge: 1 while a job runs; busy workers sum(...), idle ones count(... == 0).
WORKER_BUSY: Final = f"{PREFIX}_worker_busy"
WORKER_FETCH_SECONDS: Final = f"{PREFIX}_worker_fetch_seconds"
WORKER_ENCODE_SECONDS: Final = f"{PREFIX}_worker_encode_seconds"
WORKER_UPLOAD_SECONDS: Final = f"{PREFIX}_worker_upload_seconds"
WORKER_FETCHED_BYTES: Final = f"{PREFIX}_worker_fetched_bytes_total"
WORKER_UPLOADED_BYTES: Final = f"{PREFIX}_worker_uploaded_bytes_total"
# histogram: source seconds encoded per wall-clock second (x real time), one sample per job.
WORKER_ENCODE_SPEED: Final = f"{PREFIX}_worker_encode_speed_ratio"
# counter: attempts sent back for a retry after a transient error.
WORKER_RETRIES: Final = f"{PREFIX}_worker_retries_total"
# counter {reason}: jobs sent to the dead-letter queue.
WORKER_DEAD_LETTERED: Final = f"{PREFIX}_worker_dead_lettered_total"
WORKER_BROKER_CONNECTED: Final = f"{PREFIX}_worker_broker_connected"

# Seconds: a tiny clip to a feature film.
DURATION_BUCKETS: Final = (
    0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400,
)  # fmt: skip
# Queue wait: from immediate to hours behind a backlog.
WAIT_BUCKETS: Final = (
    0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600,
)  # fmt: skip
SPEED_BUCKETS: Final = (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20, 50)


def counter_name(name: str) -> str:
    """The name to give prometheus_client's Counter, which appends `_total` itself."""
    return name.removesuffix("_total")


ALL: Final = tuple(
    value for key, value in dict(globals()).items() if key.isupper() and isinstance(value, str)
    and value.startswith(f"{PREFIX}_")
)  # fmt: skip
