"""/metrics, /livez and /readyz on the metrics port.

live:  the connection loop has turned recently (a wedged worker gets restarted);
ready: connected to the broker and not shutting down.
"""

from __future__ import annotations

import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)


class HealthState:
    """Written by the connection loop, read by the HTTP server's threads."""

    def __init__(self, stall_seconds: float) -> None:
        self.stall_seconds = stall_seconds
        self._last_turn = time.monotonic()
        self._connected = False
        self._stopping = False
        self._lock = threading.Lock()

    def turned(self) -> None:
        with self._lock:
            self._last_turn = time.monotonic()

    def set_connected(self, connected: bool) -> None:
        with self._lock:
            self._connected = connected

    def set_stopping(self) -> None:
        with self._lock:
            self._stopping = True

    @property
    def live(self) -> bool:
        with self._lock:
            return time.monotonic() - self._last_turn < self.stall_seconds

    @property
    def ready(self) -> bool:
        with self._lock:
            return self._connected and not self._stopping


def serve(
    state: HealthState, registry: CollectorRegistry, address: str, port: int
) -> ThreadingHTTPServer:
    """Start the server in a daemon thread; call .shutdown() to stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/livez":
                self._status(state.live)
            elif self.path == "/readyz":
                self._status(state.ready)
            else:
                self._reply(404, b"not found\n")

        def _status(self, ok: bool) -> None:
            self._reply(200 if ok else 503, b"ok\n" if ok else b"not ok\n")

        def _reply(self, code: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # probes every few seconds would drown the log

    server = ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    log.info("metrics and probes on http://%s:%d", address, server.server_address[1])
    return server
