"""Waiting for a condition with a deadline, instead of sleeping and hoping."""

from __future__ import annotations

import time
from collections.abc import Callable


class NotReadyError(RuntimeError):
    pass


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    interval: float = 0.25,
    on_timeout_hint: str = "",
    alive: Callable[[], bool] | None = None,
) -> None:
    """Poll check() until it is true; give up early when alive() says the process died."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    hint = f"; {on_timeout_hint}" if on_timeout_hint else ""
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise NotReadyError(f"{what} exited before it became ready{hint}")
        try:
            if check():
                return
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise NotReadyError(f"{what} not ready after {timeout:.0f} s{detail}{hint}")
