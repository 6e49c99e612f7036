"""Events that cannot apply yet, held per job: a job's oldest held event is tried again on its
own due time while every other job's events go on; the later events of the same job wait in
line behind it, so a job's events still apply in the order they came.

Pure: the caller passes the time (monotonic seconds) and settles what it takes out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass
class Held(Generic[T]):
    item: T
    # When it was first tried, as the first of its line: what the give-up limit counts from.
    since: float


@dataclass
class _Line(Generic[T]):
    waiting: deque[Held[T]]
    due: float


class Backlog(Generic[T]):
    def __init__(self, retry_seconds: float) -> None:
        self._retry = retry_seconds
        self._lines: dict[str, _Line[T]] = {}

    def blocked(self, key: str) -> bool:
        """The job has an event held: a newer one of it must wait behind."""
        return key in self._lines

    def hold(self, key: str, item: T, now: float) -> None:
        """The first of its job (just tried): again after the retry interval; else the last in
        its job's line, untried until it is the first."""
        line = self._lines.get(key)
        if line is None:
            self._lines[key] = _Line(deque([Held(item, now)]), now + self._retry)
        else:
            line.waiting.append(Held(item, now))

    def last(self, key: str) -> T:
        return self._lines[key].waiting[-1].item

    def replace_last(self, key: str, item: T) -> T:
        """Put `item` in the place (and the waiting time) of the job's last one; returns that."""
        held = self._lines[key].waiting[-1]
        replaced, held.item = held.item, item
        return replaced

    def due(self, now: float) -> list[tuple[str, Held[T]]]:
        """The first of each job's line whose time has come (it stays held until settled)."""
        return [(key, line.waiting[0]) for key, line in self._lines.items() if line.due <= now]

    def later(self, key: str, now: float) -> None:
        """The first of the job's line did not apply: again after the retry interval."""
        self._lines[key].due = now + self._retry

    def settled(self, key: str, now: float) -> None:
        """The first of the job's line is settled; the next one (if any) is due at once, and
        its waiting time starts now."""
        line = self._lines[key]
        line.waiting.popleft()
        if line.waiting:
            line.due = line.waiting[0].since = now
        else:
            del self._lines[key]

    def clear(self) -> None:
        """Forget everything: the deliveries are void (their channel closed) and come again."""
        self._lines.clear()
