"""One pod's containers as local processes: the per-pod state machine driven by the agent.

The supervisor thread calls :meth:`PodRuntime.tick` about every half second; a termination
thread takes a pod over (``terminating``) when it is deleted. Nothing here talks to the API
directly: Secrets, ConfigMaps, tokens and probe execution come through :class:`PodHost`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .backoff import Backoff
from .envresolve import (
    ConfigError,
    EnvSources,
    NoCommandError,
    PodContext,
    container_argv,
    process_env,
    resolve_env,
)
from .logfile import ContainerLog, NoLogError, current_log, previous_log, rotate
from .podstatus import (
    TERMINAL,
    ContainerView,
    build_pod_status,
    compute_conditions,
    compute_phase,
    exit_reason,
)
from .probes import (
    Kind,
    ProbeConfig,
    ProbeConfigError,
    ProbeTracker,
    parse_action,
    parse_probe,
    run_action,
)
from .process import ManagedProcess, StartError
from .util import now_rfc3339

LOG = logging.getLogger("nodeagent.pod")

Obj = dict[str, Any]
CONFIG_RETRY = 5.0
KILL_AFTER_SIGKILL = 5.0


@dataclass
class RuntimeConfig:
    state_dir: Path
    agent_path: str
    home: str = "/root"
    host_ip: str = "127.0.0.1"
    apiserver_host: str = "127.0.0.1"
    apiserver_port: int = 6443
    ca_data: bytes = b""
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    node_allocatable: dict[str, str] = field(default_factory=dict)


class PodHost(Protocol):
    """What a pod needs from the agent (the API and a thread pool)."""

    @property
    def sources(self) -> EnvSources: ...

    def automount_token(self, pod: Obj) -> bool: ...

    def service_account_token(self, pod: Obj) -> tuple[str, float]:
        """(token, lifetime in seconds). Raises ConfigError."""
        ...

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]: ...


def pod_key(pod: Obj) -> str:
    m = pod["metadata"]
    return f"{m.get('namespace', 'default')}/{m['name']}"


def pod_dir(state_dir: Path, namespace: str, name: str, uid: str) -> Path:
    return state_dir / "pods" / f"{namespace}_{name}_{uid}"


def stored_log(
    folder: Path, pod: str, container: str, *, previous: bool, missing: str
) -> ContainerLog:
    """A log nothing writes any more, or kubelet's answer when there is none; ``missing``
    says why the container has no current log."""
    path = (previous_log if previous else current_log)(folder, container)
    if path.exists():
        return ContainerLog(path)
    if previous:
        raise NoLogError(
            400, f'previous terminated container "{container}" in pod "{pod}" not found'
        )
    raise NoLogError(400, f'container "{container}" in pod "{pod}" {missing}')


def pod_grace(pod: Obj) -> float:
    meta = pod.get("metadata", {})
    g = meta.get("deletionGracePeriodSeconds")
    if g is None:
        g = pod.get("spec", {}).get("terminationGracePeriodSeconds")
    return float(30 if g is None else g)


class ContainerRuntime:
    def __init__(self, spec: Obj, *, init: bool, pod_policy: str, cfg: RuntimeConfig) -> None:
        self.spec = spec
        self.name: str = spec["name"]
        self.is_init = init
        self.sidecar = init and spec.get("restartPolicy") == "Always"
        self.policy = "Always" if self.sidecar else pod_policy
        self.view = ContainerView(
            name=self.name, image=str(spec.get("image", "")), reason="PodInitializing"
        )
        if not init:
            self.view.reason = "ContainerCreating"
        self.proc: ManagedProcess | None = None
        self.backoff = Backoff(cfg.backoff_base, cfg.backoff_cap)
        self.next_start = 0.0
        self.done = False  # will never be started again
        self.succeeded = False  # a (non-sidecar) init container that exited 0
        self.ran = False  # started at least once (a next start is a restart)
        self.last_term: Obj | None = None
        self.env: dict[str, str] = {}
        self.cwd: Path | None = None
        self.probes: dict[Kind, ProbeTracker] = {}
        self.kill_deadline: float | None = None
        self.kill_message = ""
        self.stopping = False  # being stopped for good (pod terminating, sidecar after main)

    # -- state ---------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _probe_configs(self) -> dict[Kind, ProbeConfig]:
        out: dict[Kind, ProbeConfig] = {}
        kinds: tuple[tuple[Kind, str], ...] = (
            ("startup", "startupProbe"),
            ("liveness", "livenessProbe"),
            ("readiness", "readinessProbe"),
        )
        for kind, key in kinds:
            if self.is_init and not self.sidecar:
                break  # regular init containers have no probes
            try:
                cfg = parse_probe(self.spec.get(key), self.spec)
            except ProbeConfigError as exc:
                LOG.warning("container %s: ignoring %s: %s", self.name, key, exc)
                continue
            if cfg is not None:
                out[kind] = cfg
        return out

    # -- one supervisor step -------------------------------------------------------------------

    def step(self, now: float, pod: PodRuntime) -> None:
        if self.proc is not None:
            rc = self.proc.poll()
            if rc is None:
                if self.kill_deadline is not None:
                    if now >= self.kill_deadline:
                        self.proc.kill()
                else:
                    self._probe(now, pod)
                return
            self._on_exit(rc, now, pod)
        if self.done or self.stopping or now < self.next_start:
            return
        self._start(now, pod)

    def _note_start(self) -> None:
        if self.ran:
            self.view.restart_count += 1
            self.view.last_terminated = self.last_term
        self.ran = True

    def _start(self, now: float, pod: PodRuntime) -> None:
        try:
            env = pod.container_env(self.spec)
            argv = container_argv(self.spec, env)
        except NoCommandError as exc:
            self._wait(exc.reason, str(exc))
            self.next_start = math.inf  # the spec cannot change
            return
        except ConfigError as exc:
            self._wait(exc.reason, str(exc))
            self.next_start = now + CONFIG_RETRY
            return
        wd = self.spec.get("workingDir")
        cwd = Path(wd) if wd else pod.dir
        try:
            cwd.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._wait("CreateContainerError", f"workingDir {wd}: {exc}")
            self.next_start = now + CONFIG_RETRY
            return
        self.env, self.cwd = env, cwd
        try:
            rotate(pod.dir, self.name)
            proc = ManagedProcess.start(
                argv,
                env,
                cwd,
                current_log(pod.dir, self.name),
                pod.dir / f"{self.name}.pid",
            )
        except StartError as exc:
            LOG.warning("%s: container %s failed to start: %s", pod.key, self.name, exc)
            self._note_start()
            stamp = now_rfc3339()
            self.view.started_at = stamp
            self._on_exit(128, now, pod, reason="StartError", message=str(exc))
            return
        self._note_start()
        self.proc = proc
        self.kill_deadline = None
        self.kill_message = ""
        self.view.state = "running"
        self.view.reason = ""
        self.view.message = ""
        self.view.exit_code = None
        self.view.finished_at = None
        self.view.started_at = now_rfc3339()
        self.view.container_id = f"local://{proc.pid}"
        configs = self._probe_configs()
        self.probes = {k: ProbeTracker.for_run(k, c, now) for k, c in configs.items()}
        self.view.started = "startup" not in self.probes
        self.view.ready = self.view.started and "readiness" not in self.probes
        LOG.info(
            "%s: started container %s (pid %d, restart %d): %s",
            pod.key,
            self.name,
            proc.pid,
            self.view.restart_count,
            argv,
        )

    def _wait(self, reason: str, message: str) -> None:
        self.view.state = "waiting"
        self.view.reason = reason
        self.view.message = message
        self.view.ready = False
        self.view.started = False
        self.view.last_terminated = self.last_term

    def _on_exit(
        self, rc: int, now: float, pod: PodRuntime, reason: str = "", message: str = ""
    ) -> None:
        v = self.view
        v.state = "terminated"
        v.exit_code = rc
        v.reason = reason or exit_reason(rc)
        v.message = message or self.kill_message
        v.finished_at = now_rfc3339()
        v.ready = False
        v.started = False
        self.proc = None
        self.kill_deadline = None
        self.kill_message = ""
        self.probes = {}
        self.last_term = v.terminated_dict()
        LOG.info("%s: container %s exited with code %d", pod.key, self.name, rc)
        if self.stopping:
            self.done = True
            return
        if self.is_init and not self.sidecar:
            if rc == 0:
                self.succeeded = self.done = True
                return
            restart = pod.restart_policy != "Never"
        else:
            restart = self.policy == "Always" or (self.policy == "OnFailure" and rc != 0)
        if not restart:
            self.done = True
            return
        delay = self.backoff.next_delay(now)
        self.next_start = now + delay
        if delay > 0:
            self._wait(
                "CrashLoopBackOff",
                f"back-off {delay:g}s restarting failed container={self.name} "
                f"pod={pod.name}_{pod.namespace}({pod.uid})",
            )

    def log(self, folder: Path, pod: str, *, previous: bool) -> ContainerLog:
        """What ``kubectl logs`` reads: the running instance's log while its pump writes it."""
        proc = self.proc  # read once: the supervisor thread replaces it
        if proc is not None and not previous:
            return ContainerLog(current_log(folder, self.name), proc.pump)
        reason = self.view.reason or "ContainerCreating"
        return stored_log(
            folder, pod, self.name, previous=previous, missing=f"is waiting to start: {reason}"
        )

    # -- probes --------------------------------------------------------------------------------

    def _probe(self, now: float, pod: PodRuntime) -> None:
        for tracker in self.probes.values():
            fut = tracker.in_flight
            if fut is not None and fut.done():
                tracker.in_flight = None
                try:
                    ok, msg = fut.result()
                except Exception as exc:  # run_action never raises, but be safe
                    ok, msg = False, str(exc)
                if tracker.record(ok, now, msg) or not ok:
                    LOG.debug("%s/%s %s probe: %s", pod.key, self.name, tracker.kind, msg)
        startup = self.probes.get("startup")
        if startup is not None and not self.view.started:
            if startup.result:
                self.view.started = True
                for k in ("liveness", "readiness"):
                    t = self.probes.get(k)
                    if t is not None:
                        t.next_due = now + t.config.initial_delay
            elif startup.failures >= startup.config.failure_threshold:
                self._kill_for_probe(now, pod, startup, "startup")
                return
            else:
                self._submit(now, pod, startup)
                return
        liveness = self.probes.get("liveness")
        if liveness is not None and not liveness.result:
            self._kill_for_probe(now, pod, liveness, "liveness")
            return
        readiness = self.probes.get("readiness")
        self.view.ready = readiness.result if readiness is not None else self.view.started
        for kind in ("liveness", "readiness"):
            t = self.probes.get(kind)
            if t is not None:
                self._submit(now, pod, t)

    def _submit(self, now: float, pod: PodRuntime, tracker: ProbeTracker) -> None:
        if tracker.due(now):
            c = tracker.config
            tracker.in_flight = pod.host.submit(
                run_action, c.action, pod.ip, self.env, c.timeout, str(self.cwd or pod.dir)
            )

    def _kill_for_probe(self, now: float, pod: PodRuntime, t: ProbeTracker, kind: str) -> None:
        grace = t.config.termination_grace
        if grace is None:
            grace = float(pod.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30))
        msg = f"Container {self.name} failed {kind} probe, will be restarted: {t.last_message}"
        LOG.warning("%s: %s", pod.key, msg)
        self.request_stop(now, grace, msg)

    def request_stop(self, now: float, grace: float, message: str = "") -> None:
        if self.proc is None:
            return
        self.view.ready = False
        self.kill_message = message
        self.kill_deadline = now + grace
        self.proc.terminate()

    def run_pre_stop(self, pod: PodRuntime, budget: float) -> None:
        hook = (self.spec.get("lifecycle") or {}).get("preStop")
        if not hook or budget <= 0:
            return
        try:
            action = parse_action(hook, self.spec)
        except ProbeConfigError as exc:
            LOG.warning("%s/%s: preStop: %s", pod.key, self.name, exc)
            return
        ok, msg = run_action(action, pod.ip, self.env, budget, str(self.cwd or pod.dir))
        LOG.info("%s/%s: preStop hook %s: %s", pod.key, self.name, "ok" if ok else "failed", msg)


class PodRuntime:
    def __init__(self, pod: Obj, node: str, ip: str, cfg: RuntimeConfig, host: PodHost) -> None:
        meta = pod["metadata"]
        self.pod = pod  # the latest object seen (replaced by the watch thread)
        self.uid: str = meta["uid"]
        self.name: str = meta["name"]
        self.namespace: str = meta.get("namespace", "default")
        self.key = f"{self.namespace}/{self.name}"
        self.node = node
        self.ip = ip
        self.cfg = cfg
        self.host = host
        self.dir = pod_dir(cfg.state_dir, self.namespace, self.name, self.uid)
        spec = pod.get("spec", {})
        self.restart_policy: str = spec.get("restartPolicy", "Always")
        self.init = [
            ContainerRuntime(c, init=True, pod_policy=self.restart_policy, cfg=cfg)
            for c in spec.get("initContainers") or []
        ]
        self.regular = [
            ContainerRuntime(c, init=False, pod_policy=self.restart_policy, cfg=cfg)
            for c in spec.get("containers") or []
        ]
        if self.init:  # kubelet: regular containers wait "PodInitializing" behind init ones
            for c in self.regular:
                c.view.reason = "PodInitializing"
        status = pod.get("status") or {}
        self.start_time: str = status.get("startTime") or now_rfc3339()
        self.initialized = not self.init
        self.init_failed = False
        self.phase: str = "Pending"
        self.conditions: list[Obj] = list(status.get("conditions") or [])
        self.last_sent: Obj | None = None
        self.patch_retry_at = 0.0
        self.terminating = False
        self.gone = False  # the API object (or its node) is gone: no more API calls
        self.thread: threading.Thread | None = None
        self.sandbox_ready = False
        self.sandbox_retry_at = 0.0
        self.sa_dir: Path | None = None
        self.token_refresh_at = math.inf
        self.token_future: Future[Any] | None = None
        self._adopt_previous_status(status)

    # -- agent restarts ------------------------------------------------------------------------

    def _adopt_previous_status(self, status: Obj) -> None:
        """Carry restart counts over from a previous agent run, kubelet-style."""
        prev = {
            s.get("name"): s
            for s in (status.get("initContainerStatuses") or [])
            + (status.get("containerStatuses") or [])
        }
        was_initialized = any(
            c.get("type") == "Initialized" and c.get("status") == "True"
            for c in status.get("conditions") or []
        )
        for c in self.init + self.regular:
            s = prev.get(c.name)
            if not s:
                continue
            state = s.get("state") or {}
            last = (s.get("lastState") or {}).get("terminated")
            c.view.restart_count = int(s.get("restartCount", 0))
            term = state.get("terminated")
            if "running" in state:
                term = {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "message": "The container could not be located when the node agent restarted",
                    "startedAt": state["running"].get("startedAt"),
                    "finishedAt": now_rfc3339(),
                }
            if term is None and last is None:
                continue
            c.ran = True
            c.last_term = term or last
            finished = term is not None and (
                (c.is_init and not c.sidecar and term.get("exitCode") == 0 and was_initialized)
                or (not c.is_init and self.restart_policy == "Never")
                or (
                    not c.is_init
                    and self.restart_policy == "OnFailure"
                    and term.get("exitCode") == 0
                )
            )
            if finished and term is not None:
                c.done = True
                c.succeeded = c.is_init and term.get("exitCode") == 0
                v = c.view
                v.state = "terminated"
                v.exit_code = int(term.get("exitCode", 0))
                v.reason = str(term.get("reason", exit_reason(v.exit_code)))
                v.message = str(term.get("message", ""))
                v.started_at = term.get("startedAt")
                v.finished_at = term.get("finishedAt")
                v.last_terminated = last
        if self.init and all(c.succeeded or c.sidecar for c in self.init) and was_initialized:
            self.initialized = True

    # -- environment ---------------------------------------------------------------------------

    def service_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self.sa_dir is not None:
            port = str(self.cfg.apiserver_port)
            env["KUBERNETES_SERVICE_HOST"] = self.cfg.apiserver_host
            env["KUBERNETES_SERVICE_PORT"] = port
            env["KUBERNETES_SERVICE_PORT_HTTPS"] = port
            env["KT_SERVICEACCOUNT_DIR"] = str(self.sa_dir)
        return env

    def container_env(self, container: Obj) -> dict[str, str]:
        ctx = PodContext(
            pod=self.pod,
            pod_ip=self.ip,
            host_ip=self.cfg.host_ip,
            service_env=self.service_env(),
            node_allocatable=self.cfg.node_allocatable,
        )
        resolved = resolve_env(container, ctx, self.host.sources)
        defaults = {"HOSTNAME": self.name, "HOME": self.cfg.home}
        return process_env(resolved, self.cfg.agent_path, defaults)

    # -- sandbox: pod dir and service account token ---------------------------------------------

    def _setup_sandbox(self, now: float) -> bool:
        if self.sandbox_ready:
            self._maybe_refresh_token(now)
            return True
        if now < self.sandbox_retry_at:
            return False
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if self.host.automount_token(self.pod):
                self._write_token(*self.host.service_account_token(self.pod), now=now)
        except (ConfigError, OSError) as exc:
            msg = f"setting up the pod: {exc}"
            for c in self.init + self.regular:
                if not c.done and not c.running:
                    c.view.state = "waiting"
                    c.view.reason = "ContainerCreating"
                    c.view.message = msg
            self.sandbox_retry_at = now + CONFIG_RETRY
            LOG.warning("%s: %s", self.key, msg)
            return False
        self.sandbox_ready = True
        for c in self.init + self.regular:
            if c.view.state == "waiting" and c.view.reason == "ContainerCreating":
                c.view.message = ""
        return True

    def _write_token(self, token: str, ttl: float, now: float) -> None:
        sa = self.dir / "serviceaccount"
        sa.mkdir(parents=True, exist_ok=True)
        tmp = sa / ".token.tmp"
        tmp.write_text(token)
        tmp.chmod(0o600)
        tmp.replace(sa / "token")
        (sa / "ca.crt").write_bytes(self.cfg.ca_data)
        (sa / "namespace").write_text(self.namespace)
        self.sa_dir = sa
        self.token_refresh_at = now + 0.8 * ttl

    def _maybe_refresh_token(self, now: float) -> None:
        fut = self.token_future
        if fut is not None:
            if not fut.done():
                return
            self.token_future = None
            try:
                token, ttl = fut.result()
                self._write_token(token, ttl, now)
            except Exception as exc:
                LOG.warning("%s: refreshing the service account token: %s", self.key, exc)
                self.token_refresh_at = now + 30
            return
        if now >= self.token_refresh_at:
            self.token_future = self.host.submit(self.host.service_account_token, self.pod)

    # -- the supervisor's step ---------------------------------------------------------------

    def containers(self) -> list[ContainerRuntime]:
        return self.init + self.regular

    def container_log(self, container: str, *, previous: bool) -> ContainerLog:
        for c in self.containers():
            if c.name == container:
                return c.log(self.dir, self.name, previous=previous)
        raise NoLogError(404, f'container "{container}" not found in pod "{self.name}"')

    def sidecars(self) -> list[ContainerRuntime]:
        return [c for c in self.init if c.sidecar]

    def tick(self, now: float) -> None:
        if self.phase in TERMINAL:
            for c in self.containers():
                if c.running and c.kill_deadline is None:
                    c.stopping = True
                    c.request_stop(now, pod_grace(self.pod))
                c.step(now, self) if c.running else None
            return
        if not self._setup_sandbox(now):
            return
        if not self.initialized:
            for c in self.init:
                if c.sidecar:
                    c.step(now, self)
                    if not (c.running and c.view.started):
                        break
                    continue
                if c.succeeded:
                    continue
                c.step(now, self)
                if c.succeeded:
                    continue
                if c.done:
                    self.init_failed = True
                break
            else:
                self.initialized = True
        if self.initialized:
            for c in self.sidecars():
                c.step(now, self)
            for c in self.regular:
                c.step(now, self)
            if self.regular and all(c.done for c in self.regular):
                for c in self.sidecars():
                    if c.running and not c.stopping:
                        c.stopping = True
                        c.request_stop(now, pod_grace(self.pod))
                    elif not c.running:
                        c.done = True

    def status(self, terminal: bool = False) -> Obj:
        now = now_rfc3339()
        views = [c.view for c in self.regular]
        if terminal:
            ok = all(v.state == "terminated" and v.exit_code == 0 for v in views)
            phase = "Succeeded" if ok and views else "Failed"
            if self.phase in TERMINAL:
                phase = self.phase
        else:
            phase = compute_phase(
                self.restart_policy,
                init_failed=self.init_failed,
                initialized=self.initialized,
                containers=views,
                previous=self.phase,
            )
        if phase != self.phase:
            LOG.info("%s: phase %s -> %s", self.key, self.phase, phase)
        self.phase = phase
        init_pending = (
            []
            if self.initialized
            else [c.name for c in self.init if not (c.succeeded or c.view.started)]
        )
        previous = {
            c.get("type", ""): c for c in (self.pod.get("status") or {}).get("conditions") or []
        }
        previous.update({c["type"]: c for c in self.conditions})
        gates = [
            g.get("conditionType", "") for g in self.pod.get("spec", {}).get("readinessGates") or []
        ]
        self.conditions = compute_conditions(
            phase=phase,
            initialized=self.initialized,
            init_pending=init_pending,
            containers=[c.view for c in self.sidecars()] + views,
            previous=list(previous.values()),
            now=now,
            readiness_gates=gates,
        )
        return build_pod_status(
            phase=phase,
            conditions=self.conditions,
            pod_ip=self.ip,
            host_ip=self.cfg.host_ip,
            start_time=self.start_time,
            init_containers=[c.view for c in self.init],
            containers=views,
        )

    # -- termination (runs in its own thread) --------------------------------------------------

    def terminate(self, grace: float) -> None:
        """preStop hooks, SIGTERM, wait up to ``grace`` seconds, SIGKILL. Blocks."""
        deadline = time.monotonic() + max(grace, 0.0)
        for c in self.containers():
            c.stopping = True
        for group in ([c for c in self.regular], self.sidecars()):
            running = [c for c in group if c.running]
            if not running:
                continue
            budget = deadline - time.monotonic()
            hooks = [
                threading.Thread(target=c.run_pre_stop, args=(self, budget), daemon=True)
                for c in running
            ]
            for t in hooks:
                t.start()
            for t in hooks:
                t.join(max(0.0, deadline - time.monotonic()))
            for c in running:
                if c.proc is not None:
                    LOG.info("%s: SIGTERM to container %s", self.key, c.name)
                    c.proc.terminate()
            while time.monotonic() < deadline and any(c.running for c in running):
                time.sleep(0.1)
                for c in running:
                    if c.proc is not None:
                        c.proc.poll()
        for c in self.containers():
            if c.running and c.proc is not None:
                LOG.info("%s: grace period over, SIGKILL to container %s", self.key, c.name)
                c.proc.kill()
                c.proc.wait(KILL_AFTER_SIGKILL)
        now = time.monotonic()
        for c in self.containers():
            if c.proc is not None:
                rc = c.proc.poll()
                c._on_exit(rc if rc is not None else 137, now, self)
            else:
                c.done = True

    def cleanup(self) -> None:
        for c in self.containers():
            if c.proc is not None:
                c.proc.kill()
        for pf in self.dir.glob("*.pid"):
            with contextlib.suppress(OSError):
                pf.unlink()
