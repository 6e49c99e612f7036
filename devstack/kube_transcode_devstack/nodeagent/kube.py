"""A thin, thread-safe Kubernetes REST client on ``requests``, configured from a kubeconfig.

The node agent works with plain JSON dicts (camelCase, exactly as the API serves them) rather
than the generated models of the ``kubernetes`` package; only its kubeconfig loader is used
(client certificates, bearer tokens and inline data all handled there).

Every call retries on connection errors, timeouts, 429 and 5xx answers for ``retry_for``
seconds (``None``: until the stop event is set), so an apiserver restart never crashes the
agent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

LOG = logging.getLogger("nodeagent.kube")

Obj = dict[str, Any]

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class ApiError(Exception):
    """A non-retryable (or retries exhausted) answer from the apiserver."""

    def __init__(self, status: int, reason: str, body: Obj | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body or {}


class UnavailableError(Exception):
    """The apiserver could not be reached within the retry budget."""


@dataclass(frozen=True)
class ClusterAccess:
    host: str  # https://127.0.0.1:6443
    ca_file: str | None
    cert_file: str | None
    key_file: str | None
    token: str | None
    verify: bool = True

    @property
    def port(self) -> int:
        parsed = urlparse(self.host)
        if parsed.port:
            return parsed.port
        return 443 if parsed.scheme == "https" else 80

    def ca_data(self) -> bytes:
        return Path(self.ca_file).read_bytes() if self.ca_file else b""


def load_kubeconfig(path: str | None) -> ClusterAccess:
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=path, client_configuration=cfg)  # type: ignore[no-untyped-call]
    token = None
    auth = cfg.api_key.get("authorization") or cfg.api_key.get("BearerToken")
    if auth:
        token = str(auth).removeprefix("Bearer ").strip()
    return ClusterAccess(
        host=str(cfg.host).rstrip("/"),
        ca_file=cfg.ssl_ca_cert,
        cert_file=cfg.cert_file,
        key_file=cfg.key_file,
        token=token,
        verify=bool(cfg.verify_ssl),
    )


class KubeClient:
    def __init__(
        self,
        access: ClusterAccess,
        stop: threading.Event | None = None,
        timeout: float = 15.0,
    ) -> None:
        self.access = access
        self.stop = stop or threading.Event()
        self.timeout = timeout
        self._local = threading.local()

    # -- plumbing -------------------------------------------------------------------------

    def _session(self) -> requests.Session:
        s: requests.Session | None = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            # Ignore REQUESTS_CA_BUNDLE and *_proxy from the environment: the CA is the
            # kubeconfig's and the apiserver is on loopback.
            s.trust_env = False
            a = self.access
            if a.cert_file and a.key_file:
                s.cert = (a.cert_file, a.key_file)
            s.verify = (a.ca_file or True) if a.verify else False
            s.headers["Accept"] = "application/json"
            s.headers["User-Agent"] = "kube-transcode-nodeagent"
            if a.token:
                s.headers["Authorization"] = f"Bearer {a.token}"
            self._local.session = s
        return s

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        retry_for: float | None = 30.0,
        timeout: float | None = None,
    ) -> Obj:
        """Send one request; returns the decoded JSON answer or raises ApiError/UnavailableError."""
        deadline = None if retry_for is None else time.monotonic() + retry_for
        delay = 0.2
        warn_at = time.monotonic() + 3
        last: str = ""
        while True:
            try:
                resp = self._session().request(
                    method,
                    self.access.host + path,
                    params=params,
                    data=None if body is None else json.dumps(body),
                    headers={"Content-Type": content_type} if body is not None else None,
                    timeout=timeout or self.timeout,
                )
            except requests.exceptions.SSLError as exc:
                raise ApiError(0, f"TLS error talking to {self.access.host}: {exc}") from exc
            except (requests.ConnectionError, requests.Timeout) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code < 400:
                    if not resp.content:
                        return {}
                    data: Obj = resp.json()
                    return data
                try:
                    payload: Obj = resp.json()
                except ValueError:
                    payload = {"message": resp.text}
                if resp.status_code not in RETRYABLE_STATUS:
                    raise ApiError(
                        resp.status_code, str(payload.get("message", resp.reason)), payload
                    )
                last = f"{resp.status_code} {payload.get('message', resp.reason)}"
            if self.stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                raise UnavailableError(f"{method} {path}: {last}")
            if time.monotonic() >= warn_at:
                LOG.warning("apiserver unavailable (%s %s: %s), retrying", method, path, last)
                warn_at = time.monotonic() + 15
            else:
                LOG.debug("retrying %s %s in %.1fs: %s", method, path, delay, last)
            self.stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def get(self, path: str, **kw: Any) -> Obj:
        return self.request("GET", path, **kw)

    def post(self, path: str, body: Obj, **kw: Any) -> Obj:
        return self.request("POST", path, body=body, **kw)

    def delete(self, path: str, body: Obj | None = None, **kw: Any) -> Obj:
        return self.request("DELETE", path, body=body, **kw)

    def patch(self, path: str, body: Obj, *, strategic: bool = True, **kw: Any) -> Obj:
        ctype = (
            "application/strategic-merge-patch+json"
            if strategic
            else "application/merge-patch+json"
        )
        return self.request("PATCH", path, body=body, content_type=ctype, **kw)

    def watch(self, path: str, params: dict[str, Any], read_timeout: float = 90.0) -> Iterator[Obj]:
        """Yield watch events (dicts with type and object) until the server ends the stream.

        ERROR events are yielded as they come (the caller decides: 410 means relist).
        """
        q = dict(params)
        q["watch"] = "true"
        resp = self._session().get(
            self.access.host + path,
            params=q,
            stream=True,
            timeout=(5.0, read_timeout),
        )
        with resp:
            if resp.status_code >= 400:
                try:
                    payload: Obj = resp.json()
                except ValueError:
                    payload = {"message": resp.text}
                raise ApiError(resp.status_code, str(payload.get("message", "")), payload)
            for line in resp.iter_lines(chunk_size=None):
                if self.stop.is_set():
                    return
                if line:
                    event: Obj = json.loads(line)
                    yield event


def api_path(namespace: str | None, resource: str, name: str | None = None, sub: str = "") -> str:
    """Path of a core/v1 resource."""
    p = "/api/v1"
    if namespace:
        p += f"/namespaces/{namespace}"
    p += f"/{resource}"
    if name:
        p += f"/{name}"
    if sub:
        p += f"/{sub}"
    return p
