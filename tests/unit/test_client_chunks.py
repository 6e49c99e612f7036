"""`kube-transcode watch`/`submit` following a chunked job: its chunks on lines of their own,
the bar's phase left alone so its time and ETA hold."""

from __future__ import annotations

import io
from typing import Any

import pytest

from kube_transcode_client.follow import Chunks, JobDisplay, job_state
from kube_transcode_worker.terminal import ProgressReporter

pytestmark = pytest.mark.unit


def running(done: int, running: int, progress: int, redone: int = 0) -> dict[str, Any]:
    chunks = {"total": 13, "done": done, "running": running, "redone": redone,
              "summary": f"{done}/13"}  # fmt: skip
    return {"status": {"phase": "Running", "progress": progress, "chunks": chunks}}


def test_a_job_state_has_chunks_only_when_status_has_them() -> None:
    assert job_state({"status": {"phase": "Running", "progress": 5}}).chunks is None
    state = job_state(running(5, 2, 41))
    assert state.chunks == Chunks(total=13, done=5, running=2, redone=0)
    assert state.chunks.describe() == "chunks 5/13 done, 2 running"
    assert job_state(running(6, 1, 50, redone=1)).chunks.describe() == (  # type: ignore[union-attr]
        "chunks 6/13 done, 1 running, 1 redone"
    )


def test_chunks_are_shown_when_one_more_is_stored_and_the_bar_keeps_its_phase() -> None:
    stream = io.StringIO()
    clock = iter(float(second) for second in range(100))
    progress = ProgressReporter(stream, interactive=False, interval_seconds=0.0,
                                clock=lambda: next(clock))  # fmt: skip
    display = JobDisplay(progress)
    display.show(job_state({"status": {"phase": "Queued"}}))
    display.show(job_state(running(0, 2, 3)))
    display.show(job_state(running(0, 3, 8)))  # only the running ones changed
    display.show(job_state(running(1, 2, 12)))
    lines = stream.getvalue().splitlines()
    assert [line for line in lines if line.startswith("chunks")] == [
        "chunks 0/13 done, 2 running",
        "chunks 1/13 done, 2 running",
    ]
    bars = [line for line in lines if line.startswith("Running")]
    assert [bar.split("]")[1].split()[0] for bar in bars] == ["3.0%", "8.0%", "12.0%"]
    # One phase all along: the elapsed time counts from the first Running line.
    assert bars[-1].split()[3] == "0:02"
