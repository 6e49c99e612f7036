"""The wire contract between operator and worker: job, event and cancel messages, topology.

Both sides import this module; nothing else defines what travels through RabbitMQ or names
where it goes, and both declare the topology with the one `declare_topology` below.

Messages are JSON (UTF-8), validated strictly (unknown fields are errors) and versioned by
`schema_version`. A change that old readers cannot ignore bumps the version; a reader refuses
a version it does not speak with a clear error rather than guessing.

Priorities: `low`, `normal` and `high` travel as AMQP priorities 1, 2 and 3 on a queue
declared with `x-max-priority: 3`. Few levels on purpose: a classic queue keeps one internal
queue per level, and three are all the API offers. Priority only reorders waiting messages.

Queue topology for a work queue `Q` (declared identically by everyone who declares it):
- `Q` = `transcode.<pool>`: durable, `x-max-priority`, dead-letters to the exchange `Q.dead`.
- `Q.dead`: fanout exchange and durable queue; failed and invalid jobs, with the headers
  `x-kt-reason` (one PascalCase word) and `x-kt-message` (for humans).
- `Q.retry.<n>`: delay queue for the n-th retry; a message waits there for its per-message
  expiration, then dead-letters back to `Q`.
- `Q.hold.<worker>`: a worker's own queue that keeps a long job's delivery alive (see the
  worker's consumer module); dead-letters back to `Q`.
Events go to a durable topic exchange with routing key `job.<namespace>.<name>`.

Cancelling. The operator stops a job's work (deleted, superseded by a new generation, past
its deadline) in two ways, marker first, so a worker that misses the broadcast still finds it:
- the object `s3://<output bucket>/.kube-transcode/cancelled/<uid>` holding the JobCancel:
  a worker checks it before it starts a job and again before it stores the master playlist;
- the JobCancel broadcast on the durable fanout exchange `kube-transcode.control`, which every
  worker hears through an exclusive, auto-delete queue of its own.
A JobCancel covers every attempt of the job's uid up to its generation. The worker drops
covered work without outputs: it acks the delivery (no retry, no dead letter) and reports
a `failed` event with reason `Cancelled`.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Protocol, TypeVar

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from kube_transcode.chunks import (
    AUDIO_TASK,
    PLAN_TASK,
    ChunkCounts,
    ChunkingOptions,
    chunk_task_name,
)
from kube_transcode.codecs import check_codecs_fit
from kube_transcode.ladder import (
    HlsOptions,
    Rung,
    SourceInfo,
    VideoOptions,
    X264Preset,
    rung_by_name,
)
from kube_transcode.names import MASTER_PLAYLIST_NAME
from kube_transcode.thumbnails import ThumbnailOptions

# 2: chunked encoding (a JobMessage's `task`, a JobEvent's `chunk`). 3: poster and storyboard
# (a JobMessage's `thumbnails`, JobOutputs' `poster_uri` and `storyboard_uri`). Readers accept
# the older ones too: a version-1 message is a whole job, as it always was, and a message
# without `thumbnails` gets both, defaulted.
# 4: video codecs and the segment format (a JobMessage's `video`, `hls.segment_format`); a
# message without them is H.264 in MPEG-TS, as before.
SCHEMA_VERSION: Final = 4
READABLE_VERSIONS: Final = (1, 2, 3, 4)
CONTENT_TYPE: Final = "application/json"

MAX_PRIORITY: Final = 3
JOB_QUEUE_PREFIX: Final = "transcode"
DEFAULT_EVENTS_EXCHANGE: Final = "kube-transcode.events"
# The routing key pattern of every job's events on the events exchange (job.<ns>.<name>).
ALL_JOB_EVENTS: Final = "job.#"
# Fanout: every worker binds its own exclusive queue and hears every cancel.
CONTROL_EXCHANGE: Final = "kube-transcode.control"
# Objects under this key of a job's output bucket mark cancelled jobs: <prefix>/<uid>.
CANCELLED_MARKER_PREFIX: Final = ".kube-transcode/cancelled"
# A chunked job's work area in its output bucket: <prefix>/<uid>/<generation>/ holds the
# staged source, a marker per chunk encode started and a manifest per chunk stored.
WORK_AREA_PREFIX: Final = ".kube-transcode/work"
# The reason of the `failed` event of work dropped because its job was cancelled.
CANCELLED_REASON: Final = "Cancelled"
REASON_HEADER: Final = "x-kt-reason"
MESSAGE_HEADER: Final = "x-kt-message"
ATTEMPT_HEADER: Final = "x-kt-attempt"
WORKER_HEADER: Final = "x-kt-worker"
# A dead-letter header value is for humans; keep it short enough for any tooling.
MAX_HEADER_MESSAGE_CHARS: Final = 1000
MAX_ATTEMPTS_LIMIT: Final = 20

_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_REASON = re.compile(r"^[A-Z][A-Za-z0-9]*$")


class Priority(StrEnum):
    low = "low"
    normal = "normal"
    high = "high"

    @property
    def amqp(self) -> int:
        return _AMQP_PRIORITY[self]


_AMQP_PRIORITY: Final = {Priority.low: 1, Priority.normal: 2, Priority.high: 3}


class Phase(StrEnum):
    fetching = "fetching"
    probing = "probing"
    transcoding = "transcoding"
    uploading = "uploading"
    succeeded = "succeeded"
    failed = "failed"
    requeued = "requeued"

    @property
    def terminal(self) -> bool:
        return self in (Phase.succeeded, Phase.failed)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class JobRef(_Model):
    """Which TranscodeJob, and which version of its spec, a message is about."""

    uid: str = Field(min_length=1, max_length=64)
    namespace: str = Field(pattern=f"^{_DNS_LABEL}$", max_length=63)
    name: str = Field(pattern=rf"^{_DNS_LABEL}(\.{_DNS_LABEL})*$", max_length=253)
    generation: int = Field(ge=1)


def validate_prefix(prefix: str) -> str:
    """An object key prefix that cannot escape itself: relative, no empty, '.' or '..' parts."""
    parts = prefix.split("/")
    if not prefix or prefix.startswith("/") or "\\" in prefix:
        raise ValueError(f"prefix must be a non-empty relative path, got {prefix!r}")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"prefix must not contain empty, '.' or '..' parts, got {prefix!r}")
    if any(ord(char) < 0x20 for char in prefix):
        raise ValueError("prefix must not contain control characters")
    return prefix


class OutputLocation(_Model):
    """Where the ladder goes: s3://<bucket>/<prefix>/master.m3u8 and one folder per rendition.

    The prefix is the job's own: a rerun removes objects under it that the new ladder does not
    have, so it must not be empty and must not be shared with anything else.
    """

    bucket: str
    prefix: str = Field(max_length=512)

    @field_validator("bucket")
    @classmethod
    def _bucket_name(cls, bucket: str) -> str:
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise ValueError(f"not a valid S3 bucket name: {bucket!r}")
        return bucket

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, prefix: str) -> str:
        return validate_prefix(prefix.strip("/"))

    def uri(self, relative: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}/{relative}"

    @property
    def master_playlist_key(self) -> str:
        return f"{self.prefix}/{MASTER_PLAYLIST_NAME}"

    @property
    def master_playlist_uri(self) -> str:
        return self.uri(MASTER_PLAYLIST_NAME)

    def http_url(self, public_base: str | None) -> str | None:
        """The master playlist through a public S3 endpoint (`<base>/<bucket>/<key>`), if any."""
        if public_base is None:
            return None
        return f"{public_base.rstrip('/')}/{self.bucket}/{self.master_playlist_key}"


class LadderRequest(_Model):
    """The rungs asked for: names of standard rungs or explicit ones; None = the default ladder."""

    rungs: tuple[Annotated[str, Field(min_length=1)] | Rung, ...] | None = None

    @field_validator("rungs")
    @classmethod
    def _known_names(cls, rungs: tuple[str | Rung, ...] | None) -> tuple[str | Rung, ...] | None:
        if rungs is not None:
            if not rungs:
                raise ValueError("an explicit ladder needs at least one rung")
            for rung in rungs:
                if isinstance(rung, str):
                    rung_by_name(rung)
        return rungs

    def resolve(self) -> list[Rung] | None:
        if self.rungs is None:
            return None
        return [rung_by_name(r) if isinstance(r, str) else r for r in self.rungs]


def _check_source_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("s3", "https", "http"):
        raise ValueError(f"source must be an s3://, https:// or http:// URL, got {url!r}")
    if not rest or rest.startswith("/"):
        raise ValueError(f"source URL has no host or bucket: {url!r}")
    if scheme == "s3" and "/" not in rest.rstrip("/"):
        raise ValueError(f"s3 source needs s3://<bucket>/<key>, got {url!r}")
    if any(ord(char) < 0x21 for char in url):
        raise ValueError("source URL must not contain whitespace or control characters")
    return url


class StagedSource(_Model):
    """A source's copy in the configured S3 store, which chunk workers read by ranges."""

    bucket: str
    key: str = Field(min_length=1, max_length=1024)


class ChunkTask(_Model):
    """One part of a chunked job: every video rung of one time range, or the whole audio.

    Published by the worker that planned the job, to the same queue at the job's priority.
    `probed` is what that worker's ffprobe found, so every part plans the same ladder.
    """

    kind: Literal["video", "audio"]
    # Video: the chunk's index (0-based). Audio: the number of video chunks.
    index: int = Field(ge=0)
    chunks: int = Field(ge=2, description="how many video chunks the job has")
    start_seconds: float = Field(ge=0)
    duration_seconds: float = Field(gt=0)
    first_segment: int = Field(ge=0)
    source: StagedSource
    probed: SourceInfo
    # The planning worker's: every part of a job is encoded alike (a pool's workers may be
    # configured differently while a job runs; its chunks must still meet seamlessly).
    preset: X264Preset

    @property
    def name(self) -> str:
        return AUDIO_TASK if self.kind == "audio" else chunk_task_name(self.index)

    @property
    def total_tasks(self) -> int:
        """Video chunks plus the audio task, when the source has audio."""
        return self.chunks + (1 if self.probed.has_audio else 0)


class JobMessage(_Model):
    """One unit of work, published by the operator to a pool's work queue.

    Without `task` it is a whole job: the worker encodes it in one run, or plans it into
    chunk tasks that it publishes to the same queue (see kube_transcode.chunks).
    """

    schema_version: Literal[1, 2, 3, 4] = SCHEMA_VERSION
    job: JobRef
    # 1 for the first delivery; the worker republishes with attempt + 1 for each retry.
    attempt: int = Field(default=1, ge=1, le=MAX_ATTEMPTS_LIMIT)
    # From the job's retry policy; None = the worker's configured default. The worker bounds
    # the backoff by its own maximum.
    max_attempts: int | None = Field(default=None, ge=1, le=MAX_ATTEMPTS_LIMIT)
    backoff_seconds: float | None = Field(default=None, gt=0)
    max_backoff_seconds: float | None = Field(default=None, gt=0)
    priority: Priority = Priority.normal
    source: Annotated[str, Field(max_length=4096)]
    ladder: LadderRequest = LadderRequest()
    hls: HlsOptions = HlsOptions()
    output: OutputLocation
    deadline: AwareDatetime | None = None
    chunking: ChunkingOptions = ChunkingOptions()
    # Poster and storyboard; a message without it (version 1 or 2) gets both, defaulted.
    thumbnails: ThumbnailOptions = ThumbnailOptions()
    # Video codecs; a message without it (version 1 to 3) is H.264 only.
    video: VideoOptions = VideoOptions()
    task: ChunkTask | None = None

    @field_validator("source")
    @classmethod
    def _source_url(cls, source: str) -> str:
        return _check_source_url(source)

    @model_validator(mode="after")
    def _codecs_fit_segments(self) -> JobMessage:
        check_codecs_fit(self.video.codecs, self.hls.segment_format)
        return self

    def next_attempt(self) -> JobMessage:
        return self.model_copy(update={"attempt": self.attempt + 1})

    def for_task(self, task: ChunkTask) -> JobMessage:
        """This job's part `task`: its own first attempt, the job's limits and deadline."""
        return self.model_copy(
            update={"task": task, "attempt": 1, "schema_version": SCHEMA_VERSION}
        )

    @property
    def task_name(self) -> str:
        return PLAN_TASK if self.task is None else self.task.name


class RenditionOutput(_Model):
    name: str
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    bandwidth: int = Field(ge=0, description="peak bits per second, video plus audio")
    average_bandwidth: int = Field(ge=0)
    codecs: str
    playlist_uri: str


class JobOutputs(_Model):
    master_uri: str
    renditions: tuple[RenditionOutput, ...]
    has_audio: bool
    # s3:// URIs of the poster JPEG and the storyboard's WebVTT; None when turned off.
    poster_uri: str | None = None
    storyboard_uri: str | None = None


class ChunkReport(_Model):
    """Which part of a chunked job an event is about, and the job's parts as stored now."""

    task: str = Field(pattern=r"^(plan|audio|chunk-[0-9]{4,})$")
    counts: ChunkCounts
    # This part's outputs (and its manifest) are stored: it will not be encoded again.
    stored: bool = False


class JobEvent(_Model):
    """What a worker reports about one attempt; the operator turns it into the job's status.

    For a chunked job, `attempt` is the attempt of the part in `chunk` (each part has its
    own), except for the `plan` part, whose attempt is the job's.
    """

    schema_version: Literal[1, 2, 3, 4] = SCHEMA_VERSION
    job: JobRef
    attempt: int = Field(ge=1)
    worker: str
    phase: Phase
    progress_percent: float = Field(default=0.0, ge=0, le=100)
    reason: str | None = None
    message: str | None = Field(default=None, max_length=4000)
    outputs: JobOutputs | None = None
    # requeued: the attempt the job comes back with (same one after a shutdown) and when.
    next_attempt: int | None = Field(default=None, ge=1)
    retry_at: AwareDatetime | None = None
    chunk: ChunkReport | None = None
    started_at: AwareDatetime
    at: AwareDatetime

    @property
    def part(self) -> str | None:
        """The chunk task this event is about (`chunk-0003`, `audio`); None for the job's own."""
        if self.chunk is None or self.chunk.task == PLAN_TASK:
            return None
        return self.chunk.task

    @field_validator("reason")
    @classmethod
    def _reason_word(cls, reason: str | None) -> str | None:
        if reason is not None and not _REASON.match(reason):
            raise ValueError(f"reason must be one PascalCase word, got {reason!r}")
        return reason

    @model_validator(mode="after")
    def _outputs_only_on_success(self) -> JobEvent:
        if (self.outputs is not None) != (self.phase is Phase.succeeded):
            raise ValueError("outputs are given exactly when the phase is succeeded")
        if self.phase in (Phase.failed, Phase.requeued) and self.reason is None:
            raise ValueError(f"a {self.phase} event needs a reason")
        return self


class JobCancel(_Model):
    """Stop every attempt of this job up to `job.generation`; do not start queued ones."""

    schema_version: Literal[1, 2, 3, 4] = SCHEMA_VERSION
    job: JobRef
    reason: str = Field(pattern=_REASON.pattern)
    message: str = Field(max_length=1000)
    at: AwareDatetime

    def covers(self, job: JobRef) -> bool:
        """Whether work on `job` is cancelled: same uid, a generation not newer than ours."""
        return job.uid == self.job.uid and job.generation <= self.job.generation

    def describe(self) -> str:
        return f"cancelled by the operator ({self.reason}: {self.message})"


_M = TypeVar("_M", bound=_Model)


class InvalidMessageError(ValueError):
    """A body that is not a message this code understands; `str()` says why, briefly."""


def _decode(body: bytes, model: type[_M]) -> _M:
    try:
        data: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidMessageError(f"body is not UTF-8 JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidMessageError(f"body is JSON {type(data).__name__}, not an object")
    version = data.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise InvalidMessageError(
            f"unsupported schema_version {version!r} (this code reads "
            f"{', '.join(str(v) for v in READABLE_VERSIONS)})"
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<body>'}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        raise InvalidMessageError(f"invalid {model.__name__}: {problems}") from None


def decode_job(body: bytes) -> JobMessage:
    return _decode(body, JobMessage)


def decode_event(body: bytes) -> JobEvent:
    return _decode(body, JobEvent)


def decode_cancel(body: bytes) -> JobCancel:
    return _decode(body, JobCancel)


def encode(message: JobMessage | JobEvent | JobCancel) -> bytes:
    return message.model_dump_json().encode()


def job_ref_of(body: bytes) -> JobRef | None:
    """The job identity of a body that is otherwise invalid, when it has a readable one."""
    try:
        data = json.loads(body.decode("utf-8"))
        return JobRef.model_validate(data["job"])
    except (ValueError, KeyError, TypeError, ValidationError):
        return None


def event_routing_key(job: JobRef) -> str:
    return f"job.{job.namespace}.{job.name}"


def job_queue_name(pool: str) -> str:
    """A WorkerPool's work queue; the pool's workers consume it as KT_QUEUE."""
    return f"{JOB_QUEUE_PREFIX}.{pool}"


def pool_of_queue(queue: str) -> str:
    """The pool a work queue serves (`spec.pool` of its jobs): the inverse of job_queue_name."""
    return queue.removeprefix(f"{JOB_QUEUE_PREFIX}.")


def cancelled_marker_key(uid: str) -> str:
    return f"{CANCELLED_MARKER_PREFIX}/{uid}"


def work_area_prefix(uid: str, generation: int | None = None) -> str:
    """A chunked job's work area (all its generations' when `generation` is None), with '/'."""
    if generation is None:
        return f"{WORK_AREA_PREFIX}/{uid}/"
    return f"{WORK_AREA_PREFIX}/{uid}/{generation}/"


def dead_letter_name(queue: str) -> str:
    return f"{queue}.dead"


def retry_queue_name(queue: str, retry: int) -> str:
    return f"{queue}.retry.{retry}"


def hold_queue_name(queue: str, worker: str) -> str:
    return f"{queue}.hold.{worker}"


def work_queue_arguments(queue: str) -> dict[str, Any]:
    return {"x-max-priority": MAX_PRIORITY, "x-dead-letter-exchange": dead_letter_name(queue)}


def back_to_queue_arguments(queue: str) -> dict[str, Any]:
    """For queues whose messages return to the work queue when they expire or are rejected."""
    return {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": queue}


class AmqpChannel(Protocol):
    """The part of a pika channel that declares; this package does not depend on pika."""

    def exchange_declare(self, exchange: str, exchange_type: str, *, durable: bool) -> Any: ...

    def queue_declare(
        self, queue: str, *, durable: bool, arguments: dict[str, Any] | None = None
    ) -> Any: ...

    def queue_bind(self, queue: str, exchange: str) -> Any: ...


def declare_exchanges(channel: AmqpChannel, events_exchange: str = DEFAULT_EVENTS_EXCHANGE) -> None:
    """Idempotent: the exchanges every side publishes to, events (topic) and control (fanout)."""
    channel.exchange_declare(events_exchange, exchange_type="topic", durable=True)
    channel.exchange_declare(CONTROL_EXCHANGE, exchange_type="fanout", durable=True)


def declare_topology(
    channel: AmqpChannel, queue: str, events_exchange: str = DEFAULT_EVENTS_EXCHANGE
) -> None:
    """Idempotent: the exchanges, the work queue and its dead-letter exchange and queue.

    Operator and worker both call this: RabbitMQ refuses (PRECONDITION_FAILED) a second
    declaration of a queue with other arguments, so there must be only one.
    """
    declare_exchanges(channel, events_exchange)
    dead = dead_letter_name(queue)
    channel.exchange_declare(dead, exchange_type="fanout", durable=True)
    channel.queue_declare(dead, durable=True)
    channel.queue_bind(dead, dead)
    channel.queue_declare(queue, durable=True, arguments=work_queue_arguments(queue))


def now_utc() -> datetime:
    return datetime.now(UTC)
