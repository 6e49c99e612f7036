"""Chunked encoding on real parts: worker processes, RabbitMQ, MinIO and FFmpeg.

A 50 s source with 12 s chunks is 4 video chunks and an audio part. The ladder they make
must be what a player gets from a single run: every playlist parses, segments are numbered
0..N without a hole, each rendition holds exactly the source's frames with no timestamp gap
at a chunk boundary beyond one frame, and the audio lasts what the source does.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from kube_transcode.chunks import ChunkingOptions
from kube_transcode.ladder import HlsOptions, plan_ladder
from kube_transcode.messages import JobEvent, JobMessage, Phase, dead_letter_name, work_area_prefix
from kube_transcode_devstack.release import playback_policy
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_worker.playlists import parse_master_playlist, parse_media_playlist
from kube_transcode_worker.probe import ProbeLimits, probe_source
from tests.harness.broker import QUEUE, Broker
from tests.harness.media import (
    assert_same_rendition,
    check_ladder,
    ffprobe_json,
    frame_times,
    make_source,
)
from tests.harness.player import play_ladder
from tests.harness.storage import download_folder, object_keys, upload_source
from tests.harness.worker import SMALL_LADDER, Workers, job_message

pytestmark = pytest.mark.integration

SECONDS = 50
CHUNK = ChunkingOptions(chunk_seconds=12)
PARTS = 5  # 4 video chunks (the last one 14 s) and the audio


@pytest.fixture(scope="module")
def long_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    return make_source(folder / "long.mp4", width=320, height=180, seconds=SECONDS)


def _chunked(bucket: str, source: str, **fields: Any) -> JobMessage:
    return job_message(bucket, source, chunking=CHUNK, **fields)


def _audio_seconds(playlist: Path) -> float:
    report = ffprobe_json(
        playlist, "-select_streams", "a:0", "-show_entries", "packet=pts_time,duration_time"
    )
    frames = report["packets"]
    return (
        float(frames[-1]["pts_time"])
        + float(frames[-1]["duration_time"])
        - float(frames[0]["pts_time"])
    )


def _part_events(events: list[JobEvent], uid: str) -> list[JobEvent]:
    return [e for e in events if e.job.uid == uid and e.part is not None]


def _mid_encode(event: JobEvent) -> bool:
    """A part's progress report from the middle of its encode (not yet stored)."""
    return (
        event.phase == Phase.transcoding
        and event.chunk is not None
        and not event.chunk.stored
        and 0 < event.progress_percent < 100
    )


def _check_sound_ladder(dest: Path, source: Path) -> None:
    """As a player and an engineer check it: playlists, numbering, frames, gaps, audio."""
    info = probe_source(source, ProbeLimits())
    plan = plan_ladder(info, SMALL_LADDER.resolve(), hls=HlsOptions())
    check_ladder(dest, plan)
    expected_frames = round(SECONDS * 30)
    frame = 1 / 30
    master = parse_master_playlist((dest / "master.m3u8").read_text())
    for variant in master.variants:
        playlist = parse_media_playlist((dest / variant.uri).read_text())
        numbers = [int(s.uri.removeprefix("seg_").removesuffix(".ts")) for s in playlist.segments]
        assert numbers == list(range(len(numbers))), variant.uri
        times = frame_times(dest / variant.uri)
        assert len(times) == expected_frames, variant.uri
        steps = [after - before for before, after in itertools.pairwise(times)]
        assert max(steps) <= frame + 0.001, f"{variant.uri}: a gap of {max(steps):.3f} s"
        assert min(steps) > 0, f"{variant.uri}: timestamps go back"
    audio = dest / master.media[0]["URI"]
    assert abs(_audio_seconds(audio) - info.duration_seconds) <= 0.05


def test_a_long_source_is_encoded_by_two_workers_at_once_into_one_sound_ladder(
    workers: Workers, broker: Broker, s3: Any, bucket: str, long_source: Path, tmp_path: Path
) -> None:
    message = _chunked(bucket, upload_source(s3, bucket, long_source))
    uid = message.job.uid
    workers.start("w-one")
    workers.start("w-two")
    broker.publish(message)
    succeeded = broker.event(uid, Phase.succeeded, timeout=300)

    assert succeeded.chunk is not None
    assert succeeded.chunk.counts.total == PARTS == succeeded.chunk.counts.done
    assert succeeded.chunk.counts.redone == 0
    events = broker.poll_events()
    parts = _part_events(events, uid)
    assert {e.chunk.task for e in parts if e.chunk} == {
        "chunk-0000",
        "chunk-0001",
        "chunk-0002",
        "chunk-0003",
        "audio",
    }
    # Observed, not assumed: two parts of this job were being encoded at the same moment,
    # by different workers.
    spans: dict[tuple[str, str], tuple[Any, Any]] = {}
    for event in parts:
        key = (event.worker, event.chunk.task)  # type: ignore[union-attr]
        first, _ = spans.get(key, (event.at, event.at))
        spans[key] = (min(first, event.started_at), event.at)
    overlapping = [
        (a, b)
        for a, (a_start, a_end) in spans.items()
        for b, (b_start, b_end) in spans.items()
        if a[0] < b[0] and a_start < b_end and b_start < a_end
    ]
    assert overlapping, f"no two workers encoded parts at once: {spans}"

    dest = tmp_path / "ladder"
    download_folder(s3, bucket, message.output.prefix, dest)
    _check_sound_ladder(dest, long_source)
    # The work area is removed; a marker says the job is assembled (for late duplicates).
    assert object_keys(s3, bucket, work_area_prefix(uid)) == [f"{work_area_prefix(uid)}1.done"]
    assert broker.get(dead_letter_name(QUEUE)) is None


def test_the_same_source_unchunked_makes_the_same_segments(
    workers: Workers, broker: Broker, s3: Any, bucket: str, long_source: Path, tmp_path: Path
) -> None:
    """Chunked or not, a player sees the same numbering, durations and timestamps."""
    source = upload_source(s3, bucket, long_source)
    chunked = _chunked(bucket, source)
    whole = job_message(bucket, source, chunking=ChunkingOptions(mode="Off"))
    workers.start()
    for message in (chunked, whole):
        broker.publish(message)
        done = broker.event(message.job.uid, Phase.succeeded, timeout=300)
        assert (done.chunk is not None) == (message is chunked)
    for message in (chunked, whole):
        download_folder(s3, bucket, message.output.prefix, tmp_path / message.job.uid)
    master = parse_master_playlist((tmp_path / whole.job.uid / "master.m3u8").read_text())
    renditions = [v.uri.split("/")[0] for v in master.variants] + ["audio"]
    assert len(renditions) == 3
    for rendition in renditions:
        # The same frames at the same moments, audio and video alike; a chunked timeline
        # starts a little later as a whole (the parts' lead, see encode.py).
        playlist = Path(rendition) / "index.m3u8"
        stream = "a:0" if rendition == "audio" else "v:0"
        assert_same_rendition(
            tmp_path / chunked.job.uid / playlist, tmp_path / whole.job.uid / playlist, stream
        )


def test_a_worker_killed_mid_chunk_costs_that_chunk_only(
    workers: Workers, broker: Broker, s3: Any, bucket: str, long_source: Path, tmp_path: Path
) -> None:
    message = _chunked(bucket, upload_source(s3, bucket, long_source))
    uid = message.job.uid
    # A slow preset keeps each chunk encoding long enough to be caught in the middle.
    victim = workers.start("w-victim", ffmpeg_preset="veryslow")
    broker.publish(message)

    def victim_encoding_a_chunk() -> bool:
        return any(
            e.worker == "w-victim" and e.part != "audio" and _mid_encode(e)
            for e in _part_events(broker.poll_events(), uid)
        )

    wait_until("the victim to be encoding a chunk", victim_encoding_a_chunk, 120, interval=0.05)
    victim.kill_hard()  # SIGKILL to its process group: the worker and its FFmpeg
    workers.start("w-survivor")
    succeeded = broker.event(uid, Phase.succeeded, timeout=300)
    assert succeeded.chunk is not None
    counts = succeeded.chunk.counts
    # Encodes = parts + redone; the victim held one part, so at most one is redone, and
    # it was killed mid-encode, so exactly that one.
    assert (counts.total, counts.done, counts.redone) == (PARTS, PARTS, 1)
    dest = tmp_path / "ladder"
    download_folder(s3, bucket, message.output.prefix, dest)
    _check_sound_ladder(dest, long_source)


def test_a_stopped_worker_requeues_its_chunk_and_the_stored_ones_stay(
    workers: Workers, broker: Broker, s3: Any, bucket: str, long_source: Path, tmp_path: Path
) -> None:
    """A spot interruption's SIGTERM: the part goes back with the same attempt."""
    message = _chunked(bucket, upload_source(s3, bucket, long_source))
    uid = message.job.uid
    worker = workers.start("w-spot", ffmpeg_preset="veryslow")
    broker.publish(message)

    def one_stored_and_encoding_the_next() -> bool:
        parts = _part_events(broker.poll_events(), uid)
        stored = {e.part for e in parts if e.chunk and e.chunk.stored}
        return bool(stored) and any(e.part not in stored and _mid_encode(e) for e in parts)

    wait_until(
        "a part stored and the next encoding", one_stored_and_encoding_the_next, 120, interval=0.05
    )
    os.kill(worker.process.pid, signal.SIGTERM)
    assert worker.wait_exit(60) == 0
    requeued = broker.event(uid, Phase.requeued, timeout=10)
    assert requeued.part is not None and requeued.next_attempt == requeued.attempt
    workers.start("w-next")
    succeeded = broker.event(uid, Phase.succeeded, timeout=300)
    assert succeeded.chunk is not None
    assert succeeded.chunk.counts.redone == 1
    download_folder(s3, bucket, message.output.prefix, tmp_path / "ladder")
    _check_sound_ladder(tmp_path / "ladder", long_source)


def test_a_chunked_ladder_plays_across_chunk_boundaries_in_a_browser(
    workers: Workers, broker: Broker, s3: Any, bucket: str, long_source: Path
) -> None:
    """Headless Chromium with hls.js, every rendition start to end, and seeks into chunks."""
    message = _chunked(bucket, upload_source(s3, bucket, long_source))
    workers.start()
    workers.start()
    broker.publish(message)
    broker.event(message.job.uid, Phase.succeeded, timeout=300)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(playback_policy(bucket)))

    seeks = (0.3, 0.7, 0.1)  # into the second, the fourth and the first chunk
    report = play_ladder(
        f"{workers.minio.endpoint}/{bucket}/{message.output.prefix}/master.m3u8",
        rate=4.0,
        seeks=seeks,
    )

    assert report.error is None, report.error
    assert len(report.renditions) == 2
    for rendition in report.renditions:
        play, name = rendition.play, f"{rendition.level.height}p"
        assert (play.outcome, play.fatal_error, play.ended) == ("met", None, True), (name, play)
        underruns = [w for w in play.waiting_at if w.buffered_ahead_seconds < 0.1]
        assert (play.stalls, underruns) == (0, []), (name, play)
        assert play.played_seconds == pytest.approx(SECONDS, abs=0.25), (name, play)
        assert abs(play.decoded_frames - SECONDS * 30) <= 0.03 * SECONDS * 30, (name, play)
        for seek in rendition.seek.seeks:
            assert seek.resumed, (name, seek)
            assert seek.target_seconds < seek.reached_seconds < seek.target_seconds + 2, (
                name,
                seek,
            )
