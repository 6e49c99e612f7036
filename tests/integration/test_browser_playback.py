"""Ladders made by `kube-transcode transcode` into MinIO, played in a real browser (headless
Chromium with hls.js, tests/harness/player.py): every rendition to its end, then seeks.

Two ladders: MPEG-TS H.264 (four rungs), and fMP4 (CMAF) with H.264, HEVC and AV1 renditions
of two rungs. Chromium here decodes H.264 and AV1 but not HEVC (no platform decoder), and
hls.js leaves out the variants whose CODECS its MediaSource refuses; so the HEVC renditions
are checked with ffprobe instead, as a player's decoder would take them: every segment,
joined to its init segment, decodes without an error, together they hold every frame of the
source, and the stream is HEVC Main tagged hvc1 with the level the master's CODECS declares.
A browser that does decode HEVC plays them like the others.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kube_transcode_devstack.release import playback_policy
from kube_transcode_devstack.services import MinIO
from kube_transcode_worker.playlists import parse_master_playlist, parse_media_playlist
from tests.harness.media import FFPROBE, check_video_codecs, make_source
from tests.harness.player import PlaybackReport, Rendition, codec_support, play_ladder
from tests.harness.storage import check_stored_authoring, download_folder

pytestmark = pytest.mark.integration

KUBE_TRANSCODE = Path(sys.executable).with_name("kube-transcode")
SECONDS, FPS = 24, 30
# The fMP4 ladder: six renditions (two rungs in three codecs) of a shorter, smaller source.
FMP4_SECONDS = 12
FMP4_RUNGS = "240p,360p"
# A rendition's folder suffix (none for H.264) and the CODECS fourcc hls.js must report.
FOURCC = {"h264": "avc1", "hevc": "hvc1", "av1": "av01"}
# 4x plays the 24 s clip in 6 s a rendition; stalls are still seen (the buffer runs far ahead).
RATE = 4.0
SEEKS = (0.25, 0.75, 0.1)  # forward twice, then back
log = logging.getLogger(__name__)


@pytest.fixture(scope="module")
def testcard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 s of 720p30 with a tone, encoded by x264's own rate control like a camera file."""
    folder = tmp_path_factory.mktemp("browser")
    return make_source(
        folder / "testcard.mp4", width=1280, height=720, seconds=SECONDS, preset="veryfast", qp=None
    )


@pytest.fixture(scope="module")
def small_testcard(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 s of 360p30 with a tone, like `testcard`: enough for two rungs in three codecs."""
    folder = tmp_path_factory.mktemp("browser-fmp4")
    return make_source(
        folder / "small.mp4",
        width=640,
        height=360,
        seconds=FMP4_SECONDS,
        preset="veryfast",
        qp=None,
    )


def transcode_to_minio(source: Path, dest: str, minio: MinIO, *options: str) -> None:
    """The user's path: the console script with its default preset, 2 s segments."""
    env = {
        **os.environ,
        "KT_S3_ENDPOINT_URL": minio.endpoint,
        "KT_S3_ACCESS_KEY_ID": minio.creds.s3_access_key,
        "KT_S3_SECRET_ACCESS_KEY": minio.creds.s3_secret_key,
    }
    run = subprocess.run(
        [
            str(KUBE_TRANSCODE), "transcode", "-q", "--segment-seconds", "2", *options,
            str(source), dest,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{dest}/master.m3u8\n"


def rendition_name(r: Rendition) -> str:
    """The rendition's folder ("360p-av1"), from the playlist URL hls.js loaded."""
    return r.level.uri.rsplit("/", 2)[-2]


def summary(report: PlaybackReport) -> str:
    lines = [f"hls.js {report.hls_version}, {report.user_agent}"]
    for r in report.renditions:
        play = r.play
        seeks = ", ".join(
            f"{s.target_seconds:.1f}s->{s.seeked_at_seconds}s->{s.reached_seconds:.1f}s "
            f"in {s.wall_seconds:.2f}s {s.buffered_at_seeked}"
            + ("" if not s.target_was_buffered else " (buffered)")
            for s in r.seek.seeks
        )
        lines.append(
            f"{rendition_name(r)} ({r.level.video_codec}): ended={play.ended} "
            f"stalls={play.stalls} waiting={play.waiting_at} "
            f"played={play.played_seconds:.2f}/{play.duration_seconds}s "
            f"frames={play.decoded_frames} dropped={play.dropped_frames} "
            f"rate={play.playback_rate} wall={play.wall_seconds:.1f}s errors={play.errors} "
            f"seeks: {seeks}"
        )
    return "\n".join(lines)


def check_played_to_the_end(r: Rendition, seconds: int) -> None:
    play, name = r.play, rendition_name(r)
    assert (play.outcome, play.fatal_error, play.ended) == ("met", None, True), (name, play)
    # A stall is the buffer running dry; a `waiting` with buffer ahead is the decoder behind 4x.
    underruns = [w for w in play.waiting_at if w.buffered_ahead_seconds < 0.1]
    assert (play.stalls, underruns) == (0, []), (name, play)
    assert play.fragment_levels == [r.level.index], f"{name}: not locked to its level"
    assert (play.video_width, play.video_height) == (r.level.width, r.level.height), name
    assert play.playback_rate == RATE, name
    assert play.duration_seconds == pytest.approx(seconds, abs=0.1), name
    # hls.js may skip the 2-frame gap before a TS segment's first B-frame-delayed picture.
    assert play.played_seconds == pytest.approx(play.duration_seconds, abs=0.25), name
    frames = seconds * FPS
    assert abs(play.decoded_frames - frames) <= 0.03 * frames, (name, play.decoded_frames)


def check_seeks_resume_at_their_target(r: Rendition) -> None:
    name = rendition_name(r)
    assert (r.seek.outcome, r.seek.fatal_error) == ("met", None), (name, r.seek)
    assert [s.fraction for s in r.seek.seeks] == list(SEEKS), name
    for seek in r.seek.seeks:
        assert seek.resumed, (name, seek)
        assert seek.seeked_at_seconds == pytest.approx(seek.target_seconds, abs=0.3), (name, seek)
        # Playing on from there, not from somewhere else: within 2 media seconds of the target.
        assert seek.target_seconds < seek.reached_seconds < seek.target_seconds + 2, (name, seek)
    # A short buffer: a seek lands where nothing was loaded yet, and loads it.
    assert not all(s.target_was_buffered for s in r.seek.seeks), (name, r.seek)


def check_decodes_every_frame(folder: Path, declared_codecs: str, codec: str, frames: int) -> None:
    """What a decoder makes of an fMP4 rendition no browser here plays: each segment, joined to
    the init segment, decodes without an error (so each starts on a keyframe and stands
    alone), together they hold every frame, and each is the codec the master declares."""
    playlist = parse_media_playlist((folder / "index.m3u8").read_text())
    assert playlist.init_uri is not None and playlist.segments, folder
    init = (folder / playlist.init_uri).read_bytes()
    decoded = 0
    for segment in playlist.segments:
        joined = folder / f"joined-{segment.uri}.mp4"
        joined.write_bytes(init + (folder / segment.uri).read_bytes())
        probe = subprocess.run(
            [
                FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0",
                "-show_streams", "-print_format", "json", str(joined),
            ],
            capture_output=True,
            text=True,
            check=False,
        )  # fmt: skip
        assert (probe.returncode, probe.stderr) == (0, ""), (folder.name, segment.uri)
        (stream,) = json.loads(probe.stdout)["streams"]
        check_video_codecs(declared_codecs.split(",")[0], stream, codec)
        decoded += int(stream["nb_read_frames"])
    assert decoded == frames, (folder.name, decoded)


def publish_bucket(s3: Any, bucket: str) -> None:
    """As `make up` does for its bucket: anyone may read the ladders, as a player needs."""
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(playback_policy(bucket)))


def test_every_rendition_plays_to_its_end_without_a_stall_and_seeks_resume(
    testcard: Path, minio: MinIO, s3: Any, bucket: str
) -> None:
    transcode_to_minio(testcard, f"s3://{bucket}/shows/testcard", minio)
    check_stored_authoring(s3, bucket, "shows/testcard")
    publish_bucket(s3, bucket)

    report = play_ladder(
        f"{minio.endpoint}/{bucket}/shows/testcard/master.m3u8", rate=RATE, seeks=SEEKS
    )

    log.info("%s", summary(report))
    assert report.error is None, report.error
    assert sorted(r.level.height for r in report.renditions) == [240, 360, 480, 720]
    for rendition in report.renditions:
        check_played_to_the_end(rendition, SECONDS)
        check_seeks_resume_at_their_target(rendition)


def test_fmp4_h264_and_av1_renditions_play_and_seek_and_hevc_decodes_every_frame(
    small_testcard: Path, minio: MinIO, s3: Any, bucket: str, tmp_path: Path
) -> None:
    prefix = "shows/small"
    transcode_to_minio(
        small_testcard, f"s3://{bucket}/{prefix}", minio,
        "--rungs", FMP4_RUNGS, "--segment-format", "fmp4", "--codecs", "h264,hevc,av1",
    )  # fmt: skip
    check_stored_authoring(s3, bucket, prefix)
    publish_bucket(s3, bucket)

    report = play_ladder(f"{minio.endpoint}/{bucket}/{prefix}/master.m3u8", rate=RATE, seeks=SEEKS)

    log.info("%s", summary(report))
    assert report.error is None, report.error
    assert (report.codecs.h264, report.codecs.av1, report.codecs.aac) == (True, True, True)
    rungs = FMP4_RUNGS.split(",")
    names = [f"{rung}{suffix}" for suffix in ("", "-hevc", "-av1") for rung in rungs]
    playable = [name for name in names if report.codecs.hevc or "-hevc" not in name]
    assert sorted(rendition_name(r) for r in report.renditions) == sorted(playable)
    for rendition in report.renditions:
        fourcc = FOURCC[rendition_name(rendition).partition("-")[2] or "h264"]
        assert (rendition.level.video_codec or "").startswith(fourcc), rendition.level
        check_played_to_the_end(rendition, FMP4_SECONDS)
        check_seeks_resume_at_their_target(rendition)
    if report.codecs.hevc:
        return
    master = s3.get_object(Bucket=bucket, Key=f"{prefix}/master.m3u8")["Body"].read().decode()
    declared = {
        v.uri.split("/")[0]: v.attributes["CODECS"] for v in parse_master_playlist(master).variants
    }
    for name in ("240p-hevc", "360p-hevc"):
        download_folder(s3, bucket, f"{prefix}/{name}", tmp_path / name)
        check_decodes_every_frame(tmp_path / name, declared[name], "hevc", FMP4_SECONDS * FPS)


def test_the_browser_plays_h264_av1_and_aac_and_says_whether_hevc() -> None:
    codecs = codec_support()

    assert (codecs.h264, codecs.av1, codecs.aac) == (True, True, True)
    log.info("HEVC %s", codecs.hevc)
