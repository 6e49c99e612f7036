"""Simulated spot interruption: cordon, evict every pod (policy/v1 Eviction, each pod's own
grace period), wait until they are gone, then delete the Node: the machine "goes away".

DaemonSet pods are not evicted (as ``kubectl drain --ignore-daemonsets``); they go with the
Node (the pod garbage collector removes pods bound to a node that no longer exists). A
PodDisruptionBudget that refuses an eviction (429) is retried until ``timeout``; when the
timeout is reached the Node is deleted anyway, as a cloud reclaims the machine regardless.
"""

from __future__ import annotations

import logging
import time

from .kube import ApiError, KubeClient, Obj, api_path

LOG = logging.getLogger("nodeagent.interrupt")


def _daemonset_pod(pod: Obj) -> bool:
    return any(o.get("kind") == "DaemonSet" for o in pod["metadata"].get("ownerReferences") or [])


def _pods_on(client: KubeClient, node: str) -> list[Obj]:
    out = client.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={node}"})
    return [p for p in out.get("items") or [] if not _daemonset_pod(p)]


def _evict(client: KubeClient, pod: Obj) -> bool:
    """True when the eviction was accepted (or the pod is already gone)."""
    meta = pod["metadata"]
    ns = meta.get("namespace", "default")
    body = {
        "apiVersion": "policy/v1",
        "kind": "Eviction",
        "metadata": {"name": meta["name"], "namespace": ns},
    }
    try:
        client.post(api_path(ns, "pods", meta["name"], "eviction"), body)
    except ApiError as exc:
        if exc.status == 404:
            return True
        if exc.status == 403 and "being terminated" in str(exc):
            # Its namespace is being deleted: the namespace controller deletes it with grace.
            return True
        if exc.status == 429:  # a PodDisruptionBudget says not now
            LOG.info("eviction of %s/%s refused for now: %s", ns, meta["name"], exc.reason)
            return False
        raise
    LOG.info("evicted %s/%s", ns, meta["name"])
    return True


def interrupt(client: KubeClient, node: str, timeout: float = 600.0, poll: float = 1.0) -> int:
    """Returns 0 when every pod left gracefully, 1 when the timeout forced the issue."""
    try:
        client.get(f"/api/v1/nodes/{node}")
    except ApiError as exc:
        if exc.status == 404:
            LOG.error("node %s not found", node)
            return 2
        raise
    client.patch(f"/api/v1/nodes/{node}", {"spec": {"unschedulable": True}})
    LOG.info("cordoned %s", node)
    deadline = time.monotonic() + timeout
    evicted: set[str] = set()
    rc = 0
    while True:
        pods = _pods_on(client, node)
        if not pods:
            break
        if time.monotonic() >= deadline:
            LOG.warning("timeout: %d pod(s) still on %s; deleting the node anyway", len(pods), node)
            rc = 1
            break
        for pod in pods:
            uid = pod["metadata"]["uid"]
            if uid in evicted or pod["metadata"].get("deletionTimestamp"):
                continue
            if _evict(client, pod):
                evicted.add(uid)
        time.sleep(poll)
    client.delete(f"/api/v1/nodes/{node}")
    LOG.info("deleted node %s", node)
    return rc
