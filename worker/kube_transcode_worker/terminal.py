"""A progress line for a terminal, or plain lines for logs: phases, a bar, bytes and rate, time
and ETA."""

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


def format_bytes(count: float) -> str:
    """1.5 KiB, 40.0 MiB: binary units, one decimal."""
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def format_transfer(done: int, total: int, rate: float | None) -> str:
    """'16.0 MiB/40.0 MiB  2.0 MiB/s': bytes moved and, once known, the rate."""
    text = f"{format_bytes(done)}/{format_bytes(total)}"
    return text if rate is None else f"{text}  {format_bytes(rate)}/s"


def render_status(
    phase: str, percent: float | None, elapsed: float, width: int = 30, detail: str = ""
) -> str:
    """One status line: a bar when the phase has a percentage, `detail` (bytes and rate), the
    phase's elapsed time, ETA."""
    if percent is None:
        return f"{phase:<11} {format_duration(elapsed)}"
    percent = min(100.0, max(0.0, percent))
    filled = round(width * percent / 100)
    line = f"{phase:<11} [{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}%"
    if detail:
        line += f"  {detail}"
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
        self._phase_bytes = 0
        self._last_draw = float("-inf")
        self._bar_open = False
        self._last_line = ""

    @classmethod
    def for_stream(cls, stream: TextIO, *, enabled: bool = True) -> ProgressReporter:
        return cls(stream, interactive=stream.isatty(), enabled=enabled)

    def update(self, phase: str, percent: float | None = None) -> None:
        self._show(phase, percent, None)

    def update_bytes(self, phase: str, done: int, total: int) -> None:
        """A transfer: the bar from bytes, with bytes and the rate since the phase began (bytes
        there at its first update, e.g. parts uploaded before an interruption, do not count)."""
        percent = 100.0 if total <= 0 else 100.0 * done / total
        self._show(phase, percent, (done, total))

    def _show(self, phase: str, percent: float | None, transfer: tuple[int, int] | None) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            changed = phase != self._phase
            if changed:
                if self._bar_open:
                    self._redraw(self._last_line, final=True)
                self._phase, self._phase_started = phase, now
                self._phase_bytes = transfer[0] if transfer else 0
            detail = ""
            if transfer is not None:
                elapsed = now - self._phase_started
                moved = transfer[0] - self._phase_bytes
                rate = moved / elapsed if elapsed >= 0.5 and moved > 0 else None
                detail = format_transfer(transfer[0], transfer[1], rate)
            line = render_status(phase, percent, now - self._phase_started, detail=detail)
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
