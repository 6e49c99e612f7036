"""The operator's log keeps what matters and drops kopf's per-event success lines."""

from __future__ import annotations

import logging

import pytest

from kube_transcode_operator.logs import ROUTINE_HANDLERS, RoutineSuccessFilter

pytestmark = pytest.mark.unit


def passes(message: str, level: int = logging.INFO) -> bool:
    record = logging.LogRecord("kopf.objects", level, __file__, 1, message, None, None)
    return RoutineSuccessFilter(ROUTINE_HANDLERS).filter(record)


@pytest.mark.parametrize(
    "message",
    [
        "Handler 'phases' succeeded.",
        "Timer 'autoscale' succeeded.",
        "Timer 'deadline' succeeded.",
        "Timer 'ttl' succeeded.",
    ],
)
def test_routine_successes_are_dropped(message: str) -> None:
    assert not passes(message)


@pytest.mark.parametrize(
    "message",
    [
        "Handler 'on_create' succeeded.",
        "Handler 'on_delete' succeeded.",
        "Creation is processed: 1 succeeded; 0 failed.",
        "Timer 'autoscale' failed with an exception. Will retry.",
        "published generation 1 to transcode.default in 0.010s",
    ],
)
def test_what_happened_to_jobs_is_kept(message: str) -> None:
    assert passes(message)


def test_nothing_above_info_is_dropped() -> None:
    assert passes("Timer 'autoscale' succeeded.", level=logging.WARNING)


def test_the_routine_handlers_are_the_operators() -> None:
    from kube_transcode_operator import main

    for handler_id in ROUTINE_HANDLERS:
        assert callable(getattr(main, handler_id)), handler_id
