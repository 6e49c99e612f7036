"""Waiting for a condition with a deadline, instead of sleeping and hoping: the one polling
loop of the dev stack, the tests and the benchmarks.

`wait_until` polls `check` until it returns something truthy and hands that back, or fails
naming what it waited for, with `detail()` (a log file's path, `kubectl get` output) to show
why. An exception from `check` ends the wait at once unless it is one of `retry_on` (a server
still starting refuses connections); `alive` ends it early when the process waited for died.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.2


class TimedOutError(RuntimeError):
    pass


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    detail: Callable[[], str] | None = None,
    *,
    interval: float = POLL_SECONDS,
    retry_on: tuple[type[Exception], ...] = (),
    alive: Callable[[], bool] | None = None,
) -> T:
    """check()'s first truthy result; TimedOutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while True:
        if alive is not None and not alive():
            raise TimedOutError(f"gave up waiting for {what}: it exited{_shown(detail)}")
        try:
            result = check()
        except retry_on as error:
            last_error, result = error, None
        if result:
            return result
        if time.monotonic() > deadline:
            error_text = f" (last error: {last_error})" if last_error is not None else ""
            raise TimedOutError(
                f"timed out after {timeout:.0f} s waiting for {what}{error_text}{_shown(detail)}"
            )
        time.sleep(interval)


def _shown(detail: Callable[[], str] | None) -> str:
    return f"\n{detail()}" if detail is not None else ""
