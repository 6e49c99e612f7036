"""At most one progress patch per key (a job, or one part of a chunked job) per interval; every
other kind of event goes at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class ProgressCoalescer(Generic[T]):
    """Holds the latest progress update per key until its interval since the last patch passed.

    `offer` says whether to apply an update now; held ones come back from `due`. A transition
    (anything but plain progress) is applied at once by the caller, who then calls `applied`,
    which also drops a held update the transition superseded.
    """

    interval: float
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, T] = field(default_factory=dict)

    def offer(self, key: str, update: T, now: float) -> bool:
        last = self._last.get(key)
        if last is None or now - last >= self.interval:
            return True
        self._held[key] = update
        return False

    def applied(self, key: str, now: float) -> None:
        self._last[key] = now
        self._held.pop(key, None)

    def due(self, now: float) -> list[tuple[str, T]]:
        ready = [
            (key, update)
            for key, update in self._held.items()
            if now - self._last.get(key, 0.0) >= self.interval
        ]
        for key, _ in ready:
            del self._held[key]
        return ready

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
        self._held.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Every key that starts with `prefix` (all parts of a job)."""
        for key in [k for k in {*self._last, *self._held} if k.startswith(prefix)]:
            self.forget(key)
