"""The local stack is real: Deployments become processes, signals and grace periods are kept,
spot placement works, a spot interruption moves work, RabbitMQ and MinIO carry data."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.harness.kube import Kubectl

pytestmark = pytest.mark.integration

# Tolerate exactly the spot taints, never everything (a cordoned node must stay off limits).
SPOT_TOLERATIONS = [
    {"key": "kubernetes.azure.com/scalesetpriority", "operator": "Exists", "effect": "NoSchedule"},
    {"key": "cloud.google.com/gke-spot", "operator": "Exists", "effect": "NoSchedule"},
]


def processes_with(marker: str) -> list[int]:
    out = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def deployment(
    name: str,
    replicas: int,
    script: str,
    args: list[str],
    *,
    grace: int = 30,
    pod_spec: dict[str, Any] | None = None,
) -> str:
    spec: dict[str, Any] = {
        "terminationGracePeriodSeconds": grace,
        "containers": [
            {
                "name": "main",
                "image": "local/none:0",
                "command": [sys.executable, "-c", script],
                "args": args,
            }
        ],
    }
    spec.update(pod_spec or {})
    return yaml.safe_dump(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
            },
        }
    )


def pods(k: Kubectl, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(k("get", "pods", "-l", selector, "-o", "json"))[
        "items"
    ]
    return items


def running_ready(k: Kubectl, selector: str) -> list[dict[str, Any]]:
    return [
        p
        for p in pods(k, selector)
        if p["status"].get("phase") == "Running"
        and not p["metadata"].get("deletionTimestamp")
        and any(
            c["type"] == "Ready" and c["status"] == "True"
            for c in p["status"].get("conditions", [])
        )
    ]


SLEEPER = "import sys, time; time.sleep(3600)"
# Records SIGTERM with a timestamp, then takes `linger` seconds to shut down.
GRACEFUL = """
import signal, sys, time
log, linger = sys.argv[1], float(sys.argv[2])
def term(*_):
    with open(log, "a") as f:
        f.write(f"SIGTERM {time.time()}\\n")
    time.sleep(linger)
    with open(log, "a") as f:
        f.write(f"EXIT {time.time()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
with open(log, "a") as f:
    f.write(f"START {time.time()}\\n")
while True:
    time.sleep(1)
"""


def test_nodes_are_registered_and_ready(kube: Stack, namespace: Kubectl) -> None:
    nodes = {
        n["metadata"]["name"]: n
        for n in json.loads(namespace("get", "nodes", "-o", "json"))["items"]
    }
    assert {"spot-1", "ondemand-1"} <= set(nodes)
    spot = nodes["spot-1"]
    assert spot["metadata"]["labels"]["karpenter.sh/capacity-type"] == "spot"
    assert any(t["effect"] == "NoSchedule" for t in spot["spec"].get("taints", []))
    for node in ("spot-1", "ondemand-1"):
        ready = [c for c in nodes[node]["status"]["conditions"] if c["type"] == "Ready"]
        assert ready[0]["status"] == "True"
    version = json.loads(namespace("version", "-o", "json"))
    assert version["serverVersion"]["gitVersion"].startswith("v1.")


def test_deployment_becomes_local_processes_and_scales(namespace: Kubectl) -> None:
    marker = f"marker-{namespace.namespace}"
    namespace("apply", "-f", "-", input=deployment("sleepers", 3, SLEEPER, [marker], grace=2))
    wait_until("3 ready pods", lambda: len(running_ready(namespace, "app=sleepers")) == 3, 60)
    wait_until("3 processes", lambda: len(processes_with(marker)) == 3, 60)
    ips = {p["status"]["podIP"] for p in running_ready(namespace, "app=sleepers")}
    assert len(ips) == 3, "every pod has an address of its own"

    namespace("scale", "deployment/sleepers", "--replicas=1")
    wait_until("1 process", lambda: len(processes_with(marker)) == 1, 60)
    wait_until("1 pod", lambda: len(pods(namespace, "app=sleepers")) == 1, 60)

    namespace("scale", "deployment/sleepers", "--replicas=2")
    wait_until("2 processes", lambda: len(processes_with(marker)) == 2, 60)


def test_pod_deletion_sends_sigterm_and_honours_the_grace_period(
    namespace: Kubectl, tmp_path: Path
) -> None:
    log = tmp_path / "graceful.log"
    namespace(
        "apply",
        "-f",
        "-",
        input=deployment("graceful", 1, GRACEFUL, [str(log), "3"], grace=20),
    )
    wait_until("the process to start", lambda: log.exists() and "START" in log.read_text(), 60)
    pod = pods(namespace, "app=graceful")[0]["metadata"]["name"]
    namespace("delete", "pod", pod, "--wait=false")
    wait_until("a clean exit", lambda: "EXIT" in log.read_text(), timeout=30)
    events = dict(line.split() for line in log.read_text().splitlines() if line)
    assert float(events["EXIT"]) - float(events["SIGTERM"]) >= 2.9, "it was given its 3 s"
    wait_until(
        "the pod to disappear", lambda: pod not in namespace("get", "pods", "-o", "name"), 60
    )


def test_process_ignoring_sigterm_is_killed_after_the_grace_period(namespace: Kubectl) -> None:
    marker = f"stubborn-{namespace.namespace}"
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(3600)"
    namespace("apply", "-f", "-", input=deployment("stubborn", 1, script, [marker], grace=3))
    wait_until("the process", lambda: len(processes_with(marker)) == 1, 60)
    namespace("scale", "deployment/stubborn", "--replicas=0")
    start = time.monotonic()
    wait_until("SIGKILL", lambda: not processes_with(marker), timeout=30)
    elapsed = time.monotonic() - start
    assert 2.5 <= elapsed <= 10, f"killed after {elapsed:.1f} s with a 3 s grace period"


def test_spot_tolerating_pods_land_on_spot_and_others_on_demand(namespace: Kubectl) -> None:
    spot_affinity = {
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {
                                    "key": "karpenter.sh/capacity-type",
                                    "operator": "In",
                                    "values": ["spot"],
                                }
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": SPOT_TOLERATIONS,
    }
    namespace(
        "apply",
        "-f",
        "-",
        input=deployment("on-spot", 2, SLEEPER, ["s"], grace=1, pod_spec=spot_affinity),
    )
    namespace("apply", "-f", "-", input=deployment("plain", 2, SLEEPER, ["p"], grace=1))
    wait_until(
        "4 ready pods", lambda: len(running_ready(namespace, "app in (on-spot,plain)")) == 4, 60
    )
    assert {p["spec"]["nodeName"] for p in pods(namespace, "app=on-spot")} == {"spot-1"}
    assert {p["spec"]["nodeName"] for p in pods(namespace, "app=plain")} == {"ondemand-1"}


def test_spot_interruption_drains_gracefully_and_work_moves_on_demand(
    kube: Stack, namespace: Kubectl, tmp_path: Path
) -> None:
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    # Prefers spot, may run on demand: the shape of a worker pool that survives interruptions.
    prefer_spot = {
        "affinity": {
            "nodeAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 100,
                        "preference": {
                            "matchExpressions": [
                                {
                                    "key": "karpenter.sh/capacity-type",
                                    "operator": "In",
                                    "values": ["spot"],
                                }
                            ]
                        },
                    }
                ]
            }
        },
        "tolerations": SPOT_TOLERATIONS,
    }
    # Each pod logs to its own file (pod name from the downward API) so every exit is seen.
    script = GRACEFUL.replace(
        "log, linger = sys.argv[1], float(sys.argv[2])",
        "import os; log = os.path.join(sys.argv[1], os.environ['POD']); "
        "linger = float(sys.argv[2])",
    )
    manifest = yaml.safe_load(
        deployment("movers", 2, script, [str(log_dir), "1"], grace=15, pod_spec=prefer_spot)
    )
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    ]
    namespace("apply", "-f", "-", input=yaml.safe_dump(manifest))
    wait_until("2 ready pods", lambda: len(running_ready(namespace, "app=movers")) == 2, 60)
    first = {p["metadata"]["name"]: p["spec"]["nodeName"] for p in pods(namespace, "app=movers")}
    assert set(first.values()) == {"spot-1"}

    try:
        assert kube.interrupt("spot-1") == 0
        for pod in first:
            text = (log_dir / pod).read_text()
            assert "SIGTERM" in text and "EXIT" in text, f"{pod} was not stopped gracefully"
        assert "spot-1" not in namespace("get", "nodes", "-o", "name")
        wait_until(
            "replacements on demand",
            lambda: len(running_ready(namespace, "app=movers")) == 2,
            timeout=90,
        )
        nodes = {p["spec"]["nodeName"] for p in running_ready(namespace, "app=movers")}
        assert nodes == {"ondemand-1"}
    finally:
        kube.restore_nodes()
    assert "spot-1" in namespace("get", "nodes", "-o", "name")
