"""Pod status from container states (pure logic, mirrors kubelet's getPhase and conditions)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

Obj = dict[str, Any]
State = Literal["waiting", "running", "terminated"]
TERMINAL = ("Succeeded", "Failed")


@dataclass
class ContainerView:
    """What the API reports about one container."""

    name: str
    image: str = ""
    state: State = "waiting"
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    container_id: str = ""
    last_terminated: Obj | None = None
    restart_count: int = 0
    ready: bool = False
    started: bool = False

    def terminated_dict(self) -> Obj:
        d: Obj = {
            "exitCode": self.exit_code if self.exit_code is not None else 0,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            d["message"] = self.message
        if self.container_id:
            d["containerID"] = self.container_id
        return d

    def to_status(self) -> Obj:
        state: Obj
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated_dict()}
        else:
            waiting: Obj = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image,
            "ready": self.ready,
            "started": self.started,
            "restartCount": self.restart_count,
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.container_id and self.state != "waiting":
            out["containerID"] = self.container_id
        return out


def exit_reason(exit_code: int) -> str:
    return "Completed" if exit_code == 0 else "Error"


def compute_phase(
    restart_policy: str,
    *,
    init_failed: bool,
    initialized: bool,
    containers: Sequence[ContainerView],
    previous: str | None = None,
) -> str:
    """kubelet's getPhase. Terminal phases are final."""
    if previous in TERMINAL:
        return previous
    if init_failed:
        return "Failed"
    if not initialized:
        return "Pending"
    running = waiting = stopped = succeeded = 0
    for c in containers:
        if c.state == "running":
            running += 1
        elif c.state == "terminated":
            stopped += 1
            if c.exit_code == 0:
                succeeded += 1
        elif c.last_terminated is not None:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    ctype: str,
    ok: bool,
    previous: dict[str, Obj],
    now: str,
    reason: str = "",
    message: str = "",
) -> Obj:
    status = "True" if ok else "False"
    prev = previous.get(ctype)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == status else None
    # reason and message are always sent (null when not applicable): status is patched with a
    # strategic merge, and a null is what removes a stale reason from the stored condition.
    return {
        "type": ctype,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or now,
        "reason": (reason or None) if not ok else None,
        "message": (message or None) if not ok else None,
    }


def compute_conditions(
    *,
    phase: str,
    initialized: bool,
    init_pending: Sequence[str],
    containers: Sequence[ContainerView],
    previous: Sequence[Obj],
    now: str,
    readiness_gates: Sequence[str] = (),
) -> list[Obj]:
    """PodReadyToStartContainers, Initialized, ContainersReady, Ready (PodScheduled kept)."""
    prev = {c.get("type", ""): c for c in previous}
    out: list[Obj] = []
    # Bound directly through spec.nodeName (no scheduler): kubelet reports PodScheduled itself.
    out.append(prev.get("PodScheduled") or _condition("PodScheduled", True, prev, now))
    out.append(_condition("PodReadyToStartContainers", True, prev, now))
    out.append(
        _condition(
            "Initialized",
            initialized,
            prev,
            now,
            "ContainersNotInitialized",
            f"containers with incomplete status: [{' '.join(init_pending)}]",
        )
    )
    if phase in TERMINAL:
        out.append(_condition("ContainersReady", False, prev, now, "PodCompleted"))
        out.append(_condition("Ready", False, prev, now, "PodCompleted"))
        return out
    unready = [c.name for c in containers if not c.ready]
    msg = f"containers with unready status: [{' '.join(unready)}]"
    containers_ready = not unready and bool(containers)
    out.append(
        _condition("ContainersReady", containers_ready, prev, now, "ContainersNotReady", msg)
    )
    gates_missing = [g for g in readiness_gates if prev.get(g, {}).get("status") != "True"]
    if not containers_ready:
        out.append(_condition("Ready", False, prev, now, "ContainersNotReady", msg))
    elif gates_missing:
        out.append(
            _condition(
                "Ready",
                False,
                prev,
                now,
                "ReadinessGatesNotReady",
                f'corresponding condition of pod readiness gate "{gates_missing[0]}" '
                "does not exist.",
            )
        )
    else:
        out.append(_condition("Ready", True, prev, now))
    return out


def build_pod_status(
    *,
    phase: str,
    conditions: list[Obj],
    pod_ip: str,
    host_ip: str,
    start_time: str,
    init_containers: Sequence[ContainerView],
    containers: Sequence[ContainerView],
    message: str = "",
    reason: str = "",
) -> Obj:
    status: Obj = {
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "containerStatuses": [c.to_status() for c in containers],
    }
    if init_containers:
        status["initContainerStatuses"] = [c.to_status() for c in init_containers]
    if message:
        status["message"] = message
    if reason:
        status["reason"] = reason
    return status
