"""Small helpers shared by the node agent's modules: time formats and logging."""

from __future__ import annotations

import datetime as dt
import logging
import sys

LOG = logging.getLogger("nodeagent")


def now_rfc3339(at: dt.datetime | None = None) -> str:
    """Kubernetes ``metav1.Time``: RFC 3339 in UTC with second precision."""
    t = at or dt.datetime.now(dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro(at: dt.datetime | None = None) -> str:
    """Kubernetes ``metav1.MicroTime`` (used by Leases): RFC 3339 with microseconds."""
    t = at or dt.datetime.now(dt.UTC)
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )
