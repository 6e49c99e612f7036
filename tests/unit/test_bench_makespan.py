"""The chunked benchmark's makespan model: list scheduling in queue order, serial ends once."""

from __future__ import annotations

import pytest

from benchmarks.makespan import PartTimes, list_schedule, makespan, overhead_share, scaled

pytestmark = pytest.mark.unit

TIMES = PartTimes(plan=5.0, chunks=(10.0, 10.0, 10.0, 10.0), audio=3.0, assembly=2.0)


def test_one_worker_does_every_part_after_the_plan_and_before_the_assembly() -> None:
    assert makespan(TIMES, 1).seconds == pytest.approx(5 + 43 + 2)


def test_two_workers_take_the_parts_in_queue_order() -> None:
    # 10,10 | 10,10 | then the audio on the first one free: 20 + 3.
    assert list_schedule(TIMES.parts, 2) == pytest.approx(23)
    assert makespan(TIMES, 2).seconds == pytest.approx(30)


def test_beyond_one_worker_per_part_the_longest_part_bounds_it() -> None:
    for workers in (5, 8, 64):
        result = makespan(TIMES, workers)
        assert result.seconds == pytest.approx(5 + 10 + 2)
        assert result.limit.startswith("parts: 5 parts")


def test_a_long_audio_part_is_the_bound_when_chunks_are_spread_thin() -> None:
    times = PartTimes(plan=1.0, chunks=(4.0,) * 8, audio=20.0, assembly=1.0)
    assert makespan(times, 4).seconds == pytest.approx(1 + 8 + 20 + 1)


def test_overhead_share_is_over_the_chunks_own_encode() -> None:
    assert overhead_share(2.0, 0.5, 12) == pytest.approx(2 / 6)
    assert overhead_share(2.0, 0.5, 60) == pytest.approx(2 / 30)


def test_a_longer_source_is_cut_into_chunks_with_the_overhead_each() -> None:
    long = scaled(TIMES, 40, 100, 30, encode_per_second=0.5, overhead_seconds=1.0)
    # 30, 30, 40 (the remainder joins the last chunk)
    assert long.chunks == pytest.approx((16.0, 16.0, 21.0))
    assert long.audio == pytest.approx(7.5)
    assert long.plan == pytest.approx(12.5)
    assert long.assembly == TIMES.assembly


def test_no_workers_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one worker"):
        list_schedule((1.0,), 0)


def test_one_part_longer_than_the_rest_shared_out_is_named_as_the_bound() -> None:
    times = PartTimes(plan=1.0, chunks=(4.0,) * 8, audio=20.0, assembly=1.0)
    assert makespan(times, 4).limit == "the longest part (20.0 s)"
    assert makespan(times, 2).limit.startswith("workers")
