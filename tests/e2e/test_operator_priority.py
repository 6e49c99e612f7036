"""The fault drill of a spot interruption followed by an operator restart, as an SRE runs it.

Spot capacity goes; the workers move to the on-demand node and take all of its CPU requests;
then the operator Pod comes back (a restart, an upgrade). Without PriorityClasses it stays
Pending for as long as the workers run, and nothing moves. With the chart's classes the
scheduler preempts one worker for it: that worker hands its job back, as on a spot
interruption, and every job still finishes. The workers are the session release's fixed
worker Deployment (tests/e2e/conftest.py configures it), scaled by hand to fill the node.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.e2e.helpers import (
    OPERATOR,
    OPERATOR_PODS,
    WORKER,
    WORKERS,
    Jobs,
    Sources,
    ensure_ready,
    ready_pods,
    release_kubectl,
    transcode_job,
)
from tests.harness.kube import Kubectl

pytestmark = pytest.mark.e2e

ON_DEMAND = "ondemand-1"
WORKER_PODS = "app.kubernetes.io/component=worker"
# Measured on the 2-core machine: 13.4 s (the preempted worker hands back, then the start).
OPERATOR_BACK_SECONDS = 90
JOBS_SECONDS = 300


def pods(k: Kubectl, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(k("get", "pods", "-l", selector, "-o", "json"))[
        "items"
    ]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def running_on(k: Kubectl, selector: str, node: str) -> list[str]:
    return [
        p["metadata"]["name"]
        for p in pods(k, selector)
        if p["spec"].get("nodeName") == node and p.get("status", {}).get("phase") == "Running"
    ]


def node_cpu_free_millis(k: Kubectl, node: str) -> int:
    """The node's allocatable CPU less the requests of the Pods bound to it, as the scheduler
    counts it."""
    allocatable = json.loads(k("get", "node", node, "-o", "json"))["status"]["allocatable"]
    total = _millis(allocatable["cpu"])
    bound = json.loads(
        k("get", "pods", "-A", "-o", "json", "--field-selector", f"spec.nodeName={node}")
    )["items"]
    for pod in bound:
        if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        for container in pod["spec"]["containers"]:
            total -= _millis(container.get("resources", {}).get("requests", {}).get("cpu", "0"))
    return total


def _millis(cpu: str) -> int:
    return int(cpu[:-1]) if cpu.endswith("m") else round(float(cpu) * 1000)


def test_the_operator_comes_back_on_a_node_its_workers_filled(
    jobs: Jobs, sources: Sources, release: Stack
) -> None:
    k = release_kubectl(release)
    classes = {
        name: json.loads(k("get", "priorityclass", name, "-o", "json"))
        for name in ("kube-transcode-operator", "kube-transcode-worker")
    }
    assert (
        classes["kube-transcode-operator"]["value"] > 0 > classes["kube-transcode-worker"]["value"]
    )
    assert classes["kube-transcode-worker"]["preemptionPolicy"] == "Never"
    names = ["drill-long-a", "drill-long-b", "drill-medium"]
    try:
        assert release.interrupt("spot-1") == 0
        k("scale", WORKER, "--replicas=2")  # one fits beside the operator, one waits
        jobs.apply(
            transcode_job(names[0], sources.long.url),
            transcode_job(names[1], sources.long.url),
            transcode_job(names[2], sources.medium.url),
        )
        jobs.wait_phase(names, ("Queued", "Running"), 60)  # published before it goes
        k("scale", OPERATOR, "--replicas=0")  # the operator goes: its Pod is deleted
        wait_until(
            f"two workers Running on {ON_DEMAND}",
            lambda: len(running_on(k, WORKER_PODS, ON_DEMAND)) == 2,
            180,
            lambda: k("get", "pods", "-o", "wide"),
        )
        free = node_cpu_free_millis(k, ON_DEMAND)
        operator_cpu = _millis(
            json.loads(k("get", OPERATOR, "-o", "json"))["spec"]["template"]["spec"]["containers"][
                0
            ]["resources"]["requests"]["cpu"]
        )
        assert free < operator_cpu, f"the workers left {free}m free: the drill needs a full node"

        back_from = time.monotonic()
        k("scale", OPERATOR, "--replicas=1")
        wait_until(
            "the operator Ready again",
            lambda: len(ready_pods(k, OPERATOR_PODS)) == 1,
            OPERATOR_BACK_SECONDS,
            lambda: k("get", "pods", "-o", "wide") + k("get", "events", "--sort-by=.lastTimestamp"),
        )
        took = time.monotonic() - back_from
        preempted = [
            e
            for e in json.loads(k("get", "events", "-o", "json"))["items"]
            if e["reason"] == "Preempted" and e["involvedObject"]["kind"] == "Pod"
        ]
        assert preempted, "the operator found room without preempting a worker: no drill"
        assert all("worker" in e["involvedObject"]["name"] for e in preempted), preempted

        finished = jobs.wait_finished(names, JOBS_SECONDS)
        assert {n: j["status"]["phase"] for n, j in finished.items()} == dict.fromkeys(
            names, "Succeeded"
        ), jobs.table()
        print(f"operator Ready {took:.1f} s after it was started again on a full node")
    finally:
        k("scale", OPERATOR, "--replicas=1")
        k("scale", WORKER, f"--replicas={WORKERS}")
        release.restore_nodes()
        ensure_ready(release, OPERATOR, 1)
        ensure_ready(release, WORKER, WORKERS)
