"""The one loopback HTTP server of the tests: a source to fetch, an origin that redirects or
fails, a proxy in front of MinIO. It answers each request from its routes (404 for any other
path) or from a function of the request, and keeps every request it was sent."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

TRICKLE_CHUNKS = 20


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    trickle_seconds: float = 0.0  # the body in TRICKLE_CHUNKS pieces over this long: a slow origin


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    host: str  # the Host header: the name the client was given, not the address it reached
    headers: Mapping[str, str]
    body: bytes


NOT_FOUND = Reply(404, b"not found")


class StubServer:
    def __init__(
        self,
        routes: Mapping[str, Reply] | None = None,
        respond: Callable[[Request], Reply] | None = None,
    ) -> None:
        self.requests: list[Request] = []
        answer = respond or (lambda request: (routes or {}).get(request.path, NOT_FOUND))
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive and 100-continue, as S3 clients expect

            def _handle(self) -> None:
                request = Request(
                    self.command,
                    self.path,
                    self.headers.get("Host", ""),
                    dict(self.headers.items()),
                    self._body(),
                )
                seen.append(request)
                self._send(answer(request))

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks: list[bytes] = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunk = self.rfile.read(size)
                        self.rfile.readline()
                        if size == 0:
                            return b"".join(chunks)
                        chunks.append(chunk)
                return self.rfile.read(int(self.headers.get("Content-Length", 0)))

            def _send(self, reply: Reply) -> None:
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    if name.lower() not in ("content-length", "transfer-encoding"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                if not reply.trickle_seconds:
                    self.wfile.write(reply.body)
                    return
                size = max(1, len(reply.body) // TRICKLE_CHUNKS)
                for start in range(0, len(reply.body), size):
                    self.wfile.write(reply.body[start : start + size])
                    self.wfile.flush()
                    time.sleep(reply.trickle_seconds / TRICKLE_CHUNKS)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815

            def log_message(self, format: str, *args: object) -> None:
                return

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
