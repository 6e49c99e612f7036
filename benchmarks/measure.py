"""Run a command and measure it: wall time, CPU time, and peak RSS of its process tree.

CPU comes from getrusage(RUSAGE_CHILDREN) around the wait, so it includes grandchildren the
child reaped (FFmpeg under a Python worker). Peak RSS is sampled from /proc over the whole
tree every 50 ms, as a container's memory would count it (shared pages counted per process,
so it errs high); getrusage's ru_maxrss cannot give it, being per process and never reset.
"""

from __future__ import annotations

import resource
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from benchmarks.report import Sample

SAMPLE_INTERVAL_SECONDS = 0.05
STDERR_TAIL_CHARS = 2000


class CommandFailedError(RuntimeError):
    pass


def _children(pid: int) -> Iterator[int]:
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        for child in text.split():
            yield int(child)


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of pid and all its descendants, now (0 for processes already gone)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
                break
        pending.extend(_children(current))
    return total


def _cpu_seconds_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log: Path | None = None,
) -> Sample:
    """Run argv to completion; CommandFailedError with its stderr tail when it fails.

    Only one measured command may run at a time in this process: the CPU figure is the growth
    of RUSAGE_CHILDREN, which counts every child reaped meanwhile.
    """
    log = log or Path("/dev/null")
    with log.open("w") as stderr:
        cpu_before = _cpu_seconds_of_children()
        started = time.monotonic()
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=dict(env) if env is not None else None,
        )
        peak = 0
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, tree_rss_bytes(process.pid))
                done.wait(SAMPLE_INTERVAL_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = process.wait()
        wall = time.monotonic() - started
        done.set()
        sampler.join()
    cpu = _cpu_seconds_of_children() - cpu_before
    if returncode != 0:
        tail = log.read_text()[-STDERR_TAIL_CHARS:] if log.is_file() else ""
        raise CommandFailedError(f"{argv[0]} exited with {returncode}: {tail}")
    return Sample(wall_seconds=wall, cpu_seconds=cpu, peak_rss_bytes=peak)
