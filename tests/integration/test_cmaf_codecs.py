"""fMP4 (CMAF) ladders in H.264, HEVC and AV1 through the queue, whole and chunked.

Real worker processes, RabbitMQ, MinIO and FFmpeg. What a player and a packager check: every
rung exists once per codec with a truthful CODECS (against ffprobe), one init segment per
rendition that every chunk wrote byte for byte alike, the source's frames without a gap at a
chunk boundary, and the same segments and timestamps as a single run of the same job.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from kube_transcode.chunks import ChunkingOptions
from kube_transcode.ladder import HlsOptions, VideoOptions, plan_ladder
from kube_transcode.messages import JobMessage, Phase, dead_letter_name, work_area_prefix
from kube_transcode_worker.playlists import parse_master_playlist, parse_media_playlist
from kube_transcode_worker.probe import ProbeLimits, probe_source
from tests.harness.broker import QUEUE, Broker
from tests.harness.media import assert_same_rendition, check_ladder, frame_times, make_source
from tests.harness.storage import download_folder, object_keys, upload_source
from tests.harness.worker import SMALL_LADDER, Workers, job_message

pytestmark = pytest.mark.integration

SECONDS = 36
CODECS = VideoOptions(codecs=("h264", "hevc", "av1"))
FMP4 = HlsOptions(segment_format="fmp4")
CHUNK = ChunkingOptions(chunk_seconds=12)
PARTS = 4  # 3 video chunks and the audio


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    return make_source(folder / "cmaf.mp4", width=320, height=180, seconds=SECONDS)


def _message(bucket: str, source: str, chunking: ChunkingOptions) -> JobMessage:
    return job_message(bucket, source, hls=FMP4, video=CODECS, chunking=chunking)


def _renditions(dest: Path) -> list[str]:
    master = parse_master_playlist((dest / "master.m3u8").read_text())
    return [v.uri.split("/")[0] for v in master.variants]


def test_a_chunked_fmp4_ladder_in_three_codecs_is_sound_and_shares_one_init_per_rendition(
    workers: Workers, broker: Broker, s3: Any, bucket: str, source: Path, tmp_path: Path
) -> None:
    message = _message(bucket, upload_source(s3, bucket, source), CHUNK)
    uid = message.job.uid
    workers.start("w-one")
    workers.start("w-two")
    broker.publish(message)
    succeeded = broker.event(uid, Phase.succeeded, timeout=300)
    assert succeeded.chunk is not None
    assert (succeeded.chunk.counts.total, succeeded.chunk.counts.done) == (PARTS, PARTS)

    dest = tmp_path / "ladder"
    download_folder(s3, bucket, message.output.prefix, dest)
    info = probe_source(source, ProbeLimits())
    plan = plan_ladder(info, SMALL_LADDER.resolve(), hls=FMP4, video=CODECS)
    # Authoring rules, CODECS against ffprobe, keyframes on every boundary of every codec.
    check_ladder(dest, plan)
    names = sorted(_renditions(dest))
    assert names == sorted(r.name for r in plan.renditions)
    assert {name.partition("-")[2] or "h264" for name in names} == {"h264", "hevc", "av1"}
    assert succeeded.outputs is not None
    codecs = {r.name: r.codecs.split(",")[0] for r in succeeded.outputs.renditions}
    assert {c.split(".")[0] for c in codecs.values()} == {"avc1", "hvc1", "av01"}

    keys = object_keys(s3, bucket, message.output.prefix)
    for name in [*names, "audio"]:
        playlist = parse_media_playlist((dest / name / "index.m3u8").read_text())
        # One init per rendition, at one key, named by the playlist: every chunk's the same.
        assert playlist.init_uri == f"init_{name}.mp4"
        inits = [k for k in keys if k.startswith(f"{message.output.prefix}/{name}/init")]
        assert inits == [f"{message.output.prefix}/{name}/{playlist.init_uri}"]
        numbers = [int(s.uri.removeprefix("seg_").removesuffix(".m4s")) for s in playlist.segments]
        assert numbers == list(range(len(numbers))), name
    for name in names:
        times = frame_times(dest / name / "index.m3u8")
        assert len(times) == SECONDS * 30, name
        steps = [after - before for before, after in itertools.pairwise(times)]
        assert max(steps) <= 1 / 30 + 0.001, f"{name}: a gap of {max(steps):.3f} s"
        assert min(steps) > 0, f"{name}: timestamps go back"
    assert object_keys(s3, bucket, work_area_prefix(uid)) == [f"{work_area_prefix(uid)}1.done"]
    assert broker.get(dead_letter_name(QUEUE)) is None


def test_chunked_or_not_and_as_in_mpeg_ts_an_fmp4_ladder_has_the_same_segments_and_frames(
    workers: Workers, broker: Broker, s3: Any, bucket: str, source: Path, tmp_path: Path
) -> None:
    uploaded = upload_source(s3, bucket, source)
    chunked = _message(bucket, uploaded, CHUNK)
    whole = _message(bucket, uploaded, ChunkingOptions(mode="Off"))
    ts = job_message(bucket, uploaded, chunking=ChunkingOptions(mode="Off"))
    workers.start()
    for message in (chunked, whole, ts):
        broker.publish(message)
        done = broker.event(message.job.uid, Phase.succeeded, timeout=300)
        assert (done.chunk is not None) == (message is chunked)
        download_folder(s3, bucket, message.output.prefix, tmp_path / message.job.uid)
    a_dir, b_dir = tmp_path / chunked.job.uid, tmp_path / whole.job.uid
    # fMP4 keeps the segment timing and keyframes of MPEG-TS: the same durations, rung by rung.
    ts_dir = tmp_path / ts.job.uid
    for rendition in _renditions(ts_dir):
        in_ts = parse_media_playlist((ts_dir / rendition / "index.m3u8").read_text())
        in_fmp4 = parse_media_playlist((b_dir / rendition / "index.m3u8").read_text())
        assert [round(s.duration, 3) for s in in_fmp4.segments] == [
            round(s.duration, 3) for s in in_ts.segments
        ], rendition
    renditions = _renditions(b_dir)
    assert sorted(renditions) == sorted(_renditions(a_dir)) and len(renditions) == 6
    for rendition in [*renditions, "audio"]:
        playlist = Path(rendition) / "index.m3u8"
        stream = "a:0" if rendition == "audio" else "v:0"
        assert_same_rendition(a_dir / playlist, b_dir / playlist, stream)
