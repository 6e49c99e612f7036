"""The operator's log: what happened to jobs and pools, not a line per watch event.

kopf logs "Handler 'x' succeeded." at INFO after every call. For the handlers that run on
every watch event or every second (the jobs-by-phase observer, the autoscaler tick, the
deadline and TTL checks) that is a line per event or per second per object, and it buries
what an on-call engineer looks for; their failures and retries are still logged. The
liveness endpoint's access log (a probe every few seconds) goes too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Final

# The handler ids of main.py that run on every event or on a short interval.
ROUTINE_HANDLERS: Final = frozenset({"phases", "autoscale", "deadline", "ttl"})


class RoutineSuccessFilter(logging.Filter):
    """Drops kopf's success line of routine handlers; keeps everything else."""

    def __init__(self, handler_ids: Iterable[str]) -> None:
        super().__init__()
        self._quiet = frozenset(
            f"{kind} {handler_id!r} succeeded."
            for handler_id in handler_ids
            for kind in ("Handler", "Timer", "Daemon")
        )

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or record.getMessage() not in self._quiet


def configure() -> None:
    logging.getLogger("kopf.objects").addFilter(RoutineSuccessFilter(ROUTINE_HANDLERS))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # pika logs every failed connection attempt with a traceback; the consumer logs one line.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
