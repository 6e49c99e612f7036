"""FFmpeg progress parsing and the encode process's life: progress, failure, cancellation.

The process tests run a stand-in for ffmpeg (a tiny Python script) so they are fast and
deterministic; the real FFmpeg is exercised in tests/integration/test_ladder_ffmpeg.py.
"""

from __future__ import annotations

import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from kube_transcode.ladder import LadderPlan, SourceInfo, plan_ladder
from kube_transcode_worker.encode import (
    ProgressUpdate,
    parse_progress,
    progress_percent,
    run_encode,
)
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError, TransientJobError

pytestmark = pytest.mark.unit

BLOCK = """frame=72
fps=0.00
stream_0_0_q=-1.0
bitrate=N/A
total_size=N/A
out_time_us={us}
out_time_ms={us}
out_time=00:00:03.018600
dup_frames=0
drop_frames=0
speed=12.5x
progress={state}
"""


def test_each_block_yields_one_update_at_its_progress_line() -> None:
    text = BLOCK.format(us=1_500_000, state="continue") + BLOCK.format(us=3_018_600, state="end")
    assert list(parse_progress(text.splitlines(keepends=True))) == [
        ProgressUpdate(out_time_us=1_500_000, finished=False),
        ProgressUpdate(out_time_us=3_018_600, finished=True),
    ]


def test_unknown_and_negative_times_do_not_break_the_parser() -> None:
    lines = ["out_time_us=N/A", "progress=continue", "out_time_us=-23220", "progress=continue"]
    assert list(parse_progress(lines)) == [
        ProgressUpdate(out_time_us=None, finished=False),
        ProgressUpdate(out_time_us=0, finished=False),
    ]


def test_out_time_ms_is_read_as_microseconds_when_out_time_us_is_missing() -> None:
    lines = ["out_time_ms=2000000", "progress=end"]
    assert list(parse_progress(lines)) == [ProgressUpdate(out_time_us=2_000_000, finished=True)]


def test_noise_and_a_block_without_progress_line_yield_nothing() -> None:
    assert list(parse_progress(["", "garbage", "frame=1", "out_time_us=10"])) == []


@pytest.mark.parametrize(
    ("out_time_us", "duration", "percent"),
    [(0, 10.0, 0.0), (5_000_000, 10.0, 50.0), (10_500_000, 10.0, 100.0), (1_000_000, 0.0, 0.0)],
)
def test_percent_is_output_time_over_source_duration_clamped(
    out_time_us: int, duration: float, percent: float
) -> None:
    assert progress_percent(out_time_us, duration) == pytest.approx(percent)


def small_plan(duration: float = 4.0) -> LadderPlan:
    info = SourceInfo(
        width=640,
        height=360,
        duration_seconds=duration,
        fps=Fraction(30),
        has_audio=False,
        video_codec="h264",
        container="matroska,webm",
    )
    return plan_ladder(info)


def fake_ffmpeg(tmp_path: Path, body: str) -> str:
    """An executable that ignores ffmpeg's arguments and does what body says."""
    script = tmp_path / "fake-ffmpeg"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, signal, sys, time\n"
        "def block(us, state='continue'):\n"
        "    print(f'out_time_us={us}\\nprogress={state}', flush=True)\n"
        f"{body}\n"
    )
    script.chmod(0o755)
    return str(script)


def encode_with(
    tmp_path: Path,
    body: str,
    *,
    cancel: threading.Event | None = None,
    on_progress: list[float] | None = None,
    kill_grace_seconds: float = 5.0,
) -> float:
    seen = on_progress if on_progress is not None else []
    result = run_encode(
        small_plan(),
        tmp_path / "src.mkv",
        tmp_path / "out",
        seen.append,
        cancel or threading.Event(),
        ffmpeg=fake_ffmpeg(tmp_path, body),
        kill_grace_seconds=kill_grace_seconds,
    )
    return result.encoded_seconds


def test_progress_is_reported_in_percent_and_ends_at_100(tmp_path: Path) -> None:
    seen: list[float] = []
    body = "block(1_000_000)\nblock(3_000_000)\nblock(4_000_000, 'end')"
    assert encode_with(tmp_path, body, on_progress=seen) == pytest.approx(4.0)
    assert seen == [pytest.approx(25.0), pytest.approx(75.0), 100.0]


def test_failure_is_permanent_and_carries_ffmpeg_last_error_lines(tmp_path: Path) -> None:
    body = (
        "print('harmless warning', file=sys.stderr)\n"
        "print('Error initializing output stream 0:0', file=sys.stderr)\nsys.exit(1)"
    )
    with pytest.raises(PermanentJobError) as failure:
        encode_with(tmp_path, body)
    assert failure.value.reason == "EncodeFailed"
    assert "Error initializing output stream 0:0" in failure.value.message


def test_a_full_disk_is_transient(tmp_path: Path) -> None:
    body = "print('seg_00003.ts: No space left on device', file=sys.stderr)\nsys.exit(1)"
    with pytest.raises(TransientJobError) as failure:
        encode_with(tmp_path, body)
    assert failure.value.reason == "DiskFull"


def test_ffmpeg_killed_from_outside_is_transient(tmp_path: Path) -> None:
    with pytest.raises(TransientJobError) as failure:
        encode_with(tmp_path, "os.kill(os.getpid(), signal.SIGKILL)")
    assert failure.value.reason == "EncoderKilled"


def test_output_much_shorter_than_the_source_means_a_truncated_source(tmp_path: Path) -> None:
    with pytest.raises(PermanentJobError) as failure:
        encode_with(tmp_path, "block(2_000_000, 'end')")
    assert failure.value.reason == "TruncatedSource"
    assert "2.0 s of 4.0 s" in failure.value.message


@pytest.mark.timeout(20)
def test_cancel_stops_a_running_encode(tmp_path: Path) -> None:
    cancel = threading.Event()
    seen: list[float] = []

    def on_progress(percent: float) -> None:
        seen.append(percent)
        cancel.set()

    body = "block(500_000)\ntime.sleep(600)"
    with pytest.raises(JobCancelledError) as stopped:
        run_encode(
            small_plan(),
            tmp_path / "src.mkv",
            tmp_path / "out",
            on_progress,
            cancel,
            ffmpeg=fake_ffmpeg(tmp_path, body),
        )
    assert stopped.value.reason == "Cancelled"
    assert seen == [pytest.approx(12.5)]


@pytest.mark.timeout(20)
def test_an_encoder_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    body = "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nblock(0)\ntime.sleep(600)"
    with pytest.raises(JobCancelledError):
        encode_with(tmp_path, body, cancel=cancel, kill_grace_seconds=0.5)


@pytest.mark.timeout(20)
def test_an_exception_in_the_progress_callback_stops_ffmpeg(tmp_path: Path) -> None:
    def on_progress(_percent: float) -> None:
        raise RuntimeError("event queue gone")

    with pytest.raises(RuntimeError, match="event queue gone"):
        run_encode(
            small_plan(),
            tmp_path / "src.mkv",
            tmp_path / "out",
            on_progress,
            threading.Event(),
            ffmpeg=fake_ffmpeg(tmp_path, "block(500_000)\ntime.sleep(600)"),
        )
