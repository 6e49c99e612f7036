"""A container's log on disk: one record a line, stamped when the agent read it.

A container's stdout and stderr share one pipe (so their order is kept), which a
:class:`LogPump` thread reads into ``<pod dir>/<container>.log`` in CRI's log line format
without the stream field: ``<RFC 3339 time with nanoseconds> <F|P> <text>``. ``F`` ends a line;
``P`` is part of one (16 KiB of a longer line, or output that ended without a newline). The
times are what ``timestamps``, ``sinceSeconds`` and ``sinceTime`` read, as kubelet's are.

When a container starts again, its log moves to ``<container>.previous.log``: kubelet keeps the
last terminated instance's log for ``kubectl logs --previous``, and so does the agent.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

LOG = logging.getLogger("nodeagent.logs")

MAX_RECORD = 16 * 1024  # containerd's line buffer: longer lines are split into P records
_RFC3339 = re.compile(
    r"(?P<base>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(?P<frac>\d{1,9}))?(?P<zone>Z|[+-]\d\d:\d\d)$"
)


class NoLogError(Exception):
    """No log to serve: ``status`` and kubelet's message for it."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ContainerLog:
    """A log file to serve, and the pump still writing it (None: nothing writes it now)."""

    path: Path
    writer: LogPump | None = None

    @property
    def complete(self) -> bool:
        """Nothing will be appended any more."""
        return self.writer is None or self.writer.finished.is_set()


@dataclass(frozen=True)
class Record:
    time_ns: int
    text: bytes  # without the line's newline
    partial: bool = False

    def output(self) -> bytes:
        return self.text if self.partial else self.text + b"\n"


def format_time(time_ns: int) -> str:
    """RFC 3339 in UTC with nine fraction digits (kubelet's ``RFC3339NanoFixed``)."""
    seconds, nanos = divmod(time_ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def parse_time(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (any fraction, ``Z`` or an offset)."""
    m = _RFC3339.match(text)
    if m is None:
        raise ValueError(f"not an RFC 3339 time: {text!r}")
    zone = "+00:00" if m["zone"] == "Z" else m["zone"]
    base = dt.datetime.fromisoformat(m["base"] + zone)
    nanos = int((m["frac"] or "0").ljust(9, "0"))
    return int(base.timestamp()) * 1_000_000_000 + nanos


def encode(record: Record) -> bytes:
    tag = b"P" if record.partial else b"F"
    return format_time(record.time_ns).encode() + b" " + tag + b" " + record.text + b"\n"


def decode(line: bytes) -> Record:
    """One line of a log file, without its newline. A line in no known format (a log written
    before records were stamped) is kept as a full line from the start of the epoch."""
    stamp, _, rest = line.partition(b" ")
    tag, sep, text = rest.partition(b" ")
    if sep and tag in (b"F", b"P"):
        try:
            return Record(parse_time(stamp.decode("ascii")), text, tag == b"P")
        except (UnicodeDecodeError, ValueError):
            pass
    return Record(0, line)


def decode_complete(data: bytes) -> tuple[list[Record], int]:
    """The records of the complete lines in ``data`` and how many bytes they took; a last line
    without its newline is still being written."""
    end = data.rfind(b"\n") + 1
    return [decode(line) for line in data[:end].split(b"\n")[:-1]], end


def current_log(pod_dir: Path, container: str) -> Path:
    return pod_dir / f"{container}.log"


def previous_log(pod_dir: Path, container: str) -> Path:
    return pod_dir / f"{container}.previous.log"


def rotate(pod_dir: Path, container: str) -> None:
    """A new instance of the container starts: the last one's log becomes the previous log."""
    try:
        current_log(pod_dir, container).replace(previous_log(pod_dir, container))
    except FileNotFoundError:
        pass  # its first instance
    except OSError as exc:
        LOG.warning("%s: keeping the log of %s's last instance failed: %s", pod_dir, container, exc)


class LogPump(threading.Thread):
    """Copies a container's output pipe into its log file, a stamped record per line, until
    every writer of the pipe has closed it."""

    def __init__(
        self, source: IO[bytes], path: Path, clock: Callable[[], int] = time.time_ns
    ) -> None:
        super().__init__(name=f"log {path.parent.name}/{path.name}", daemon=True)
        self.source = source
        self.path = path
        self.clock = clock
        self.finished = threading.Event()

    def run(self) -> None:
        try:
            with self.path.open("ab", buffering=0) as out:
                self._copy(out)
        except OSError as exc:
            LOG.warning("%s: %s; dropping the rest of the output", self.path, exc)
            while self.source.read(65536):  # keep the pipe flowing: a full pipe blocks writers
                pass
        finally:
            self.source.close()
            self.finished.set()

    def _copy(self, out: BinaryIO) -> None:
        while chunk := self.source.readline(MAX_RECORD):
            partial = not chunk.endswith(b"\n")
            text = chunk if partial else chunk[:-1]
            out.write(encode(Record(self.clock(), text, partial)))
