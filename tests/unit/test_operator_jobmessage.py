"""Validation beyond the schema, ladder resolution, priority and the settings object."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import SecretStr

from kube_transcode.chunks import ChunkingOptions
from kube_transcode.ladder import Rung
from kube_transcode.messages import JobRef
from kube_transcode_operator.jobmessage import build_work
from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.validation import JobRejectedError

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)
REF = JobRef(uid="u1", namespace="team", name="movie", generation=3)


def settings(**overrides: Any) -> OperatorSettings:
    return OperatorSettings(rabbitmq_url=SecretStr("amqp://x"), default_bucket="media", **overrides)


def work(spec: dict[str, Any], **overrides: Any) -> Any:
    body = {"source": {"url": "s3://in/video.mp4"}, **spec}
    return build_work(TranscodeJobSpec.from_body(body), REF, settings(**overrides), started=NOW)


def test_defaults_go_to_the_default_pool_bucket_and_namespace_prefix() -> None:
    result = work({})
    message = result.message
    assert result.queue == "transcode.default"
    assert (message.output.bucket, message.output.prefix) == ("media", "team/movie")
    assert message.priority.amqp == 2
    assert message.max_attempts == 3
    assert (message.backoff_seconds, message.max_backoff_seconds) == (10, 300)
    assert message.deadline is None
    assert message.ladder.rungs == ("240p", "360p", "480p", "720p", "1080p", "1440p", "2160p")
    assert message.job == REF


@pytest.mark.parametrize(("priority", "amqp"), [("low", 1), ("normal", 2), ("high", 3)])
def test_priority_maps_to_amqp_priorities(priority: str, amqp: int) -> None:
    assert work({"priority": priority}).message.priority.amqp == amqp


def test_the_retry_policy_travels_with_the_message() -> None:
    retry = {"attempts": 5, "backoffSeconds": 2, "maxBackoffSeconds": 60}
    message = work({"retry": retry}).message
    assert message.max_attempts == 5
    assert (message.backoff_seconds, message.max_backoff_seconds) == (2, 60)


def test_pool_names_the_queue_and_deadline_counts_from_start() -> None:
    result = work({"pool": "gpu", "activeDeadlineSeconds": 600, "hls": {"segmentSeconds": 4}})
    assert result.queue == "transcode.gpu"
    assert result.message.deadline == datetime(2026, 11, 22, 12, 10, tzinfo=UTC)
    assert result.message.hls.segment_seconds == 4


def test_explicit_rungs_keep_names_and_rederive_changed_ones() -> None:
    rungs = work(
        {"ladder": {"rungs": [
            {"name": "1080p"},
            {"name": "720p", "videoBitrateKbps": 2500},
            {"name": "thumb", "height": 144, "videoBitrateKbps": 200},
        ]}}
    ).message.ladder.rungs  # fmt: skip
    assert rungs[0] == "1080p"
    assert isinstance(rungs[1], Rung)
    assert (rungs[1].height, rungs[1].video_kbps, rungs[1].maxrate_kbps) == (720, 2500, None)
    assert rungs[2] == Rung(name="thumb", height=144, video_kbps=200)


def test_a_namespace_writes_only_under_its_own_prefix_in_the_default_bucket() -> None:
    assert work({"output": {"prefix": "team/shows/ep1"}}).message.output.prefix == "team/shows/ep1"
    with pytest.raises(JobRejectedError) as rejected:
        work({"output": {"prefix": "other/loot"}})
    assert rejected.value.reason == "OutputNotAllowed"
    assert "may only write under 'team/'" in rejected.value.message
    with pytest.raises(JobRejectedError):
        work({"output": {"prefix": "team-b/x"}})  # a namesake prefix is not the namespace's


def test_other_buckets_need_the_namespace_on_their_allow_list() -> None:
    spec = {"output": {"bucket": "studio", "prefix": "anything/at/all"}}
    with pytest.raises(JobRejectedError, match="may not write to bucket 'studio'"):
        work(spec)
    allowed = work(spec, output_buckets={"studio": ["te*"]})
    assert allowed.message.output.bucket == "studio"
    with pytest.raises(JobRejectedError):
        work(spec, output_buckets={"studio": ["other"]})


def test_source_schemes_can_be_narrowed() -> None:
    with pytest.raises(JobRejectedError) as rejected:
        work({"source": {"url": "https://cdn.example.com/a.mp4"}}, allowed_source_schemes="s3")
    assert rejected.value.reason == "SourceNotAllowed"
    assert "allowed: s3://" in rejected.value.message


def test_settings_read_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_RABBITMQ_URL", "amqp://u:p@rabbit/")
    monkeypatch.setenv("KT_ALLOWED_SOURCE_SCHEMES", "s3, https")
    monkeypatch.setenv("KT_WATCH_NAMESPACES", "")
    monkeypatch.setenv("KT_OUTPUT_BUCKETS", '{"studio": ["media-*"]}')
    monkeypatch.setenv("KT_BIND_ADDRESS", "127.77.0.5")
    monkeypatch.setenv("KT_S3_ENDPOINT_URL", "http://minio:9000/")
    loaded = OperatorSettings()  # type: ignore[call-arg]
    assert loaded.allowed_source_schemes == ("s3", "https")
    assert loaded.watch_namespaces == ()
    assert loaded.output_buckets == {"studio": ["media-*"]}
    assert loaded.liveness_endpoint == "http://127.77.0.5:8080/healthz"
    assert loaded.public_url_base == "http://minio:9000"
    assert loaded.rabbitmq_url.get_secret_value() == "amqp://u:p@rabbit/"
    assert "u:p" not in repr(loaded)


def test_unknown_source_schemes_are_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="only s3 and https"):
        settings(allowed_source_schemes="s3,ftp")


def test_the_chunking_choice_travels_with_the_message() -> None:
    assert work({}).message.chunking == ChunkingOptions(mode="Auto", chunk_seconds=None)
    message = work({"chunking": {"mode": "Off"}}).message
    assert message.chunking.mode == "Off"
    chunked = work({"hls": {"segmentSeconds": 4}, "chunking": {"chunkSeconds": 48}}).message
    assert chunked.chunking == ChunkingOptions(mode="Auto", chunk_seconds=48)


def test_a_chunk_length_that_is_not_whole_segments_is_refused_with_the_reason() -> None:
    with pytest.raises(JobRejectedError) as refused:
        work({"chunking": {"chunkSeconds": 20}})
    assert refused.value.reason == "InvalidSpec"
    assert "chunking.chunkSeconds must be a whole number of hls.segmentSeconds (6)" in (
        refused.value.message
    )
    assert "chunkSeconds 20 is not a whole number of 6 s segments" in refused.value.message


def test_codecs_and_the_segment_format_travel_with_the_message() -> None:
    plain = work({}).message
    assert (plain.video.codecs, plain.hls.segment_format) == (("h264",), "ts")
    message = work(
        {"video": {"codecs": ["h264", "hevc", "av1"]},
         "hls": {"segmentSeconds": 4, "segmentFormat": "fmp4"}}
    ).message  # fmt: skip
    assert message.video.codecs == ("h264", "hevc", "av1")
    assert (message.hls.segment_seconds, message.hls.segment_format) == (4, "fmp4")
    assert work({"hls": {"segmentFormat": "fmp4"}}).message.video.codecs == ("h264",)


@pytest.mark.parametrize("hls", [{}, {"segmentFormat": "ts"}], ids=["default-ts", "ts"])
def test_hevc_or_av1_in_mpeg_ts_is_refused_with_the_reason(hls: dict[str, str]) -> None:
    with pytest.raises(JobRejectedError) as refused:
        work({"video": {"codecs": ["h264", "av1"]}, "hls": hls})
    assert refused.value.reason == "InvalidSpec"
    assert refused.value.message == (
        "video codec av1 needs hls.segmentFormat fmp4: "
        "HLS carries HEVC and AV1 in fragmented MP4 only, not MPEG-TS"
    )
