"""Node agent: pod phase/conditions from container states, and Node/Lease construction."""

from __future__ import annotations

import pytest

from kube_transcode_devstack.nodeagent.nodes import (
    DEFAULT_SPOT_TAINTS,
    HostInfo,
    build_lease,
    build_node,
    build_node_status,
    merge_taints,
    parse_node_arg,
    parse_taint,
)
from kube_transcode_devstack.nodeagent.podstatus import (
    ContainerView,
    build_pod_status,
    compute_conditions,
    compute_phase,
)

pytestmark = pytest.mark.unit

NOW = "2026-01-01T00:00:10Z"
EARLIER = "2026-01-01T00:00:00Z"


def running(name: str = "c", ready: bool = True) -> ContainerView:
    return ContainerView(name=name, state="running", started_at=EARLIER, ready=ready, started=True)


def exited(code: int, name: str = "c") -> ContainerView:
    return ContainerView(name=name, state="terminated", exit_code=code, reason="x")


def backing_off(name: str = "c") -> ContainerView:
    return ContainerView(
        name=name, state="waiting", reason="CrashLoopBackOff", last_terminated={"exitCode": 1}
    )


@pytest.mark.parametrize(
    ("policy", "containers", "expected"),
    [
        ("Always", [ContainerView(name="c")], "Pending"),
        ("Always", [running()], "Running"),
        ("Always", [running(), ContainerView(name="d")], "Pending"),
        ("Always", [backing_off()], "Running"),
        ("Always", [exited(0)], "Running"),
        ("OnFailure", [exited(0)], "Succeeded"),
        ("OnFailure", [exited(1)], "Running"),
        ("OnFailure", [backing_off()], "Running"),
        ("Never", [exited(0), exited(0, "d")], "Succeeded"),
        ("Never", [exited(0), exited(2, "d")], "Failed"),
        ("Never", [running(), exited(2, "d")], "Running"),
    ],
)
def test_phase(policy: str, containers: list[ContainerView], expected: str) -> None:
    got = compute_phase(policy, init_failed=False, initialized=True, containers=containers)
    assert got == expected


def test_phase_init_and_terminal_stickiness() -> None:
    assert compute_phase("Always", init_failed=False, initialized=False, containers=[]) == "Pending"
    assert compute_phase("Never", init_failed=True, initialized=False, containers=[]) == "Failed"
    assert (
        compute_phase(
            "Always",
            init_failed=False,
            initialized=True,
            containers=[running()],
            previous="Succeeded",
        )
        == "Succeeded"
    )


def test_conditions_ready_and_transition_times() -> None:
    conds = compute_conditions(
        phase="Running",
        initialized=True,
        init_pending=[],
        containers=[running("a"), running("b", ready=False)],
        previous=[{"type": "PodScheduled", "status": "True", "lastTransitionTime": EARLIER}],
        now=EARLIER,
    )
    by = {c["type"]: c for c in conds}
    assert by["PodScheduled"]["lastTransitionTime"] == EARLIER
    assert by["Initialized"]["status"] == "True" and by["Initialized"]["reason"] is None
    assert by["ContainersReady"]["status"] == "False"
    assert by["Ready"]["reason"] == "ContainersNotReady"
    assert by["Ready"]["message"] == "containers with unready status: [b]"

    later = compute_conditions(
        phase="Running",
        initialized=True,
        init_pending=[],
        containers=[running("a"), running("b")],
        previous=conds,
        now=NOW,
    )
    by2 = {c["type"]: c for c in later}
    assert by2["Ready"]["status"] == "True" and by2["Ready"]["lastTransitionTime"] == NOW
    assert by2["Ready"]["reason"] is None and by2["Ready"]["message"] is None
    assert by2["Initialized"]["lastTransitionTime"] == EARLIER  # unchanged status keeps its time


def test_conditions_gates_and_terminal() -> None:
    gated = compute_conditions(
        phase="Running",
        initialized=True,
        init_pending=[],
        containers=[running()],
        previous=[],
        now=NOW,
        readiness_gates=["example.com/lb"],
    )
    assert {c["type"]: c for c in gated}["Ready"]["reason"] == "ReadinessGatesNotReady"
    done = compute_conditions(
        phase="Succeeded",
        initialized=True,
        init_pending=[],
        containers=[exited(0)],
        previous=[],
        now=NOW,
    )
    assert {c["type"]: c for c in done}["Ready"]["reason"] == "PodCompleted"
    pending = compute_conditions(
        phase="Pending",
        initialized=False,
        init_pending=["setup"],
        containers=[ContainerView(name="c")],
        previous=[],
        now=NOW,
    )
    init = {c["type"]: c for c in pending}["Initialized"]
    assert init["status"] == "False" and init["message"].endswith("[setup]")


def test_container_status_shapes() -> None:
    v = running()
    v.container_id = "local://42"
    v.image = "python:3.11"
    v.restart_count = 2
    v.last_terminated = {"exitCode": 1, "reason": "Error"}
    s = v.to_status()
    assert s["state"] == {"running": {"startedAt": EARLIER}}
    assert s["lastState"] == {"terminated": {"exitCode": 1, "reason": "Error"}}
    assert (s["image"], s["imageID"], s["containerID"]) == (
        "python:3.11",
        "python:3.11",
        "local://42",
    )
    assert s["restartCount"] == 2 and s["ready"] and s["started"]

    t = ContainerView(
        name="c",
        state="terminated",
        exit_code=137,
        reason="Error",
        started_at=EARLIER,
        finished_at=NOW,
        container_id="local://42",
    )
    term = t.to_status()["state"]["terminated"]
    assert term == {
        "exitCode": 137,
        "reason": "Error",
        "startedAt": EARLIER,
        "finishedAt": NOW,
        "containerID": "local://42",
    }
    w = ContainerView(name="c", reason="NoCommand", message="no command").to_status()
    assert w["state"] == {"waiting": {"reason": "NoCommand", "message": "no command"}}
    assert "containerID" not in w

    status = build_pod_status(
        phase="Running",
        conditions=[],
        pod_ip="127.77.0.9",
        host_ip="127.0.0.1",
        start_time=EARLIER,
        init_containers=[],
        containers=[v],
    )
    assert status["podIP"] == "127.77.0.9" and status["podIPs"] == [{"ip": "127.77.0.9"}]
    assert status["hostIP"] == "127.0.0.1" and "initContainerStatuses" not in status


# -- nodes -------------------------------------------------------------------------------------


def test_spot_node_labels_and_taints() -> None:
    spec = parse_node_arg("spot-1:spot")
    node = build_node(spec, agent_id="host")
    labels = node["metadata"]["labels"]
    assert labels["karpenter.sh/capacity-type"] == "spot"
    assert labels["eks.amazonaws.com/capacityType"] == "SPOT"
    assert labels["cloud.google.com/gke-spot"] == "true"
    assert labels["kubernetes.io/hostname"] == "spot-1"
    assert labels["kubernetes.io/os"] == "linux"
    assert labels["node.kubernetes.io/instance-type"] == "local.standard"
    assert node["spec"]["taints"] == [
        {"key": "kubernetes.azure.com/scalesetpriority", "value": "spot", "effect": "NoSchedule"},
        {"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"},
    ]
    assert spec.taints == DEFAULT_SPOT_TAINTS


def test_on_demand_node_and_arg_parsing() -> None:
    spec = parse_node_arg("ondemand-1:ondemand:m5.large", extra_taints=("t:NoExecute",))
    node = build_node(spec)
    labels = node["metadata"]["labels"]
    assert labels["karpenter.sh/capacity-type"] == "on-demand"
    assert labels["eks.amazonaws.com/capacityType"] == "ON_DEMAND"
    assert "cloud.google.com/gke-spot" not in labels
    assert labels["node.kubernetes.io/instance-type"] == "m5.large"
    assert node["spec"]["taints"] == [{"key": "t", "effect": "NoExecute"}]
    assert parse_node_arg("x:on-demand").capacity_type == "on-demand"
    for bad in ("x", "x:cheap", ":spot"):
        with pytest.raises(ValueError):
            parse_node_arg(bad)
    with pytest.raises(ValueError):
        parse_taint("k=v:Sometimes")


def test_merge_taints_keeps_foreign_ones() -> None:
    existing = [
        {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
        {"key": "cloud.google.com/gke-spot", "value": "old", "effect": "NoSchedule"},
    ]
    ours = [{"key": "cloud.google.com/gke-spot", "value": "true", "effect": "NoSchedule"}]
    merged = merge_taints(existing, ours, {"cloud.google.com/gke-spot"})
    assert merged == [existing[0], ours[0]]


def test_node_status_and_lease() -> None:
    host = HostInfo(cpu="4", memory="8Gi")
    spec = parse_node_arg("spot-1:spot")
    st = build_node_status(spec, host, "v1.35.0", ready=True, now=NOW)
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert ready["status"] == "True" and ready["lastHeartbeatTime"] == NOW
    assert st["capacity"]["pods"] == "110" and st["allocatable"]["cpu"] == "4"
    assert {"type": "InternalIP", "address": "127.0.0.1"} in st["addresses"]
    assert {"type": "Hostname", "address": "spot-1"} in st["addresses"]
    served = build_node_status(spec, host, "v1.35.0", ready=True, now=NOW, kubelet_port=20250)
    assert served["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 20250}}
    assert st["nodeInfo"]["kubeletVersion"] == "v1.35.0"
    later = build_node_status(
        spec,
        host,
        "v1.35.0",
        ready=True,
        now="2026-01-01T00:01:00Z",
        previous_conditions=st["conditions"],
    )
    ready2 = {c["type"]: c for c in later["conditions"]}["Ready"]
    assert ready2["lastTransitionTime"] == NOW and ready2["lastHeartbeatTime"] != NOW
    down = build_node_status(
        spec, host, "v1", ready=False, now="x", previous_conditions=st["conditions"]
    )
    assert {c["type"]: c for c in down["conditions"]}["Ready"]["lastTransitionTime"] == "x"

    lease = build_lease("spot-1", "uid-1", "2026-01-01T00:00:00.000000Z")
    assert lease["metadata"]["namespace"] == "kube-node-lease"
    assert lease["metadata"]["ownerReferences"][0] == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "spot-1",
        "uid": "uid-1",
    }
    assert lease["spec"]["holderIdentity"] == "spot-1"
