"""The container-log query, as kubelet reads it, and which records it selects (pure).

The API server passes ``kubectl logs`` options on as query parameters (``follow``,
``previous``, ``timestamps``, ``tailLines``, ``sinceSeconds``, ``sinceTime``, ``limitBytes``).
Kubelet decodes them as a v1 ``PodLogOptions`` (a bool is false only when absent, ``0`` or
``false``; the old ``tail`` parameter still works, ``tail=all`` means every line), answers 400
"Unable to decode query." when a value does not parse and 422 "Invalid request." when the
options are invalid. Selection follows kubelet's log reader: the last ``tailLines`` records
first, then only those not older than the since time; ``limitBytes`` cuts the output, timestamp
prefixes included.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .logfile import Record, format_time, parse_time

BAD_QUERY = (400, '{"message": "Unable to decode query."}')
INVALID = (422, '{"message": "Invalid request."}')


class QueryError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class LogQuery:
    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since_ns: int | None = None  # absolute: sinceSeconds is resolved against the request time
    limit_bytes: int | None = None


def _bool(values: Sequence[str] | None) -> bool:
    if not values:
        return False
    return not (values[0] == "0" or values[0].lower() == "false")


def _int(values: Sequence[str] | None) -> int | None:
    if not values:
        return None
    try:
        return int(values[0])
    except ValueError:
        raise QueryError(*BAD_QUERY) from None


def parse_query(params: Mapping[str, Sequence[str]], now_ns: int) -> LogQuery:
    """``params`` as ``urllib.parse.parse_qs(..., keep_blank_values=True)`` returns them."""
    query = dict(params)
    tail = query.pop("tail", None)
    if tail:
        if tail[0] == "all":
            query.pop("tailLines", None)
        else:
            query["tailLines"] = tail
    stream = query.get("stream")
    if stream and stream[0] != "All":
        raise QueryError(
            400,
            f'unable to return the given log stream: "{stream[0]}": '
            "stdout and stderr share one pipe on the node agent",
        )
    tail_lines = _int(query.get("tailLines"))
    limit_bytes = _int(query.get("limitBytes"))
    since_seconds = _int(query.get("sinceSeconds"))
    since_time = query.get("sinceTime")
    since_ns: int | None = None
    if since_time and since_time[0]:
        try:
            since_ns = parse_time(since_time[0])
        except ValueError:
            raise QueryError(*BAD_QUERY) from None
    if (
        (tail_lines is not None and tail_lines < 0)
        or (limit_bytes is not None and limit_bytes < 1)
        or (since_seconds is not None and (since_seconds < 1 or since_ns is not None))
    ):
        raise QueryError(*INVALID)
    if since_seconds is not None:
        since_ns = now_ns - since_seconds * 1_000_000_000
    return LogQuery(
        follow=_bool(query.get("follow")),
        previous=_bool(query.get("previous")),
        timestamps=_bool(query.get("timestamps")),
        tail_lines=tail_lines,
        since_ns=since_ns,
        limit_bytes=limit_bytes,
    )


def newer(records: Iterable[Record], since_ns: int | None) -> list[Record]:
    if since_ns is None:
        return list(records)
    return [r for r in records if r.time_ns >= since_ns]


def select_records(records: Sequence[Record], query: LogQuery) -> list[Record]:
    """What a first read returns: the tail, then the records since the since time."""
    if query.tail_lines is not None:
        records = records[max(0, len(records) - query.tail_lines) :] if query.tail_lines else []
    return newer(records, query.since_ns)


class Output:
    """Turns records into the bytes sent: timestamps at the start of each line (not before the
    rest of a partial one), never more than limitBytes in all."""

    def __init__(self, query: LogQuery) -> None:
        self.timestamps = query.timestamps
        self.remaining = query.limit_bytes
        self._line_start = True

    @property
    def full(self) -> bool:
        return self.remaining is not None and self.remaining <= 0

    def render(self, records: Iterable[Record]) -> bytes:
        out = bytearray()
        for r in records:
            if self.full:
                break
            data = r.output()
            if self.timestamps and self._line_start:
                data = format_time(r.time_ns).encode() + b" " + data
            self._line_start = not r.partial
            if self.remaining is not None:
                data = data[: self.remaining]
                self.remaining -= len(data)
            out += data
        return bytes(out)
