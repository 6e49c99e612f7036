"""A progress line for a terminal, or plain lines for logs: phases, a bar, time and ETA."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TextIO


def format_duration(seconds: float) -> str:
    """0:07, 1:02:03: short enough for a status line."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_status(phase: str, percent: float | None, elapsed: float, width: int = 30) -> str:
    """One status line: a bar when the phase has a percentage, the phase's elapsed time, ETA."""
    if percent is None:
        return f"{phase:<11} {format_duration(elapsed)}"
    percent = min(100.0, max(0.0, percent))
    filled = round(width * percent / 100)
    line = f"{phase:<11} [{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}%"
    line += f"  {format_duration(elapsed)}"
    # The first percent or so gives no usable rate; a wild guess is worse than none.
    if 1.0 <= percent < 100.0:
        line += f"  ~{format_duration(elapsed * (100 - percent) / percent)} left"
    return line


class ProgressReporter:
    """Phases and percentages to stderr: a redrawn bar on a terminal, plain lines otherwise.

    Plain lines (logs, CI) come on every phase change and then at most every
    `interval_seconds`, so a long encode leaves a readable, short trace. Thread-safe: the
    upload reports from the store's upload threads.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interactive: bool,
        enabled: bool = True,
        interval_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interactive = interactive
        self.enabled = enabled
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._phase_started = 0.0
        self._last_draw = float("-inf")
        self._bar_open = False
        self._last_line = ""

    @classmethod
    def for_stream(cls, stream: TextIO, *, enabled: bool = True) -> ProgressReporter:
        return cls(stream, interactive=stream.isatty(), enabled=enabled)

    def update(self, phase: str, percent: float | None = None) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            changed = phase != self._phase
            if changed:
                if self._bar_open:
                    self._redraw(self._last_line, final=True)
                self._phase, self._phase_started = phase, now
            line = render_status(phase, percent, now - self._phase_started)
            self._last_line = line
            if self.interactive:
                # A terminal redraws cheaply, but 10 redraws a second are all an eye can use.
                if changed or now - self._last_draw >= 0.1 or percent == 100.0:
                    self._redraw(line, final=False)
                    self._last_draw = now
            elif changed or percent == 100.0 or now - self._last_draw >= self.interval_seconds:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_draw = now

    def close(self) -> None:
        """End the bar's line, so what follows starts on a line of its own."""
        with self._lock:
            if self._bar_open:
                self._redraw(self._last_line, final=True)

    def _redraw(self, line: str, *, final: bool) -> None:
        # \r back to the start, \x1b[K erases what a longer previous line left behind.
        self.stream.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
        self.stream.flush()
        self._bar_open = not final
