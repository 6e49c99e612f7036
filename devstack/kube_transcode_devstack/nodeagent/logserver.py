"""The kubelet API's container-log endpoint, over mutual TLS: one HTTPS listener per Node.

``kubectl logs`` asks the API server, which looks up the Pod's Node, dials its address
(``--kubelet-preferred-address-types=InternalIP,...``: 127.0.0.1 here) on the port the Node
publishes in ``status.daemonEndpoints.kubeletEndpoint.Port``, verifies the serving certificate
against ``--kubelet-certificate-authority`` and presents its ``--kubelet-client-certificate``.
The listener serves ``GET /containerLogs/{namespace}/{pod}/{container}`` and nothing else, and
accepts only clients whose certificate the client CA signed.

Every connection has a thread of its own (TLS handshake included, so a stalled client holds up
no one); ``follow`` streams until the log is complete (the container's output pipe closed) or
the client goes away. Errors are answered, logged, and end only their own connection.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO, Protocol

from .logfile import ContainerLog, NoLogError, decode_complete
from .logquery import LogQuery, Output, QueryError, newer, parse_query, select_records

LOG = logging.getLogger("nodeagent.logserver")

FOLLOW_POLL = 0.25  # how often a follow looks for new lines and for its client having gone
HANDSHAKE_TIMEOUT = 10.0
WRITE_TIMEOUT = 60.0  # a client that reads nothing for this long is dropped
READ_SIZE = 1 << 20


class LogSource(Protocol):
    def container_log(
        self, node: str, namespace: str, pod: str, container: str, *, previous: bool
    ) -> ContainerLog:
        """Raises NoLogError."""
        ...


@dataclass(frozen=True)
class ServingTLS:
    """The agent's kubelet serving certificates (``kubelet-<node>.crt``/``.key`` in
    ``cert_dir``) and the CA its clients' certificates must chain to."""

    cert_dir: Path
    client_ca: Path

    def context(self, node: str) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(
            self.cert_dir / f"kubelet-{node}.crt", self.cert_dir / f"kubelet-{node}.key"
        )
        ctx.load_verify_locations(cafile=str(self.client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def parse_path(path: str) -> tuple[str, str, str] | None:
    """``/containerLogs/{namespace}/{pod}/{container}`` -> its three parts."""
    parts = [urllib.parse.unquote(p) for p in path.split("/")]
    if len(parts) != 5 or parts[0] or parts[1] != "containerLogs" or not all(parts[2:]):
        return None
    return parts[2], parts[3], parts[4]


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, node: str, port: int, tls: ssl.SSLContext, source: LogSource) -> None:
        self.node = node
        self.tls = tls
        self.source = source
        self.stopping = threading.Event()
        super().__init__(("127.0.0.1", port), _Handler)

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        sock, addr = self.socket.accept()
        # The handshake happens in the connection's own thread (_Handler.handle).
        wrapped = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, addr

    def handle_error(self, request: object, client_address: object) -> None:
        LOG.warning("%s: request from %s failed", self.node, client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    connection: ssl.SSLSocket
    protocol_version = "HTTP/1.1"
    timeout = WRITE_TIMEOUT

    def handle(self) -> None:
        self.connection.settimeout(HANDSHAKE_TIMEOUT)
        try:
            self.connection.do_handshake()
        except OSError as exc:
            LOG.info(
                "%s: TLS handshake with %s failed: %s", self.server.node, self.client_address, exc
            )
            return
        self.connection.settimeout(self.timeout)
        super().handle()

    def log_message(self, format: str, *args: object) -> None:
        LOG.debug("%s: %s %s", self.server.node, self.address_string(), format % args)

    def do_GET(self) -> None:
        self.close_connection = True
        url = urllib.parse.urlsplit(self.path)
        where = parse_path(url.path)
        if where is None:
            self._error(404, "404 page not found")
            return
        try:
            query = parse_query(
                urllib.parse.parse_qs(url.query, keep_blank_values=True), time.time_ns()
            )
            log = self.server.source.container_log(
                self.server.node, *where, previous=query.previous
            )
            f = log.path.open("rb")
        except QueryError as exc:
            self._error(exc.status, exc.message)
            return
        except NoLogError as exc:
            self._error(exc.status, exc.message)
            return
        except OSError as exc:
            self._error(400, f"failed to open log file: {exc}")
            return
        with f:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Connection", "close")
            self.end_headers()
            try:
                self._stream(f, log, query)
                self.wfile.write(b"0\r\n\r\n")
            except OSError as exc:
                LOG.debug("%s: %s went away: %s", self.server.node, self.client_address, exc)

    def _stream(self, f: BinaryIO, log: ContainerLog, query: LogQuery) -> None:
        out = Output(query)
        complete = log.complete  # read before the file: what is written after is read again
        records, used = decode_complete(f.read())
        pending = b""
        self._chunk(out.render(select_records(records, query)))
        if not query.follow:
            return
        f.seek(used)
        read = b""
        while not (complete or out.full or self.server.stopping.is_set()):
            if self._client_gone(0 if read else FOLLOW_POLL):
                return
            complete = log.complete
            read = f.read(READ_SIZE)
            records, used = decode_complete(pending + read)
            pending = (pending + read)[used:]
            self._chunk(out.render(newer(records, query.since_ns)))

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _client_gone(self, wait: float) -> bool:
        """Waits up to ``wait`` seconds for the client to close the connection (a follow reads
        no requests, so anything readable is the end of the connection)."""
        readable, _, _ = select.select([self.connection], [], [], wait)
        if not readable:
            return False
        self.connection.setblocking(False)
        try:
            return not self.connection.recv(1)
        except ssl.SSLWantReadError:
            return False
        except OSError:
            return True
        finally:
            self.connection.settimeout(self.timeout)

    def _error(self, status: int, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)


class LogServer:
    """One Node's listener on 127.0.0.1 (``port`` 0: one the kernel picks), served by a
    thread of its own."""

    def __init__(self, node: str, port: int, tls: ssl.SSLContext, source: LogSource) -> None:
        try:
            self._server = _Server(node, port, tls, source)
        except OSError as exc:
            raise OSError(f"node {node}: cannot listen on 127.0.0.1:{port}: {exc}") from exc
        self.node = node
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"kubelet-api-{node}", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()
        LOG.info("node %s: container logs on https://127.0.0.1:%d", self.node, self.port)

    def stop(self) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
