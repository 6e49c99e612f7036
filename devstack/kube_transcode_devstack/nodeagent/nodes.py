"""Node, node status and node Lease objects (pure construction).

Capacity types and labels
-------------------------
``spot`` nodes carry the labels the big provisioners put on spot capacity, so pod templates
written for a real cloud select them unchanged:
``karpenter.sh/capacity-type=spot``, ``eks.amazonaws.com/capacityType=SPOT`` and
``cloud.google.com/gke-spot=true``. ``on-demand`` nodes carry
``karpenter.sh/capacity-type=on-demand`` and ``eks.amazonaws.com/capacityType=ON_DEMAND``.

Spot taints (the choice)
------------------------
Neither Karpenter nor EKS taints spot nodes by itself; AKS does, with the documented
``kubernetes.azure.com/scalesetpriority=spot:NoSchedule`` on every spot node pool, and GKE
documents ``cloud.google.com/gke-spot=true:NoSchedule`` as the taint to put on Spot node pools.
Spot nodes here get both (``DEFAULT_SPOT_TAINTS``), so a pod lands on spot only when it
tolerates both: e.g. ``tolerations: [{key: kubernetes.azure.com/scalesetpriority, operator:
Equal, value: spot, effect: NoSchedule}, {key: cloud.google.com/gke-spot, operator: Equal,
value: "true", effect: NoSchedule}]`` (or one ``operator: Exists`` toleration without key).
``--spot-taint`` replaces the list.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

Obj = dict[str, Any]

SPOT = "spot"
ON_DEMAND = "on-demand"

DEFAULT_SPOT_TAINTS: tuple[str, ...] = (
    "kubernetes.azure.com/scalesetpriority=spot:NoSchedule",
    "cloud.google.com/gke-spot=true:NoSchedule",
)
AGENT_LABEL = "kube-transcode.dev/node-agent"
NODE_CONDITIONS_FALSE = (
    ("MemoryPressure", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
    ("DiskPressure", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
    ("PIDPressure", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
)


@dataclass(frozen=True)
class NodeSpec:
    name: str
    capacity_type: str  # SPOT or ON_DEMAND
    instance_type: str = "local.standard"
    taints: tuple[str, ...] = field(default=())


def parse_node_arg(
    text: str,
    spot_taints: tuple[str, ...] = DEFAULT_SPOT_TAINTS,
    extra_taints: tuple[str, ...] = (),
) -> NodeSpec:
    """``NAME:TYPE[:INSTANCE-TYPE]`` with TYPE spot, ondemand or on-demand."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"--node wants NAME:TYPE[:INSTANCE-TYPE], got {text!r}")
    kind = parts[1].lower().replace("_", "-")
    if kind in ("ondemand", "on-demand"):
        kind = ON_DEMAND
    elif kind != SPOT:
        raise ValueError(f"node type must be spot or ondemand, got {parts[1]!r}")
    instance = parts[2] if len(parts) == 3 and parts[2] else "local.standard"
    return NodeSpec(
        name=parts[0],
        capacity_type=kind,
        instance_type=instance,
        taints=(spot_taints if kind == SPOT else ()) + tuple(extra_taints),
    )


def parse_taint(text: str) -> Obj:
    """``key[=value]:Effect``."""
    keyval, sep, effect = text.rpartition(":")
    if not sep or effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        raise ValueError(f"taint must be key[=value]:NoSchedule|PreferNoSchedule|NoExecute: {text}")
    key, _, value = keyval.partition("=")
    t: Obj = {"key": key, "effect": effect}
    if value:
        t["value"] = value
    return t


def node_arch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def node_labels(spec: NodeSpec, agent_id: str = "") -> dict[str, str]:
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": node_arch(),
        "node.kubernetes.io/instance-type": spec.instance_type,
        "topology.kubernetes.io/region": "local",
        "topology.kubernetes.io/zone": "local-a",
    }
    if spec.capacity_type == SPOT:
        labels |= {
            "karpenter.sh/capacity-type": "spot",
            "eks.amazonaws.com/capacityType": "SPOT",
            "cloud.google.com/gke-spot": "true",
        }
    else:
        labels |= {
            "karpenter.sh/capacity-type": "on-demand",
            "eks.amazonaws.com/capacityType": "ON_DEMAND",
        }
    if agent_id:
        labels[AGENT_LABEL] = agent_id
    return labels


# Labels this agent owns: when re-registering, stale ones (capacity type changed) are removed.
OWNED_LABELS = (
    "karpenter.sh/capacity-type",
    "eks.amazonaws.com/capacityType",
    "cloud.google.com/gke-spot",
)


def node_taints(spec: NodeSpec) -> list[Obj]:
    return [parse_taint(t) for t in spec.taints]


def merge_taints(existing: list[Obj], ours: list[Obj], owned_keys: set[str]) -> list[Obj]:
    """Keep taints others put there (cordon, not-ready ...), replace the ones we own."""
    keep = [t for t in existing if t.get("key") not in owned_keys]
    return keep + ours


def build_node(spec: NodeSpec, agent_id: str = "") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": spec.name,
            "labels": node_labels(spec, agent_id),
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
        },
        "spec": {
            "providerID": f"kube-transcode://local/{spec.name}",
            "taints": node_taints(spec),
        },
    }


@dataclass(frozen=True)
class HostInfo:
    cpu: str
    memory: str
    pods: str = "110"
    ephemeral_storage: str = "100Gi"
    machine_id: str = ""
    boot_id: str = ""
    kernel: str = ""
    os_image: str = ""


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def host_info(cpu: str | None = None, memory: str | None = None, pods: int = 110) -> HostInfo:
    import os

    mem = memory
    if not mem:
        for line in _read("/proc/meminfo").splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{line.split()[1]}Ki"
                break
    os_image = "Linux"
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_image = line.split("=", 1)[1].strip('"')
    return HostInfo(
        cpu=cpu or str(os.cpu_count() or 1),
        memory=mem or "4Gi",
        pods=str(pods),
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        kernel=platform.release(),
        os_image=os_image,
    )


def build_node_status(
    spec: NodeSpec,
    host: HostInfo,
    kubelet_version: str,
    *,
    ready: bool,
    now: str,
    previous_conditions: list[Obj] | None = None,
    message: str = "",
    kubelet_port: int = 0,
) -> Obj:
    """The Node's status; the API server reaches the node agent's kubelet API (container logs)
    on the first address (InternalIP) and ``kubelet_port`` (0: not served)."""
    prev = {c.get("type"): c for c in previous_conditions or []}

    def cond(ctype: str, status: str, reason: str, msg: str) -> Obj:
        p = prev.get(ctype)
        since = p.get("lastTransitionTime") if p and p.get("status") == status else None
        return {
            "type": ctype,
            "status": status,
            "reason": reason,
            "message": msg,
            "lastHeartbeatTime": now,
            "lastTransitionTime": since or now,
        }

    conditions = [cond(t, "False", r, m) for t, r, m in NODE_CONDITIONS_FALSE]
    if ready:
        conditions.append(
            cond("Ready", "True", "KubeletReady", message or "node agent is posting ready status")
        )
    else:
        conditions.append(
            cond("Ready", "False", "KubeletNotReady", message or "node agent is not running")
        )
    resources = {
        "cpu": host.cpu,
        "memory": host.memory,
        "pods": host.pods,
        "ephemeral-storage": host.ephemeral_storage,
    }
    return {
        "capacity": dict(resources),
        "allocatable": dict(resources),
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": host.machine_id,
            "systemUUID": host.machine_id,
            "bootID": host.boot_id,
            "kernelVersion": host.kernel,
            "osImage": host.os_image,
            "containerRuntimeVersion": "local://kube-transcode-nodeagent",
            "kubeletVersion": kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": node_arch(),
        },
    }


def build_lease(node: str, node_uid: str, renew_time: str, duration: int = 40) -> Obj:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": node,
            "namespace": "kube-node-lease",
            "ownerReferences": [
                {"apiVersion": "v1", "kind": "Node", "name": node, "uid": node_uid}
            ],
        },
        "spec": {
            "holderIdentity": node,
            "leaseDurationSeconds": duration,
            "renewTime": renew_time,
        },
    }
