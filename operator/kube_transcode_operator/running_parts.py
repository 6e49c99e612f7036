"""Which parts of chunked jobs are running, and how far each is: what the events since this
operator started have shown. Pure and in memory.

Lost on a restart, which is fine: status.chunks keeps done and redone, progress never goes
down, and the next progress events of the running parts rebuild this.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kube_transcode.messages import JobEvent, Phase
from kube_transcode_operator.transitions import RUNNING_PHASES

# A stored or failed part runs no more: any attempt of it is a late event.
_NEVER: Final = sys.maxsize


def job_key(event: JobEvent) -> str:
    return f"{event.job.uid}/{event.job.generation}"


@dataclass
class RunningParts:
    # job key -> part -> (attempt, progress percent of that part, the worker running it)
    _running: dict[str, dict[str, tuple[int, float, str]]] = field(default_factory=dict)
    # job key -> part -> the lowest attempt that may still run (late events of older ones,
    # or of a stored part, must not bring it back)
    _floor: dict[str, dict[str, int]] = field(default_factory=dict)

    def observe(self, event: JobEvent) -> None:
        """Learn from a part's event (the job's own events change nothing here)."""
        part = event.part
        if part is None or event.chunk is None:
            if event.phase.terminal:
                self.forget(job_key(event))
            return
        key = job_key(event)
        running = self._running.setdefault(key, {})
        floor = self._floor.setdefault(key, {})
        if event.phase.terminal:
            self.forget(key)
        elif event.phase is Phase.requeued:
            running.pop(part, None)
            # A spot interruption comes back with the same attempt, a retry with the next.
            floor[part] = max(floor.get(part, 0), event.next_attempt or event.attempt)
        elif event.chunk.stored:
            running.pop(part, None)
            floor[part] = _NEVER
        elif event.phase in RUNNING_PHASES and event.attempt >= floor.get(part, 0):
            previous = running.get(part)
            if previous is None or previous[0] < event.attempt:
                running[part] = (event.attempt, event.progress_percent, event.worker)
            elif previous[0] == event.attempt:  # a late or repeated event lowers nothing
                percent = max(previous[1], event.progress_percent)
                running[part] = (event.attempt, percent, event.worker)

    def of(self, key: str) -> Mapping[str, float]:
        """The job's running parts and their progress."""
        return {part: percent for part, (_, percent, _) in self._running.get(key, {}).items()}

    def workers(self, key: str) -> set[str]:
        """The workers running the job's parts."""
        return {worker for _, _, worker in self._running.get(key, {}).values()}

    def forget(self, key: str) -> None:
        self._running.pop(key, None)
        self._floor.pop(key, None)
