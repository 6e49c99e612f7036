"""The job and event messages: what the operator sends is what the worker reads, strictly."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from kube_transcode.ladder import Rung
from kube_transcode.messages import (
    MAX_PRIORITY,
    InvalidMessageError,
    JobCancel,
    JobEvent,
    JobMessage,
    JobOutputs,
    JobRef,
    LadderRequest,
    OutputLocation,
    Phase,
    Priority,
    cancelled_marker_key,
    declare_topology,
    decode_cancel,
    decode_event,
    decode_job,
    encode,
    event_routing_key,
    job_queue_name,
    job_ref_of,
    work_queue_arguments,
)

pytestmark = pytest.mark.unit

JOB = JobRef(uid="0b6c", namespace="media", name="trailer", generation=3)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def message(**changes: object) -> JobMessage:
    fields: dict[str, object] = {
        "job": JOB,
        "source": "s3://in/trailer.mov",
        "output": OutputLocation(bucket="out", prefix="trailer"),
    }
    fields.update(changes)
    return JobMessage.model_validate(fields)


def test_job_message_round_trips_through_json() -> None:
    sent = message(
        priority=Priority.high,
        ladder=LadderRequest(rungs=("720p", Rung(name="mobile", height=270, video_kbps=500))),
        deadline=NOW,
        max_attempts=5,
        backoff_seconds=10,
        max_backoff_seconds=300.5,
    )
    assert decode_job(encode(sent)) == sent
    assert (sent.backoff_seconds, sent.max_backoff_seconds) == (10, 300.5)
    assert message().backoff_seconds is None  # the worker's own then
    assert json.loads(encode(sent))["schema_version"] == 4


def test_a_version_1_job_is_read_as_a_whole_job() -> None:
    """Messages queued by the previous release still run after an upgrade."""
    body = json.loads(encode(message()))
    body["schema_version"] = 1
    del body["chunking"], body["task"], body["thumbnails"]
    old = decode_job(json.dumps(body).encode())
    assert old.task is None and old.chunking.mode == "Auto" and old.task_name == "plan"


def test_priorities_map_to_amqp_levels_within_the_queue_maximum() -> None:
    levels = [p.amqp for p in (Priority.low, Priority.normal, Priority.high)]
    assert levels == sorted(levels) and len(set(levels)) == 3
    assert max(levels) == MAX_PRIORITY == work_queue_arguments("q")["x-max-priority"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"\xff\xfe", "not UTF-8 JSON"),
        (b"{not json", "not UTF-8 JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"job": {}}', "unsupported schema_version None"),
        (b'{"schema_version": 5}', "unsupported schema_version 5"),
        (b'{"schema_version": 1, "job": {"uid": "x"}}', "job.namespace: Field required"),
    ],
)
def test_undecodable_bodies_give_a_clear_error(body: bytes, says: str) -> None:
    with pytest.raises(InvalidMessageError, match=says):
        decode_job(body)


@pytest.mark.parametrize(
    ("change", "says"),
    [
        ({"surprise": 1}, "Extra inputs are not permitted"),
        ({"priority": "urgent"}, "priority"),
        ({"source": "file:///etc/passwd"}, "s3://, https:// or http://"),
        ({"source": "s3://bucket-only"}, "s3://<bucket>/<key>"),
        ({"output": {"bucket": "out", "prefix": "a/../b"}}, "'..'"),
        ({"output": {"bucket": "out", "prefix": "/"}}, "non-empty"),
        ({"output": {"bucket": "Bad_Bucket", "prefix": "p"}}, "bucket name"),
        ({"ladder": {"rungs": ["999p"]}}, "unknown rung"),
        ({"deadline": "2030-01-01T00:00:00"}, "timezone"),
        ({"attempt": 0}, "attempt"),
        ({"backoff_seconds": 0}, "backoff_seconds"),
        ({"max_backoff_seconds": -1}, "max_backoff_seconds"),
        ({"job": {**JOB.model_dump(), "namespace": "Not_A_Namespace"}}, "namespace"),
    ],
)
def test_schema_invalid_messages_are_refused(change: dict[str, object], says: str) -> None:
    data = json.loads(encode(message()))
    data.update(change)
    with pytest.raises(InvalidMessageError, match=says):
        decode_job(json.dumps(data).encode())


def test_prefix_is_normalised_and_names_resolve() -> None:
    sent = message(output=OutputLocation(bucket="out", prefix="/videos/trailer/"))
    assert sent.output.prefix == "videos/trailer"
    assert sent.output.uri("master.m3u8") == "s3://out/videos/trailer/master.m3u8"
    rungs = LadderRequest(rungs=("240p",)).resolve()
    assert rungs is not None and rungs[0].height == 240
    assert LadderRequest().resolve() is None


def test_next_attempt_changes_only_the_attempt() -> None:
    first = message()
    second = first.next_attempt()
    assert second.attempt == 2 and second.model_copy(update={"attempt": 1}) == first


def test_events_round_trip_and_carry_outputs_only_on_success() -> None:
    outputs = JobOutputs(master_uri="s3://out/trailer/master.m3u8", renditions=(), has_audio=False)
    done = JobEvent(
        job=JOB,
        attempt=1,
        worker="w-1",
        phase=Phase.succeeded,
        progress_percent=100,
        outputs=outputs,
        started_at=NOW,
        at=NOW,
    )
    assert decode_event(encode(done)) == done
    with pytest.raises(ValueError, match="outputs"):
        JobEvent(
            job=JOB,
            attempt=1,
            worker="w",
            phase=Phase.transcoding,
            outputs=outputs,
            started_at=NOW,
            at=NOW,
        )
    with pytest.raises(ValueError, match="needs a reason"):
        JobEvent(job=JOB, attempt=1, worker="w", phase=Phase.failed, started_at=NOW, at=NOW)
    with pytest.raises(ValueError, match="PascalCase"):
        JobEvent(
            job=JOB,
            attempt=1,
            worker="w",
            phase=Phase.failed,
            reason="not found",
            started_at=NOW,
            at=NOW,
        )
    assert event_routing_key(JOB) == "job.media.trailer"


def test_job_identity_is_recovered_from_an_otherwise_invalid_body() -> None:
    data = json.loads(encode(message()))
    data["priority"] = "urgent"
    assert job_ref_of(json.dumps(data).encode()) == JOB
    assert job_ref_of(b"{not json") is None


def test_cancel_round_trips_and_covers_its_generation_and_older_ones() -> None:
    cancel = JobCancel(job=JOB, reason="Deleted", message="the job was deleted", at=NOW)
    assert decode_cancel(encode(cancel)) == cancel
    assert cancel.covers(JOB)
    assert cancel.covers(JOB.model_copy(update={"generation": 2}))
    assert not cancel.covers(JOB.model_copy(update={"generation": 4}))
    assert not cancel.covers(JOB.model_copy(update={"uid": "another"}))
    assert "Deleted" in cancel.describe()
    with pytest.raises(ValueError, match="reason"):
        JobCancel(job=JOB, reason="not a word", message="", at=NOW)
    with pytest.raises(InvalidMessageError, match="JobCancel"):
        decode_cancel(encode(message()))


class _RecordingChannel:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[object, ...], dict[str, object]]] = []

    def exchange_declare(self, *args: object, **kwargs: object) -> None:
        self.calls.append(("exchange", args, kwargs))

    def queue_declare(self, *args: object, **kwargs: object) -> None:
        self.calls.append(("queue", args, kwargs))

    def queue_bind(self, *args: object, **kwargs: object) -> None:
        self.calls.append(("bind", args, kwargs))


def test_topology_names_and_arguments_stay_what_brokers_already_have() -> None:
    """Changing any of these makes RabbitMQ refuse the declaration on a running cluster."""
    channel = _RecordingChannel()
    queue = job_queue_name("gpu")
    declare_topology(channel, queue)
    assert queue == "transcode.gpu"
    assert channel.calls == [
        ("exchange", ("kube-transcode.events",), {"exchange_type": "topic", "durable": True}),
        ("exchange", ("kube-transcode.control",), {"exchange_type": "fanout", "durable": True}),
        ("exchange", ("transcode.gpu.dead",), {"exchange_type": "fanout", "durable": True}),
        ("queue", ("transcode.gpu.dead",), {"durable": True}),
        ("bind", ("transcode.gpu.dead", "transcode.gpu.dead"), {}),
        (
            "queue",
            ("transcode.gpu",),
            {
                "durable": True,
                "arguments": {"x-max-priority": 3, "x-dead-letter-exchange": "transcode.gpu.dead"},
            },
        ),
    ]
    assert cancelled_marker_key("0b6c") == ".kube-transcode/cancelled/0b6c"
