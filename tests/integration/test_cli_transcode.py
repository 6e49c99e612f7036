"""`kube-transcode transcode` as a user runs it: the console script, real FFmpeg and MinIO."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from kube_transcode.codecs import SegmentFormat, check_codecs_fit
from kube_transcode.ladder import NAMED_RUNGS, HlsOptions, LadderPlan, VideoOptions, plan_ladder
from kube_transcode_devstack.services import MinIO
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
from kube_transcode_worker.playlists import parse_media_playlist
from kube_transcode_worker.probe import probe_source
from tests.harness.media import check_ladder, make_source
from tests.harness.thumbnails import check_poster, check_storyboard, jpeg_size, parse_cues

pytestmark = pytest.mark.integration

# The console script installed beside this interpreter: the same one a user's shell finds.
KUBE_TRANSCODE = Path(sys.executable).with_name("kube-transcode")
FAST = ("--preset", "ultrafast", "--segment-seconds", "1")


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str


def kube_transcode(*args: str, env: dict[str, str] | None = None) -> Run:
    completed = subprocess.run(
        [str(KUBE_TRANSCODE), "transcode", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


def planned(
    source: Path, *rungs: str, segment_format: SegmentFormat = "ts", codecs: str = "h264"
) -> LadderPlan:
    """The ladder a user expects: the named rungs that fit the source, 1 s segments."""
    requested = [NAMED_RUNGS[name] for name in rungs] or None
    return plan_ladder(
        probe_source(source),
        requested,
        hls=HlsOptions(segment_seconds=1, segment_format=segment_format),
        video=VideoOptions.model_validate({"codecs": codecs.split(",")}),
    )


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("clip")
    return make_source(folder / "clip.mp4", width=640, height=360, seconds=2)


@pytest.fixture
def s3_env(minio: MinIO) -> dict[str, str]:
    return {
        "KT_S3_ENDPOINT_URL": minio.endpoint,
        "KT_S3_ACCESS_KEY_ID": minio.creds.s3_access_key,
        "KT_S3_SECRET_ACCESS_KEY": minio.creds.s3_secret_key,
    }


def download(s3: Any, bucket: str, prefix: str, dest: Path) -> dict[str, str]:
    """Every object under prefix into dest; returns each key's Content-Type."""
    types = {}
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/")
    for obj in listing.get("Contents", []):
        relative = obj["Key"].removeprefix(f"{prefix}/")
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(bucket, obj["Key"], str(target))
        types[relative] = s3.head_object(Bucket=bucket, Key=obj["Key"])["ContentType"]
    return types


def test_a_clip_becomes_a_playable_ladder_in_a_folder(clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "ladder"

    run = kube_transcode(str(clip), str(dest), "--rungs", "240p,360p,720p", *FAST)

    assert run.code == 0, run.stderr
    assert run.stdout == f"{dest / MASTER_PLAYLIST_NAME}\n"  # alone on stdout, for scripts
    master = check_ladder(dest, planned(clip, "240p", "360p", "720p"))
    assert sorted(v.uri for v in master.variants) == ["240p/index.m3u8", "360p/index.m3u8"]
    # Not a terminal: plain progress lines, no bar redrawn with carriage returns.
    assert "\r" not in run.stderr
    assert "encoding" in run.stderr and "100.0%" in run.stderr
    assert "360p   640x360 800 kbps h264 main@3.0" in run.stderr  # each rendition's codec
    # Poster and storyboard by default, as a TranscodeJob that says nothing about them.
    check_poster(dest / "poster.jpg", width=640)  # the source's width: never upscaled
    (cue,) = parse_cues((dest / "storyboard" / "storyboard.vtt").read_text())
    assert (cue.start, cue.end, cue.sheet) == (0, 2, "sheet-0001.jpg")  # one every 10 s
    assert jpeg_size(dest / "storyboard" / cue.sheet) == (5 * 160, 5 * 90)  # a 5x5 sheet


def test_fmp4_segments_carry_h264_and_av1_renditions_with_poster_and_storyboard(
    clip: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "ladder"

    run = kube_transcode(
        str(clip), str(dest), "--rungs", "240p,360p", "--segment-format", "fmp4",
        "--codecs", "h264,av1", "--storyboard-interval", "1", "--thumbnail-width", "120",
        "--storyboard-grid", "2x1", *FAST,
    )  # fmt: skip

    assert run.code == 0, run.stderr
    plan = planned(clip, "240p", "360p", segment_format="fmp4", codecs="h264,av1")
    master = check_ladder(dest, plan)
    codecs = {v.uri.split("/")[0]: v.attributes["CODECS"] for v in master.variants}
    assert sorted(codecs) == ["240p", "240p-av1", "360p", "360p-av1"]
    assert [codecs[name].split(".")[0] for name in sorted(codecs)] == ["avc1", "av01"] * 2
    for name in codecs:
        folder = dest / name
        playlist = parse_media_playlist((folder / "index.m3u8").read_text())
        # An init segment, then fragments: what EXT-X-MAP and the segment lines name is there.
        assert playlist.init_uri == f"init_{name}.mp4"
        assert (folder / playlist.init_uri).stat().st_size > 0
        assert sorted(p.name for p in folder.glob("seg_*")) == [s.uri for s in playlist.segments]
        assert all(s.uri.endswith(".m4s") for s in playlist.segments), playlist.segments
    assert "360p-av1 640x360 480 kbps av1 main@" in run.stderr
    check_poster(dest / "poster.jpg", width=640)
    cues = check_storyboard(dest / "storyboard", duration_seconds=2, thumb_width=120)
    assert [(cue.start, cue.sheet, cue.x) for cue in cues] == [
        (0, "sheet-0001.jpg", 0),
        (1, "sheet-0001.jpg", 120),
    ]


def test_hevc_in_mpeg_ts_is_refused_with_the_jobs_message(clip: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs hls\.segmentFormat fmp4") as refusal:
        check_codecs_fit(("h264", "hevc"), "ts")

    run = kube_transcode(str(clip), str(tmp_path / "out"), "--codecs", "h264,hevc", *FAST)

    assert run.code == 2
    assert f"kube-transcode: {refusal.value}" in run.stderr
    assert "--segment-format fmp4" in run.stderr
    assert run.stdout == ""
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("codecs", "message"),
    [
        ("h264,vp9", "unknown video codec 'vp9'; codecs are h264, hevc, av1"),
        ("av1,av1", "video codecs must be unique, got av1, av1"),
    ],
)
def test_unknown_or_repeated_codecs_are_refused_as_usage_errors(
    clip: Path, tmp_path: Path, codecs: str, message: str
) -> None:
    run = kube_transcode(
        str(clip), str(tmp_path / "out"), "--segment-format", "fmp4", "--codecs", codecs, *FAST
    )

    assert run.code == 2
    assert f"argument --codecs: {message}" in run.stderr
    assert not (tmp_path / "out").exists()


def test_no_poster_and_no_storyboard_leave_only_the_ladder(clip: Path, tmp_path: Path) -> None:
    dest = tmp_path / "ladder"

    run = kube_transcode(
        str(clip), str(dest), "--rungs", "240p", "--no-poster", "--no-storyboard", *FAST
    )

    assert run.code == 0, run.stderr
    assert sorted(p.name for p in dest.iterdir()) == ["240p", "audio", MASTER_PLAYLIST_NAME]
    assert "poster" not in run.stderr and "storyboard" not in run.stderr
    # Nothing left beside DEST either: the thumbnails' scratch folder is gone.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ladder"]


def test_quiet_prints_only_the_master_playlist(clip: Path, tmp_path: Path) -> None:
    run = kube_transcode(str(clip), str(tmp_path / "out"), "--rungs", "240p", "-q", *FAST)

    assert (run.code, run.stderr) == (0, "")
    assert run.stdout.strip().endswith("out/master.m3u8")


def test_a_file_that_is_no_video_fails_with_the_reason_and_exit_2(tmp_path: Path) -> None:
    notes = tmp_path / "notes.mp4"
    notes.write_text("plain text pretending to be a video\n" * 20)

    run = kube_transcode(str(notes), str(tmp_path / "out"), *FAST)

    assert run.code == 2
    assert "kube-transcode: UnreadableSource: ffprobe cannot read the source" in run.stderr
    assert run.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.mp4"]  # nothing half-made


def test_a_clip_goes_to_an_s3_prefix_with_master_and_renditions(
    clip: Path, tmp_path: Path, s3: Any, bucket: str, s3_env: dict[str, str]
) -> None:
    run = kube_transcode(str(clip), f"s3://{bucket}/shows/clip", *FAST, env=s3_env)

    assert run.code == 0, run.stderr
    assert run.stdout == f"s3://{bucket}/shows/clip/master.m3u8\n"
    assert "uploading" in run.stderr
    types = download(s3, bucket, "shows/clip", tmp_path / "got")
    check_ladder(tmp_path / "got", planned(clip))
    assert types["master.m3u8"] == "application/vnd.apple.mpegurl"
    assert types["360p/seg_00000.ts"] == "video/mp2t"
    # Poster and storyboard go up with the ladder, typed for a browser.
    assert types["poster.jpg"] == types["storyboard/sheet-0001.jpg"] == "image/jpeg"
    assert types["storyboard/storyboard.vtt"] == "text/vtt"
    check_poster(tmp_path / "got" / "poster.jpg", width=640)


def test_an_s3_source_is_fetched_and_an_existing_ladder_kept_without_overwrite(
    clip: Path, tmp_path: Path, s3: Any, bucket: str, s3_env: dict[str, str]
) -> None:
    s3.upload_file(str(clip), bucket, "uploads/clip.mp4")
    source, dest = f"s3://{bucket}/uploads/clip.mp4", f"s3://{bucket}/out"

    first = kube_transcode(source, dest, "--rungs", "240p", *FAST, env=s3_env)
    again = kube_transcode(source, dest, "--rungs", "360p", *FAST, env=s3_env)
    replaced = kube_transcode(source, dest, "--rungs", "360p", "--overwrite", *FAST, env=s3_env)

    assert first.code == 0, first.stderr
    assert "fetching" in first.stderr
    assert again.code == 2
    assert "already holds objects; pass --overwrite" in again.stderr
    assert replaced.code == 0, replaced.stderr
    download(s3, bucket, "out", tmp_path / "got")
    master = check_ladder(tmp_path / "got", planned(clip, "360p"))
    assert [v.uri for v in master.variants] == ["360p/index.m3u8"]
    assert not (tmp_path / "got" / "240p").exists()  # the earlier rung's objects are gone


def test_a_missing_s3_source_is_reported_as_not_found(
    tmp_path: Path, bucket: str, s3_env: dict[str, str]
) -> None:
    run = kube_transcode(f"s3://{bucket}/nope.mp4", str(tmp_path / "out"), *FAST, env=s3_env)

    assert run.code == 2
    assert f"SourceNotFound: s3://{bucket}/nope.mp4 does not exist" in run.stderr
    assert not (tmp_path / "out").exists()


def test_unreachable_storage_is_a_temporary_failure(clip: Path) -> None:
    # Nothing listens on port 9 of loopback (discard): the connection is refused at once.
    env = {
        "KT_S3_ENDPOINT_URL": "http://127.0.0.1:9",
        "KT_S3_ACCESS_KEY_ID": "someone",
        "KT_S3_SECRET_ACCESS_KEY": "secret",
    }

    run = kube_transcode(str(clip), "s3://videos/clip", *FAST, env=env)

    assert run.code == 75, run.stderr
    assert "StorageUnavailable" in run.stderr


def test_s3_without_credentials_says_which_variables_to_set(
    clip: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in (
        "KT_S3_ACCESS_KEY_ID",
        "KT_S3_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ):
        monkeypatch.delenv(name, raising=False)
    # No shared credentials file or instance profile either: boto3 looks nowhere else.
    env = {
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }

    run = kube_transcode(str(clip), "s3://videos/clip", *FAST, env=env)

    assert run.code == 2
    assert "no S3 credentials: set KT_S3_ACCESS_KEY_ID and KT_S3_SECRET_ACCESS_KEY" in run.stderr
