"""The kube-transcode command line: what it accepts, what it refuses, and how it says so."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from kube_transcode.ladder import NAMED_RUNGS, HlsOptions
from kube_transcode_worker import cli
from kube_transcode_worker.cli import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_TEMPORARY,
    build_parser,
    describe_failure,
)
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError, TransientJobError
from kube_transcode_worker.oneshot import BadRequestError, TranscodeRequest, check_request
from kube_transcode_worker.settings import PipelineSettings
from kube_transcode_worker.terminal import ProgressReporter, format_duration, render_status

pytestmark = pytest.mark.unit


def parse(*argv: str) -> TranscodeRequest:
    return cli.request_from_args(build_parser().parse_args(["transcode", *argv]))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """Run main() with bad arguments: it must exit 2 and say why on stderr."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(["transcode", *argv])
    assert exit_.value.code == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "in.mp4"
    path.write_bytes(b"not checked here")
    return path


def test_defaults_are_the_workers(source: Path) -> None:
    request = parse(str(source), "out")
    assert request.rungs is None  # every named rung, those above the source dropped
    assert request.hls.segment_seconds == HlsOptions().segment_seconds
    assert request.preset == PipelineSettings.model_fields["ffmpeg_preset"].default
    assert request.overwrite is False


def test_named_rungs_segment_length_and_preset_are_taken(source: Path) -> None:
    request = parse(
        str(source), "s3://videos/clip", "--rungs", "360p, 720p", "--segment-seconds", "4",
        "--preset", "ultrafast", "--overwrite",
    )  # fmt: skip
    assert request.rungs == [NAMED_RUNGS["360p"], NAMED_RUNGS["720p"]]
    assert request.hls.segment_seconds == 4
    assert request.preset == "ultrafast"
    assert request.overwrite is True


def test_an_unknown_rung_is_refused_with_the_names_there_are(
    capsys: pytest.CaptureFixture[str], source: Path
) -> None:
    err = usage_error(capsys, str(source), "out", "--rungs", "360p,4k")
    assert "unknown rung '4k'" in err
    assert "240p, 360p, 480p, 720p, 1080p" in err


@pytest.mark.parametrize(
    ("rungs", "message"),
    [(",", "at least one rung"), ("360p,360p", "rung named more than once: 360p")],
)
def test_empty_or_repeated_rung_lists_are_refused(
    capsys: pytest.CaptureFixture[str], source: Path, rungs: str, message: str
) -> None:
    assert message in usage_error(capsys, str(source), "out", "--rungs", rungs)


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "greater than or equal to 1"), ("31", "less than or equal to 30"), ("2.5", "2.5")],
)
def test_segment_length_is_checked_like_a_jobs(
    capsys: pytest.CaptureFixture[str], source: Path, value: str, message: str
) -> None:
    err = usage_error(capsys, str(source), "out", "--segment-seconds", value)
    assert "--segment-seconds" in err and message in err


def test_an_unknown_preset_is_refused(capsys: pytest.CaptureFixture[str], source: Path) -> None:
    assert "invalid choice: 'turbo'" in usage_error(capsys, str(source), "out", "--preset", "turbo")


def test_a_missing_source_fails_before_any_work(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code = cli.main(["transcode", str(tmp_path / "nowhere.mp4"), str(tmp_path / "out")])
    assert code == EXIT_BAD_INPUT
    captured = capsys.readouterr()
    assert "nowhere.mp4 is not a file" in captured.err
    assert captured.out == ""
    assert not (tmp_path / "out").exists()


def refused(request: TranscodeRequest) -> str:
    with pytest.raises(BadRequestError) as error:
        check_request(request)
    return str(error.value)


def test_a_non_empty_folder_is_only_replaced_with_overwrite(source: Path, tmp_path: Path) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine")
    assert "pass --overwrite" in refused(TranscodeRequest(str(source), str(dest)))
    check_request(TranscodeRequest(str(source), str(dest), overwrite=True))


def test_overwrite_never_replaces_a_folder_holding_the_source(source: Path, tmp_path: Path) -> None:
    request = TranscodeRequest(str(source), str(tmp_path), overwrite=True)
    assert "lies inside DEST" in refused(request)


def test_overwrite_never_replaces_the_current_directory(
    source: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "notes.txt").write_text("mine")
    monkeypatch.chdir(cwd)
    assert "holds the current directory" in refused(
        TranscodeRequest(str(source), ".", overwrite=True)
    )


def test_a_file_is_no_destination_folder(source: Path, tmp_path: Path) -> None:
    assert "is not a folder" in refused(TranscodeRequest(str(source), str(source)))


@pytest.mark.parametrize(
    ("dest", "message"),
    [
        ("s3://videos", "is not s3://<bucket>/<prefix>"),
        ("s3://Bad_Bucket/clip", "not a valid S3 bucket name"),
        ("s3://videos/a/../b", "must not contain empty, '.' or '..' parts"),
        ("https://example.com/out", "DEST must be a local folder or s3://bucket/prefix"),
    ],
)
def test_s3_destinations_are_checked_like_a_jobs_output(
    source: Path, dest: str, message: str
) -> None:
    assert message in refused(TranscodeRequest(str(source), dest))


@pytest.mark.parametrize(
    ("error", "code", "line"),
    [
        (
            PermanentJobError("NoVideoStream", "the source has no video stream"),
            EXIT_BAD_INPUT,
            "NoVideoStream: the source has no video stream",
        ),
        (
            TransientJobError("StorageUnavailable", "cannot reach S3"),
            EXIT_TEMPORARY,
            "StorageUnavailable: cannot reach S3 (a retry may succeed)",
        ),
        (JobCancelledError(), EXIT_INTERRUPTED, "interrupted; no new master playlist"),
        (KeyboardInterrupt(), EXIT_INTERRUPTED, "interrupted; no new master playlist"),
        (BadRequestError("DEST x is not empty"), EXIT_BAD_INPUT, "DEST x is not empty"),
    ],
)
def test_failures_become_one_line_and_an_exit_code(
    error: BaseException, code: int, line: str
) -> None:
    got_code, got_line = describe_failure(error)
    assert got_code == code
    assert got_line.startswith(line)


def test_durations_read_like_a_clock() -> None:
    assert [format_duration(s) for s in (0, 7.4, 62, 3723)] == ["0:00", "0:07", "1:02", "1:02:03"]


def test_status_line_has_bar_percent_elapsed_and_time_left() -> None:
    line = render_status("encoding", 25.0, elapsed=10.0, width=8)
    assert line == "encoding    [##......]  25.0%  0:10  ~0:30 left"
    assert render_status("probing", None, elapsed=1.0) == "probing     0:01"
    assert "left" not in render_status("encoding", 100.0, elapsed=40.0)
    assert "left" not in render_status("encoding", 0.2, elapsed=1.0)  # too early to guess


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_prints_phase_changes_then_every_interval_and_the_end() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = ProgressReporter(out, interactive=False, interval_seconds=10, clock=clock)
    progress.update("probing")
    for second in range(25):
        clock.now = 1 + second
        progress.update("encoding", second * 4)
    progress.update("encoding", 100.0)
    progress.close()

    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["probing", *["encoding"] * 4]
    assert [line.split("]")[1].split()[0] for line in lines[1:]] == [
        "0.0%", "40.0%", "80.0%", "100.0%",
    ]  # fmt: skip
    assert "\r" not in out.getvalue()


def test_terminal_progress_redraws_one_line_and_ends_it() -> None:
    out, clock = io.StringIO(), FakeClock()
    progress = ProgressReporter(out, interactive=True, clock=clock)
    progress.update("encoding", 10.0)
    clock.now = 0.05
    progress.update("encoding", 11.0)  # within a tenth of a second: not drawn
    clock.now = 1.0
    progress.update("encoding", 50.0)
    progress.close()

    text = out.getvalue()
    assert text.count("\r") == 3  # 10%, 50%, and the final redraw that ends the line
    assert "11.0%" not in text
    assert text.endswith("\n")


def test_quiet_progress_prints_nothing() -> None:
    out = io.StringIO()
    progress = ProgressReporter(out, interactive=True, enabled=False)
    progress.update("encoding", 50.0)
    progress.close()
    assert out.getvalue() == ""


def test_codecs_segment_format_and_thumbnails_default_like_a_jobs(source: Path) -> None:
    request = parse(str(source), "out")
    assert request.video.codecs == ("h264",)
    assert request.hls.segment_format == "ts"
    assert request.thumbnails.poster.enabled and request.thumbnails.storyboard.enabled
    assert request.thumbnails.storyboard.interval_seconds == 10


def test_codecs_format_and_thumbnail_options_are_taken(source: Path) -> None:
    request = parse(
        str(source), "out", "--codecs", "h264, av1", "--segment-format", "fmp4", "--no-poster",
        "--storyboard-interval", "4", "--storyboard-grid", "4x3",
    )  # fmt: skip
    assert request.video.codecs == ("h264", "av1")
    assert request.hls.segment_format == "fmp4"
    assert not request.thumbnails.poster.enabled
    storyboard = request.thumbnails.storyboard
    assert (storyboard.interval_seconds, storyboard.columns, storyboard.rows) == (4, 4, 3)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("--codecs", "h264,vp9"), "unknown video codec 'vp9'; codecs are h264, hevc, av1"),
        (("--codecs", "av1,av1"), "video codecs must be unique"),
        (("--codecs", ","), "give at least one video codec"),
        (("--segment-format", "cmaf"), "invalid choice: 'cmaf'"),
        (("--storyboard-interval", "0"), "greater than or equal to 1"),
        (("--storyboard-grid", "5by5"), "COLUMNSxROWS"),
    ],
)
def test_bad_codec_format_and_thumbnail_options_are_refused(
    capsys: pytest.CaptureFixture[str], source: Path, argv: tuple[str, ...], message: str
) -> None:
    assert message in usage_error(capsys, str(source), "out", *argv)
