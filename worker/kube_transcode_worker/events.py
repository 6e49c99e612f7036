"""Events of one attempt, as the job sees them: phase changes, and progress at most ~1/s.

The sink hands events to the connection thread without waiting, so a slow or absent broker
never holds up an encode; progress is dropped rather than queued when it comes too often.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from kube_transcode.messages import ChunkReport, JobEvent, JobMessage, Phase, now_utc

log = logging.getLogger(__name__)

EventSink = Callable[[JobEvent], None]


class AttemptReporter:
    def __init__(
        self,
        message: JobMessage,
        worker: str,
        sink: EventSink,
        *,
        min_interval_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.message = message
        self.worker = worker
        self.sink = sink
        self.min_interval = min_interval_seconds
        self.clock = clock
        self.started_at: datetime = now_utc()
        self._phase = Phase.fetching
        self._percent = 0.0
        self._last_sent = float("-inf")
        self._lock = threading.Lock()
        # A chunked job's part: what every event of this attempt says about the parts.
        self.chunk: ChunkReport | None = None

    @property
    def percent(self) -> float:
        return self._percent

    def event(self, phase: Phase, **fields: Any) -> JobEvent:
        fields.setdefault("progress_percent", self._percent)
        fields.setdefault("chunk", self.chunk)
        return JobEvent(
            job=self.message.job,
            attempt=self.message.attempt,
            worker=self.worker,
            phase=phase,
            started_at=self.started_at,
            at=now_utc(),
            **fields,
        )

    def phase(self, phase: Phase) -> None:
        with self._lock:
            self._phase = phase
            self._last_sent = self.clock()
        self._send(self.event(phase))

    def progress(self, percent: float) -> None:
        """Record progress; send it when the last event is at least the interval old."""
        with self._lock:
            self._percent = max(self._percent, min(100.0, percent))
            now = self.clock()
            if now - self._last_sent < self.min_interval:
                return
            self._last_sent = now
            phase = self._phase
        self._send(self.event(phase))

    def _send(self, event: JobEvent) -> None:
        try:
            self.sink(event)
        except Exception:  # the broker's trouble must not become the job's
            log.warning("dropped %s event: broker unavailable", event.phase, exc_info=True)
