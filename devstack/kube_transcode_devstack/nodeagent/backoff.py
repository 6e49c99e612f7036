"""Kubelet's container restart back-off (k8s.io/client-go/util/flowcontrol.Backoff).

The first restart after a crash is immediate; each further one waits base, 2*base, ... up to
cap (10 s doubling to 5 min by default). The back-off resets when no crash happened for
2*cap.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    base: float = 10.0
    cap: float = 300.0
    current: float | None = None
    last_update: float | None = None

    def _expired(self, t: float) -> bool:
        return self.last_update is None or t - self.last_update > 2 * self.cap

    def next_delay(self, finished_at: float) -> float:
        """Called once per exit that will be followed by a restart; returns the wait."""
        if self.current is None or self._expired(finished_at):
            delay = 0.0
            self.current = self.base
        else:
            delay = self.current
            self.current = min(self.current * 2, self.cap)
        self.last_update = finished_at
        return delay
