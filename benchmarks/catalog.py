"""Every benchmark the runner knows, in the order `python -m benchmarks` runs them."""

from __future__ import annotations

from benchmarks import autoscale, chunked, codecs, ffmpeg_builds, operator_queue, worker
from benchmarks.registry import Benchmark

BENCHMARKS: tuple[Benchmark, ...] = (
    worker.BENCHMARK,
    chunked.BENCHMARK,
    ffmpeg_builds.BENCHMARK,
    codecs.BENCHMARK,
    operator_queue.BENCHMARK,
    autoscale.BENCHMARK,
)


def by_name() -> dict[str, Benchmark]:
    return {benchmark.name: benchmark for benchmark in BENCHMARKS}
