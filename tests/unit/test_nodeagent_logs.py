"""Node agent: container logs on disk and the kubelet log query, without servers."""

from __future__ import annotations

import io
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from kube_transcode_devstack.nodeagent.logfile import (
    MAX_RECORD,
    LogPump,
    Record,
    current_log,
    decode,
    decode_complete,
    encode,
    format_time,
    parse_time,
    previous_log,
    rotate,
)
from kube_transcode_devstack.nodeagent.logquery import (
    LogQuery,
    Output,
    QueryError,
    parse_query,
    select_records,
)
from kube_transcode_devstack.nodeagent.logserver import ServingTLS, parse_path
from kube_transcode_devstack.pki import Pki

pytestmark = pytest.mark.unit

S = 1_000_000_000
T0 = 1_767_225_600 * S  # 2026-01-01T00:00:00Z


def test_times_are_rfc3339_with_nine_fraction_digits() -> None:
    assert format_time(T0 + 5) == "2026-01-01T00:00:00.000000005Z"
    assert parse_time("2026-01-01T00:00:00.000000005Z") == T0 + 5
    assert parse_time("2026-01-01T00:00:00Z") == T0
    assert parse_time("2026-01-01T01:00:00.5+01:00") == T0 + S // 2
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time("yesterday")


def test_records_round_trip_and_old_lines_are_kept() -> None:
    for record in (
        Record(T0, b"a line with  spaces"),
        Record(T0 + 1, b"", partial=False),
        Record(T0 + 2, b"half a li", partial=True),
    ):
        line = encode(record)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert decode(line[:-1]) == record
    assert decode(b"written before lines were stamped") == Record(
        0, b"written before lines were stamped"
    )


def test_an_unfinished_last_line_is_left_for_later() -> None:
    data = encode(Record(T0, b"one")) + encode(Record(T0 + 1, b"two"))
    records, used = decode_complete(data + data[:7])
    assert [r.text for r in records] == [b"one", b"two"] and used == len(data)
    assert decode_complete(b"") == ([], 0)


def test_the_pump_stamps_each_line_and_splits_long_ones(tmp_path: Path) -> None:
    ticks: Iterator[int] = iter(range(T0, T0 + 100))
    log = tmp_path / "c.log"
    read_end, write_end = os.pipe()
    pump = LogPump(os.fdopen(read_end, "rb"), log, clock=lambda: next(ticks))
    pump.start()
    with os.fdopen(write_end, "wb") as w:
        w.write(b"first\n" + b"x" * (MAX_RECORD + 3) + b"\nno newline at the end")
    pump.join(5)
    assert pump.finished.is_set()
    records, _ = decode_complete(log.read_bytes())
    assert records == [
        Record(T0, b"first"),
        Record(T0 + 1, b"x" * MAX_RECORD, partial=True),
        Record(T0 + 2, b"xxx"),
        Record(T0 + 3, b"no newline at the end", partial=True),
    ]
    assert b"".join(r.output() for r in records) == (
        b"first\n" + b"x" * (MAX_RECORD + 3) + b"\nno newline at the end"
    )


def test_a_pump_that_cannot_write_still_drains_the_pipe(tmp_path: Path) -> None:
    pump = LogPump(io.BytesIO(b"x\n" * 1000), tmp_path / "missing-dir" / "c.log")
    pump.run()
    assert pump.finished.is_set() and pump.source.closed


def test_a_restart_keeps_the_last_instance_log_as_previous(tmp_path: Path) -> None:
    rotate(tmp_path, "c")  # a first start: nothing to keep
    assert not previous_log(tmp_path, "c").exists()
    current_log(tmp_path, "c").write_bytes(b"one")
    rotate(tmp_path, "c")
    current_log(tmp_path, "c").write_bytes(b"two")
    rotate(tmp_path, "c")
    assert previous_log(tmp_path, "c").read_bytes() == b"two"
    assert not current_log(tmp_path, "c").exists()


def q(**params: str) -> LogQuery:
    return parse_query({k: [v] for k, v in params.items()}, now_ns=T0)


def test_query_reads_like_kubelet() -> None:
    assert q() == LogQuery()
    assert q(follow="true", previous="1", timestamps="") == LogQuery(
        follow=True, previous=True, timestamps=True
    )
    assert q(follow="false", previous="0", timestamps="False") == LogQuery()
    assert q(tailLines="5", limitBytes="10") == LogQuery(tail_lines=5, limit_bytes=10)
    assert q(tail="3").tail_lines == 3  # the old name
    assert q(tail="all", tailLines="3").tail_lines is None
    assert q(sinceSeconds="10").since_ns == T0 - 10 * S
    assert q(sinceTime="2026-01-01T00:00:05Z").since_ns == T0 + 5 * S
    assert q(stream="All") == LogQuery()


@pytest.mark.parametrize(
    ("params", "status"),
    [
        ({"tailLines": "x"}, 400),
        ({"sinceTime": "soon"}, 400),
        ({"stream": "Stderr"}, 400),
        ({"tailLines": "-1"}, 422),
        ({"limitBytes": "0"}, 422),
        ({"sinceSeconds": "0"}, 422),
        ({"sinceSeconds": "5", "sinceTime": "2026-01-01T00:00:00Z"}, 422),
    ],
)
def test_bad_queries_are_refused_as_kubelet_does(params: dict[str, str], status: int) -> None:
    with pytest.raises(QueryError) as err:
        q(**params)
    assert err.value.status == status


def recs(*seconds: int) -> list[Record]:
    return [Record(T0 + s * S, f"line {s}".encode()) for s in seconds]


def test_tail_comes_first_then_since() -> None:
    records = recs(1, 2, 3, 4, 5)
    assert select_records(records, LogQuery()) == records
    assert select_records(records, LogQuery(tail_lines=2)) == recs(4, 5)
    assert select_records(records, LogQuery(tail_lines=0)) == []
    assert select_records(records, LogQuery(tail_lines=9)) == records
    assert select_records(records, LogQuery(since_ns=T0 + 3 * S)) == recs(3, 4, 5)
    # kubelet tails first: of the last three, those since 4 s.
    assert select_records(records, LogQuery(tail_lines=3, since_ns=T0 + 4 * S)) == recs(4, 5)


def test_output_stamps_line_starts_and_stops_at_the_byte_limit() -> None:
    records = [
        Record(T0, b"hel", partial=True),
        Record(T0 + 1, b"lo"),
        Record(T0 + 2, b"next"),
    ]
    plain = Output(LogQuery())
    assert plain.render(records) == b"hello\nnext\n"
    stamped = Output(LogQuery(timestamps=True)).render(records)
    assert stamped == (
        b"2026-01-01T00:00:00.000000000Z hello\n2026-01-01T00:00:00.000000002Z next\n"
    )
    limited = Output(LogQuery(timestamps=True, limit_bytes=36))
    assert limited.render(records) == b"2026-01-01T00:00:00.000000000Z hello"
    assert limited.full and limited.render(recs(9)) == b""


def test_the_log_path_names_namespace_pod_and_container() -> None:
    assert parse_path("/containerLogs/ns/pod-1/main") == ("ns", "pod-1", "main")
    assert parse_path("/containerLogs/ns/pod-1") is None
    assert parse_path("/containerLogs/ns//main") is None
    assert parse_path("/exec/ns/pod-1/main") is None


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> str:
    """A TLS handshake over a socket pair: "ok", or the server's error."""
    a, b = socket.socketpair()
    outcome: list[str] = []

    def serve() -> None:
        try:
            with server.wrap_socket(a, server_side=True) as s:
                s.recv(1)
                outcome.append("ok")
        except (OSError, ssl.SSLError) as exc:
            outcome.append(str(exc))

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client.wrap_socket(b, server_hostname="127.0.0.1") as c:
            c.sendall(b"x")
    except (OSError, ssl.SSLError):
        pass
    t.join(10)
    return outcome[0]


def test_serving_certificates_are_for_the_node_and_want_a_client_of_the_ca(
    tmp_path: Path,
) -> None:
    pki = Pki(tmp_path)
    pki.ensure()
    pki.ensure_kubelet_serving("spot-1")
    cert = x509.load_pem_x509_certificate(pki.cert("kubelet-spot-1").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["spot-1"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]

    server = ServingTLS(tmp_path, pki.ca_cert).context("spot-1")
    apiserver = ssl.create_default_context(cafile=str(pki.ca_cert))
    apiserver.load_cert_chain(
        pki.cert("apiserver-kubelet-client"), pki.key("apiserver-kubelet-client")
    )
    assert handshake(server, apiserver) == "ok"
    anonymous = ssl.create_default_context(cafile=str(pki.ca_cert))
    assert "certificate" in handshake(server, anonymous)
