"""A chunked job's makespan on N workers, simulated from measured part times. Pure.

The queue hands parts out in the order the plan published them (video chunks, then audio),
each to the next worker that is free (prefetch 1): list scheduling in queue order. The job
also pays its serial ends once: the plan (fetch, probe, stage, publish) before any part, and
the assembly (playlists, master last) after the last.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PartTimes:
    """Measured seconds of one chunked job's pieces (walls, each on one core)."""

    plan: float
    chunks: tuple[float, ...]  # each video chunk's wall, in queue order
    audio: float  # 0 when the source has none
    assembly: float

    @property
    def parts(self) -> tuple[float, ...]:
        return self.chunks + ((self.audio,) if self.audio > 0 else ())


@dataclass(frozen=True)
class Makespan:
    workers: int
    seconds: float
    busiest_worker: float  # the parts' span between plan and assembly
    limit: str  # what bounds it at this many workers


def list_schedule(parts: Sequence[float], workers: int) -> float:
    """When the last part ends if each, in order, goes to the earliest free worker."""
    if workers < 1:
        raise ValueError("at least one worker")
    free = [0.0] * min(workers, max(1, len(parts)))
    heapq.heapify(free)
    end = 0.0
    for seconds in parts:
        start = heapq.heappop(free)
        end = max(end, start + seconds)
        heapq.heappush(free, start + seconds)
    return end


def makespan(times: PartTimes, workers: int) -> Makespan:
    span = list_schedule(times.parts, workers)
    parts = times.parts
    longest = max(parts, default=0.0)
    if workers >= len(parts):
        limit = f"parts: {len(parts)} parts, the longest {longest:.1f} s"
    elif longest >= sum(parts) / workers:
        limit = f"the longest part ({longest:.1f} s)"
    else:
        limit = f"workers: {len(parts)} parts over {workers}"
    return Makespan(workers, times.plan + span + times.assembly, span, limit)


def overhead_share(
    overhead_seconds: float, encode_per_second: float, chunk_seconds: float
) -> float:
    """Per-chunk overhead over the chunk's own encode time, for a chunk of that length."""
    return overhead_seconds / (encode_per_second * chunk_seconds)


def scaled(
    times: PartTimes,
    source_seconds: float,
    target_seconds: float,
    chunk_seconds: float,
    encode_per_second: float,
    overhead_seconds: float,
) -> PartTimes:
    """The pieces of a longer source, from per-second costs and the per-chunk overhead.

    Chunk walls are `overhead + encode_per_second * chunk length`; the audio part and the
    plan (its fetch and staging move the whole source) grow with the duration; the assembly
    is kept as measured (its playlists grow with the segments, but little next to the rest).
    """
    factor = target_seconds / source_seconds
    count = int(target_seconds // chunk_seconds)
    rest = target_seconds - count * chunk_seconds
    lengths = [chunk_seconds] * count
    if rest > 0:
        lengths[-1] += rest
    chunks = tuple(overhead_seconds + encode_per_second * length for length in lengths)
    return PartTimes(
        plan=times.plan * factor, chunks=chunks, audio=times.audio * factor, assembly=times.assembly
    )
