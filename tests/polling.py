"""Waiting for a condition in tests: the one polling loop every suite uses.

A test waits for what a user would check (a phase, a Pod, a file), never for a fixed time:
`wait_until` polls `check` until it returns something truthy and hands that back, or fails
naming what it waited for, with `detail()` (e.g. `kubectl get` output) to show why.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
POLL_SECONDS = 0.2


def wait_until(
    what: str,
    check: Callable[[], T | None],
    timeout: float,
    detail: Callable[[], str] | None = None,
    *,
    interval: float = POLL_SECONDS,
) -> T:
    """check()'s first truthy result; AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            shown = f"\n{detail()}" if detail is not None else ""
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{shown}")
        time.sleep(interval)
