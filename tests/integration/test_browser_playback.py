"""A ladder made by `kube-transcode transcode` into MinIO, played in a real browser (headless
Chromium with hls.js, tests/harness/player.py): every rendition to its end, then seeks."""

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
from tests.harness.media import make_source
from tests.harness.player import PlaybackReport, Rendition, codec_support, play_ladder
from tests.harness.storage import check_stored_authoring

pytestmark = pytest.mark.integration

KUBE_TRANSCODE = Path(sys.executable).with_name("kube-transcode")
SECONDS, FPS = 24, 30
FRAMES = SECONDS * FPS
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


def transcode_to_minio(source: Path, dest: str, minio: MinIO) -> None:
    """The user's path: the console script with its default preset, 2 s segments."""
    env = {
        **os.environ,
        "KT_S3_ENDPOINT_URL": minio.endpoint,
        "KT_S3_ACCESS_KEY_ID": minio.creds.s3_access_key,
        "KT_S3_SECRET_ACCESS_KEY": minio.creds.s3_secret_key,
    }
    run = subprocess.run(
        [str(KUBE_TRANSCODE), "transcode", "-q", "--segment-seconds", "2", str(source), dest],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
        stdin=subprocess.DEVNULL,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"{dest}/master.m3u8\n"


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
            f"{r.level.height}p: ended={play.ended} stalls={play.stalls} waiting={play.waiting_at} "
            f"played={play.played_seconds:.2f}/{play.duration_seconds}s "
            f"frames={play.decoded_frames} dropped={play.dropped_frames} "
            f"rate={play.playback_rate} wall={play.wall_seconds:.1f}s errors={play.errors} "
            f"seeks: {seeks}"
        )
    return "\n".join(lines)


def check_played_to_the_end(r: Rendition) -> None:
    play, name = r.play, f"{r.level.height}p"
    assert (play.outcome, play.fatal_error, play.ended) == ("met", None, True), (name, play)
    # A stall is the buffer running dry; a `waiting` with buffer ahead is the decoder behind 4x.
    underruns = [w for w in play.waiting_at if w.buffered_ahead_seconds < 0.1]
    assert (play.stalls, underruns) == (0, []), (name, play)
    assert play.fragment_levels == [r.level.index], f"{name}: not locked to its level"
    assert (play.video_width, play.video_height) == (r.level.width, r.level.height), name
    assert play.playback_rate == RATE, name
    assert play.duration_seconds == pytest.approx(SECONDS, abs=0.1), name
    # hls.js may skip the 2-frame gap before a TS segment's first B-frame-delayed picture.
    assert play.played_seconds == pytest.approx(play.duration_seconds, abs=0.25), name
    assert abs(play.decoded_frames - FRAMES) <= 0.03 * FRAMES, (name, play.decoded_frames)


def check_seeks_resume_at_their_target(r: Rendition) -> None:
    name = f"{r.level.height}p"
    assert (r.seek.outcome, r.seek.fatal_error) == ("met", None), (name, r.seek)
    assert [s.fraction for s in r.seek.seeks] == list(SEEKS), name
    for seek in r.seek.seeks:
        assert seek.resumed, (name, seek)
        assert seek.seeked_at_seconds == pytest.approx(seek.target_seconds, abs=0.3), (name, seek)
        # Playing on from there, not from somewhere else: within 2 media seconds of the target.
        assert seek.target_seconds < seek.reached_seconds < seek.target_seconds + 2, (name, seek)
    # A short buffer: a seek lands where nothing was loaded yet, and loads it.
    assert not all(s.target_was_buffered for s in r.seek.seeks), (name, r.seek)


def test_every_rendition_plays_to_its_end_without_a_stall_and_seeks_resume(
    testcard: Path, minio: MinIO, s3: Any, bucket: str
) -> None:
    transcode_to_minio(testcard, f"s3://{bucket}/shows/testcard", minio)
    check_stored_authoring(s3, bucket, "shows/testcard")
    # As `make up` does for its bucket: anyone may read the ladders, as a player needs.
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(playback_policy(bucket)))

    report = play_ladder(
        f"{minio.endpoint}/{bucket}/shows/testcard/master.m3u8", rate=RATE, seeks=SEEKS
    )

    log.info("%s", summary(report))
    assert report.error is None, report.error
    assert sorted(r.level.height for r in report.renditions) == [240, 360, 480, 720]
    for rendition in report.renditions:
        check_played_to_the_end(rendition)
        check_seeks_resume_at_their_target(rendition)


def test_the_browser_plays_h264_and_aac_and_says_whether_hevc_and_av1() -> None:
    codecs = codec_support()

    assert (codecs.h264, codecs.aac) == (True, True)
    log.info("HEVC %s, AV1 %s", codecs.hevc, codecs.av1)
