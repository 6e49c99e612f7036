"""Probes and lifecycle hooks: parsing, threshold bookkeeping (pure) and running them.

Semantics follow kubelet's prober: readiness starts as failure, liveness and startup as
success/not-started; the result flips after ``successThreshold`` consecutive successes or
``failureThreshold`` consecutive failures; the first probe runs ``initialDelaySeconds`` after
the container started, then every ``periodSeconds``.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

Obj = dict[str, Any]
Kind = Literal["liveness", "readiness", "startup"]


class ProbeConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Action:
    """An httpGet, tcpSocket, exec or sleep action (probe or lifecycle hook)."""

    kind: Literal["http", "tcp", "exec", "sleep", "unsupported"]
    port: int = 0
    host: str = ""
    path: str = "/"
    scheme: str = "HTTP"
    headers: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] = ()
    seconds: int = 0
    detail: str = ""


@dataclass(frozen=True)
class ProbeConfig:
    action: Action
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3
    termination_grace: float | None = None


def resolve_port(port: Any, container: Obj) -> int:
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p["containerPort"])
    raise ProbeConfigError(f"port {text!r} is not a named port of container {container['name']}")


def parse_action(spec: Obj, container: Obj) -> Action:
    if "httpGet" in spec:
        h = spec["httpGet"]
        headers = tuple((x["name"], x.get("value", "")) for x in h.get("httpHeaders") or [])
        return Action(
            kind="http",
            port=resolve_port(h.get("port"), container),
            host=h.get("host", "") or "",
            path=h.get("path", "/") or "/",
            scheme=(h.get("scheme") or "HTTP").upper(),
            headers=headers,
        )
    if "tcpSocket" in spec:
        t = spec["tcpSocket"]
        return Action(
            kind="tcp", port=resolve_port(t.get("port"), container), host=t.get("host", "") or ""
        )
    if "exec" in spec:
        return Action(kind="exec", command=tuple(spec["exec"].get("command") or []))
    if "sleep" in spec:
        return Action(kind="sleep", seconds=int(spec["sleep"].get("seconds", 0)))
    return Action(kind="unsupported", detail=",".join(sorted(spec)))


def parse_probe(spec: Obj | None, container: Obj) -> ProbeConfig | None:
    if not spec:
        return None
    grace = spec.get("terminationGracePeriodSeconds")
    return ProbeConfig(
        action=parse_action(spec, container),
        initial_delay=float(spec.get("initialDelaySeconds", 0) or 0),
        period=float(spec.get("periodSeconds", 10) or 10),
        timeout=float(spec.get("timeoutSeconds", 1) or 1),
        success_threshold=int(spec.get("successThreshold", 1) or 1),
        failure_threshold=int(spec.get("failureThreshold", 3) or 3),
        termination_grace=float(grace) if grace is not None else None,
    )


@dataclass
class ProbeTracker:
    """Threshold bookkeeping and scheduling of one probe of one container run (pure)."""

    kind: Kind
    config: ProbeConfig
    result: bool = False
    successes: int = 0
    failures: int = 0
    next_due: float = 0.0
    last_message: str = ""
    in_flight: Any = field(default=None, repr=False)

    @classmethod
    def for_run(cls, kind: Kind, config: ProbeConfig, started: float) -> ProbeTracker:
        # Readiness and startup start as failure ("not yet"); liveness as success.
        return cls(
            kind=kind,
            config=config,
            result=(kind == "liveness"),
            next_due=started + config.initial_delay,
        )

    def due(self, now: float) -> bool:
        return self.in_flight is None and now >= self.next_due

    def record(self, ok: bool, now: float, message: str = "") -> bool:
        """Record one probe outcome; returns True when the probe's result changed."""
        self.next_due = now + self.config.period
        self.last_message = message
        before = self.result
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.config.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.config.failure_threshold:
                self.result = False
        return self.result != before


# -- running actions ---------------------------------------------------------------------------


def run_action(
    action: Action,
    pod_ip: str,
    env: Mapping[str, str],
    timeout: float,
    cwd: str | None = None,
) -> tuple[bool, str]:
    """Run a probe or hook action once; returns (success, message). Never raises."""
    host = action.host or pod_ip
    try:
        if action.kind == "http":
            scheme = "https" if action.scheme == "HTTPS" else "http"
            url = f"{scheme}://{host}:{action.port}{action.path}"
            headers = {"User-Agent": "kube-probe/kube-transcode", **dict(action.headers)}
            with requests.Session() as session:
                session.trust_env = False  # no proxies for pod IPs
                r = session.get(
                    url,
                    headers=headers,
                    timeout=timeout,
                    verify=False,  # kubelet skips TLS checks too
                    allow_redirects=False,
                )
            ok = 200 <= r.status_code < 400
            return ok, f"HTTP probe {url}: status {r.status_code}"
        if action.kind == "tcp":
            with socket.create_connection((host, action.port), timeout=timeout):
                return True, f"TCP {host}:{action.port} open"
        if action.kind == "exec":
            if not action.command:
                return False, "exec action without command"
            proc = subprocess.run(
                list(action.command),
                env=dict(env),
                cwd=cwd,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            out = (proc.stdout + proc.stderr).decode(errors="replace").strip()[-300:]
            return proc.returncode == 0, f"exec exit code {proc.returncode}: {out}"
        if action.kind == "sleep":
            time.sleep(min(float(action.seconds), timeout))
            return True, f"slept {action.seconds}s"
        return True, f"unsupported action ({action.detail}) treated as success"
    except subprocess.TimeoutExpired:
        return False, f"exec timed out after {timeout:g}s"
    except (OSError, requests.RequestException) as exc:
        return False, f"{action.kind} probe failed: {exc}"
