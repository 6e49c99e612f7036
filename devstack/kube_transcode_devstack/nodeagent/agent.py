"""The node agent: registers Nodes, keeps their Leases fresh, runs their Pods as processes.

Threads:
* one list+watch thread per node for its Pods (field selector ``spec.nodeName``), relisting
  on 410 Gone and on errors;
* one list+watch thread on Nodes to notice a node being deleted (spot interruption);
* one heartbeat thread: Leases every ``lease_every`` seconds, node status every
  ``status_every`` seconds;
* one supervisor thread ticking every ``tick`` seconds: reconciles processes, probes and
  status (patched only when changed);
* a termination thread per deleted pod (preStop, SIGTERM, grace, SIGKILL, delete grace 0);
* a small pool for probes, token refreshes and API deletes;
* per node, an HTTPS listener for ``kubectl logs`` (:mod:`.logserver`), a thread per
  connection.

Only the supervisor and a pod's termination thread touch a PodRuntime's internals; the watch
threads merely replace ``rt.pod`` and set ``rt.gone``. ``self._lock`` guards the pod map.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from . import poddirs
from .envresolve import ConfigError, configmap_data, decode_secret
from .ipalloc import IPAllocator
from .kube import ApiError, KubeClient, UnavailableError, api_path
from .logfile import ContainerLog, NoLogError
from .logserver import LogServer, ServingTLS
from .nodes import (
    OWNED_LABELS,
    HostInfo,
    NodeSpec,
    build_lease,
    build_node,
    build_node_status,
    merge_taints,
    node_labels,
    node_taints,
    parse_taint,
)
from .process import kill_leftovers, pid_files_under
from .runtime import PodRuntime, RuntimeConfig, pod_dir, pod_grace, pod_key, stored_log
from .util import now_micro, now_rfc3339

LOG = logging.getLogger("nodeagent")

Obj = dict[str, Any]
LEASE_NS = "kube-node-lease"
TOKEN_TTL = 3600


class _GoneError(Exception):
    pass


class Watcher(threading.Thread):
    """list+watch of one collection; calls ``handler(type, obj)`` for every change."""

    def __init__(
        self,
        client: KubeClient,
        path: str,
        params: Mapping[str, str],
        handler: Callable[[str, Obj], None],
        alive: Callable[[], bool],
        name: str,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.client = client
        self.path = path
        self.params = dict(params)
        self.handler = handler
        self.alive = alive
        self.known: dict[str, Obj] = {}

    def _dispatch(self, etype: str, obj: Obj) -> None:
        try:
            self.handler(etype, obj)
        except Exception:
            LOG.exception("%s: handling %s event", self.name, etype)

    def _relist(self) -> str:
        lst = self.client.get(self.path, params=self.params, retry_for=None)
        seen: dict[str, Obj] = {}
        for obj in lst.get("items") or []:
            uid = obj["metadata"]["uid"]
            seen[uid] = obj
            self._dispatch("MODIFIED" if uid in self.known else "ADDED", obj)
        for uid, obj in self.known.items():
            if uid not in seen:
                self._dispatch("DELETED", obj)
        self.known = seen
        return str(lst.get("metadata", {}).get("resourceVersion", ""))

    def run(self) -> None:
        stop = self.client.stop
        delay = 0.5
        while self.alive() and not stop.is_set():
            try:
                rv = self._relist()
                delay = 0.5
                while self.alive() and not stop.is_set():
                    params = dict(self.params)
                    params |= {
                        "resourceVersion": rv,
                        "allowWatchBookmarks": "true",
                        "timeoutSeconds": "240",
                    }
                    for ev in self.client.watch(self.path, params, read_timeout=300):
                        etype, obj = ev.get("type", ""), ev.get("object") or {}
                        if etype == "ERROR":
                            if obj.get("code") == 410:
                                raise _GoneError(obj.get("message", ""))
                            raise ApiError(int(obj.get("code", 500)), str(obj.get("message")))
                        rv = obj.get("metadata", {}).get("resourceVersion", rv)
                        if etype == "BOOKMARK":
                            continue
                        uid = obj["metadata"]["uid"]
                        if etype == "DELETED":
                            self.known.pop(uid, None)
                        else:
                            self.known[uid] = obj
                        self._dispatch(etype, obj)
                        if not self.alive():
                            return
            except _GoneError as exc:
                LOG.info("%s: watch expired (410 Gone: %s), relisting", self.name, exc)
            except ApiError as exc:
                if exc.status == 410:
                    LOG.info("%s: 410 Gone, relisting", self.name)
                    continue
                LOG.warning("%s: watch failed: %s; relisting in %.1fs", self.name, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)
            except (requests.RequestException, UnavailableError, ValueError) as exc:
                if stop.is_set():
                    return
                LOG.warning("%s: watch broken: %s; relisting in %.1fs", self.name, exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 10.0)


class _Sources:
    """Secrets and ConfigMaps for env resolution, read from the API at container start."""

    def __init__(self, client: KubeClient) -> None:
        self.client = client

    def _get(self, namespace: str, resource: str, name: str) -> Obj | None:
        try:
            return self.client.get(api_path(namespace, resource, name), retry_for=3)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise ConfigError(f"reading {resource} {namespace}/{name}: {exc}") from exc
        except UnavailableError as exc:
            raise ConfigError(f"reading {resource} {namespace}/{name}: {exc}") from exc

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._get(namespace, "secrets", name)
        return None if obj is None else decode_secret(obj)

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        obj = self._get(namespace, "configmaps", name)
        return None if obj is None else configmap_data(obj)


class NodeAgent:
    def __init__(
        self,
        client: KubeClient,
        nodes: list[NodeSpec],
        state: Path,
        *,
        host: HostInfo,
        ip_prefix: str = "127.77",
        backoff_base: float = 10.0,
        backoff_cap: float = 300.0,
        tick: float = 0.5,
        lease_every: float = 10.0,
        status_every: float = 60.0,
        shutdown_grace: float = 30.0,
        agent_path: str | None = None,
        agent_id: str = "",
        serving: ServingTLS | None = None,
        kubelet_port: int = 0,
    ) -> None:
        self.client = client
        self.stop = client.stop
        self.restore_requested = threading.Event()
        self._node_watch: Watcher | None = None
        self.nodes = {n.name: n for n in nodes}
        self.active: set[str] = set()
        self.node_uids: dict[str, str] = {}
        self.node_conditions: dict[str, list[Obj]] = {}
        self.state = state
        self.host = host
        self.ips = IPAllocator(ip_prefix)
        self.tick_every = tick
        self.lease_every = lease_every
        self.status_every = status_every
        self.shutdown_grace = shutdown_grace
        self.agent_id = agent_id
        self.kubelet_version = "v0.0.0"
        self.cfg = RuntimeConfig(
            state_dir=state,
            agent_path=agent_path if agent_path is not None else os.environ.get("PATH", ""),
            home=os.environ.get("HOME", "/root"),
            apiserver_port=client.access.port,
            ca_data=client.access.ca_data(),
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            node_allocatable={"cpu": host.cpu, "memory": host.memory},
        )
        self._sources = _Sources(client)
        self._lock = threading.RLock()
        self.pods: dict[str, PodRuntime] = {}
        self._finalizing: dict[str, float] = {}
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="probe")
        self._threads: list[threading.Thread] = []
        self._sa_cache: dict[tuple[str, str], tuple[float, bool]] = {}
        self._preclaimed: set[str] = set()
        self.serving = serving
        self.kubelet_port = kubelet_port  # node i listens on kubelet_port + i (0: any port)
        self.log_servers: dict[str, LogServer] = {}
        # Pods that ended before this agent run: their logs are still served.
        self._finished: dict[tuple[str, str, str], Obj] = {}

    # -- PodHost -------------------------------------------------------------------------------

    @property
    def sources(self) -> _Sources:
        return self._sources

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._pool.submit(fn, *args)

    def automount_token(self, pod: Obj) -> bool:
        spec = pod.get("spec", {})
        if spec.get("automountServiceAccountToken") is not None:
            return bool(spec["automountServiceAccountToken"])
        ns = pod["metadata"].get("namespace", "default")
        sa = spec.get("serviceAccountName") or "default"
        cached = self._sa_cache.get((ns, sa))
        if cached and time.monotonic() - cached[0] < 30:
            return cached[1]
        try:
            obj = self.client.get(api_path(ns, "serviceaccounts", sa), retry_for=3)
            value = obj.get("automountServiceAccountToken")
            result = True if value is None else bool(value)
        except ApiError as exc:
            if exc.status != 404:
                raise ConfigError(f"reading serviceaccount {ns}/{sa}: {exc}") from exc
            result = True
        except UnavailableError as exc:
            raise ConfigError(f"reading serviceaccount {ns}/{sa}: {exc}") from exc
        self._sa_cache[(ns, sa)] = (time.monotonic(), result)
        return result

    def service_account_token(self, pod: Obj) -> tuple[str, float]:
        meta, spec = pod["metadata"], pod.get("spec", {})
        ns = meta.get("namespace", "default")
        sa = spec.get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [],
                "expirationSeconds": TOKEN_TTL,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        try:
            out = self.client.post(api_path(ns, "serviceaccounts", sa, "token"), body, retry_for=3)
        except (ApiError, UnavailableError) as exc:
            raise ConfigError(f"requesting a token for serviceaccount {ns}/{sa}: {exc}") from exc
        return str(out["status"]["token"]), float(TOKEN_TTL)

    # -- LogSource: what kubectl logs reads --------------------------------------------------

    def container_log(
        self, node: str, namespace: str, pod: str, container: str, *, previous: bool
    ) -> ContainerLog:
        with self._lock:
            rt = next(
                (
                    r
                    for r in self.pods.values()
                    if (r.node, r.namespace, r.name) == (node, namespace, pod)
                ),
                None,
            )
            finished = self._finished.get((node, namespace, pod))
        if rt is not None:
            return rt.container_log(container, previous=previous)
        if finished is None:
            raise NoLogError(404, f'pod "{pod}" does not exist')
        spec = finished.get("spec", {})
        names = {
            c.get("name")
            for c in (spec.get("initContainers") or []) + (spec.get("containers") or [])
        }
        if container not in names:
            raise NoLogError(404, f'container "{container}" not found in pod "{pod}"')
        folder = pod_dir(self.state, namespace, pod, finished["metadata"]["uid"])
        return stored_log(folder, pod, container, previous=previous, missing="is terminated")

    def _serve_logs(self) -> None:
        if self.serving is None:
            LOG.warning("no serving certificates given: kubectl logs will not reach this node")
            return
        for i, name in enumerate(self.nodes):
            port = self.kubelet_port + i if self.kubelet_port else 0
            server = LogServer(name, port, self.serving.context(name), self)
            server.start()
            self.log_servers[name] = server

    # -- nodes -----------------------------------------------------------------------------------

    def register(self, spec: NodeSpec) -> None:
        body = build_node(spec, self.agent_id)
        try:
            node = self.client.post("/api/v1/nodes", body, retry_for=None)
            LOG.info("registered node %s", spec.name)
        except ApiError as exc:
            if exc.status != 409:
                raise
            current = self.client.get(f"/api/v1/nodes/{spec.name}", retry_for=None)
            labels: dict[str, str | None] = dict(node_labels(spec, self.agent_id))
            for key in OWNED_LABELS:
                if key in current["metadata"].get("labels", {}) and key not in labels:
                    labels[key] = None
            owned = {parse_taint(t)["key"] for t in spec.taints} | {
                "kubernetes.azure.com/scalesetpriority",
                "cloud.google.com/gke-spot",
            }
            taints = merge_taints(
                current.get("spec", {}).get("taints") or [], node_taints(spec), owned
            )
            node = self.client.patch(
                f"/api/v1/nodes/{spec.name}",
                {
                    "metadata": {"labels": labels},
                    "spec": {"taints": taints, "providerID": body["spec"]["providerID"]}
                    if not current.get("spec", {}).get("providerID")
                    else {"taints": taints},
                },
                retry_for=None,
            )
            self.node_conditions[spec.name] = list(node.get("status", {}).get("conditions") or [])
            LOG.info("updated existing node %s", spec.name)
        self.node_uids[spec.name] = node["metadata"]["uid"]
        self.active.add(spec.name)
        self._post_status(spec, ready=True)
        self._renew_lease(spec.name)

    def _post_status(
        self, spec: NodeSpec, *, ready: bool, retry_for: float | None = 10.0, message: str = ""
    ) -> None:
        server = self.log_servers.get(spec.name)
        status = build_node_status(
            spec,
            self.host,
            self.kubelet_version,
            ready=ready,
            now=now_rfc3339(),
            previous_conditions=self.node_conditions.get(spec.name),
            message=message,
            kubelet_port=server.port if server is not None else 0,
        )
        self.client.patch(
            f"/api/v1/nodes/{spec.name}/status", {"status": status}, retry_for=retry_for
        )
        self.node_conditions[spec.name] = status["conditions"]

    def _renew_lease(self, name: str) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NS}/leases"
        now = now_micro()
        try:
            self.client.patch(
                f"{path}/{name}",
                {"spec": {"holderIdentity": name, "renewTime": now, "leaseDurationSeconds": 40}},
                strategic=False,
                retry_for=5,
            )
        except ApiError as exc:
            if exc.status != 404:
                raise
            self.client.post(path, build_lease(name, self.node_uids[name], now), retry_for=5)

    def node_gone(self, name: str, why: str) -> None:
        with self._lock:
            if name not in self.active:
                return
            self.active.discard(name)
            LOG.warning("node %s is gone (%s): no longer serving it", name, why)
            for rt in self.pods.values():
                if rt.node == name:
                    rt.gone = True

    def _on_node_event(self, etype: str, node: Obj) -> None:
        name = node["metadata"]["name"]
        if name not in self.nodes:
            return
        uid = self.node_uids.get(name)
        if etype == "DELETED" and node["metadata"].get("uid") == uid:
            self.node_gone(name, "Node deleted")

    def _heartbeat_loop(self) -> None:
        last_status = time.monotonic()
        while not self.stop.wait(self.lease_every):
            due = time.monotonic() - last_status >= self.status_every
            for name in sorted(self.active):
                try:
                    node = self.client.get(f"/api/v1/nodes/{name}", retry_for=5)
                    if node["metadata"]["uid"] != self.node_uids.get(name):
                        self.node_gone(name, "Node was replaced by another object")
                        continue
                    self._renew_lease(name)
                    if due:
                        self._post_status(self.nodes[name], ready=True, retry_for=5)
                except ApiError as exc:
                    if exc.status == 404:
                        self.node_gone(name, "Node not found")
                    else:
                        LOG.warning("heartbeat for %s: %s", name, exc)
                except UnavailableError as exc:
                    LOG.warning("heartbeat for %s: apiserver unavailable: %s", name, exc)
            if due:
                last_status = time.monotonic()

    # -- pods ------------------------------------------------------------------------------------

    def _on_pod_event(self, node: str, etype: str, pod: Obj) -> None:
        uid = pod["metadata"]["uid"]
        meta = pod["metadata"]
        key = (node, meta.get("namespace", "default"), meta["name"])
        with self._lock:
            rt = self.pods.get(uid)
            if etype == "DELETED":
                if self._finished.get(key, {}).get("metadata", {}).get("uid") == uid:
                    del self._finished[key]
                if rt is not None:
                    rt.pod = pod
                    rt.gone = True
                return
            if rt is not None:
                rt.pod = pod
                return
            if node not in self.active or pod.get("spec", {}).get("nodeName") != node:
                return
            if meta.get("deletionTimestamp"):
                if uid not in self._finalizing:
                    self._finalizing[uid] = time.monotonic()
                    LOG.info("%s: unknown terminating pod, deleting it", pod_key(pod))
                    self._pool.submit(self._delete_pod, pod)
                return
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self._finished[key] = pod
                return
            prev_ip = (pod.get("status") or {}).get("podIP", "")
            if prev_ip and prev_ip in self._preclaimed:
                self._preclaimed.discard(prev_ip)
                ip = prev_ip
            elif prev_ip and self.ips.reserve(prev_ip):
                ip = prev_ip
            else:
                ip = self.ips.allocate()
            self.pods[uid] = PodRuntime(pod, node, ip, self.cfg, self)
            LOG.info("%s: admitted on %s with IP %s", pod_key(pod), node, ip)

    def _delete_pod(self, pod: Obj) -> None:
        meta = pod["metadata"]
        ns = meta.get("namespace", "default")
        try:
            self.client.delete(
                api_path(ns, "pods", meta["name"]),
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": meta["uid"]},
                },
                retry_for=30,
            )
            LOG.info("%s: deleted from the API", pod_key(pod))
        except ApiError as exc:
            if exc.status not in (404, 409):
                LOG.warning("%s: delete failed: %s", pod_key(pod), exc)
        except UnavailableError as exc:
            LOG.warning("%s: delete failed: %s", pod_key(pod), exc)

    def _patch_status(self, rt: PodRuntime, status: Obj, retry_for: float = 0) -> None:
        try:
            self.client.patch(
                api_path(rt.namespace, "pods", rt.name, "status"),
                {"metadata": {"uid": rt.uid}, "status": status},
                retry_for=retry_for,
            )
            rt.last_sent = status
        except ApiError as exc:
            if exc.status == 404:
                rt.gone = True
            else:
                LOG.warning("%s: status patch failed: %s", rt.key, exc)
                rt.last_sent = status  # don't hammer with a patch the server refuses
        except UnavailableError as exc:
            LOG.warning("%s: status patch failed: %s", rt.key, exc)
            rt.patch_retry_at = time.monotonic() + 2

    def _start_termination(self, rt: PodRuntime, grace: float, use_api: bool) -> None:
        rt.terminating = True
        LOG.info("%s: terminating (grace %gs)", rt.key, grace)
        t = threading.Thread(
            target=self._terminate,
            args=(rt, grace, use_api),
            name=f"terminate-{rt.name}",
            daemon=True,
        )
        rt.thread = t
        t.start()

    def _terminate(self, rt: PodRuntime, grace: float, use_api: bool) -> None:
        try:
            rt.terminate(grace)
            if use_api and not rt.gone and not self.stop.is_set():
                self._patch_status(rt, rt.status(terminal=True), retry_for=10)
                if not rt.gone:
                    self._delete_pod(rt.pod)
        except Exception:
            LOG.exception("%s: terminating", rt.key)
        finally:
            rt.cleanup()
            with self._lock:
                self.pods.pop(rt.uid, None)
                self._finalizing[rt.uid] = time.monotonic()
                self.ips.release(rt.ip)
                live = set(self.pods)
            LOG.info("%s: gone from the node", rt.key)
            poddirs.prune(self.state / "pods", live)

    def _reconcile(self, rt: PodRuntime, now: float) -> None:
        pod = rt.pod
        if rt.gone:
            self._start_termination(rt, min(pod_grace(pod), 2.0), use_api=False)
            return
        if pod["metadata"].get("deletionTimestamp"):
            self._start_termination(rt, pod_grace(pod), use_api=True)
            return
        rt.tick(now)
        status = rt.status()
        if status != rt.last_sent and now >= rt.patch_retry_at:
            self._patch_status(rt, status)

    def _supervisor_loop(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            with self._lock:
                pods = [rt for rt in self.pods.values() if not rt.terminating]
                cutoff = started - 300
                for uid in [u for u, t in self._finalizing.items() if t < cutoff]:
                    del self._finalizing[uid]
            for rt in pods:
                if self.stop.is_set():
                    break
                try:
                    self._reconcile(rt, time.monotonic())
                except Exception:
                    LOG.exception("%s: reconcile failed", rt.key)
            self.stop.wait(max(0.05, self.tick_every - (time.monotonic() - started)))

    # -- lifecycle -----------------------------------------------------------------------------

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def start(self) -> None:
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "pods").mkdir(exist_ok=True)
        n = kill_leftovers(pid_files_under(self.state))
        if n:
            LOG.info("killed %d process(es) left over from a previous run", n)
        version = self.client.get("/version", retry_for=None)
        self.kubelet_version = str(version.get("gitVersion", "v0.0.0"))
        LOG.info("apiserver %s at %s", self.kubelet_version, self.client.access.host)
        self._serve_logs()
        for spec in self.nodes.values():
            self.register(spec)
        self._preclaim_ips()
        self._spawn(self._supervisor_loop, "supervisor")
        self._spawn(self._heartbeat_loop, "heartbeat")
        self._watch_nodes()
        for name in self.nodes:
            self._watch_pods(name)

    def _watch_nodes(self) -> None:
        watch = Watcher(
            self.client,
            "/api/v1/nodes",
            {},
            self._on_node_event,
            lambda: bool(self.active),
            "watch-nodes",
        )
        watch.start()
        self._threads.append(watch)
        self._node_watch = watch

    def _watch_pods(self, name: str) -> None:
        def handler(etype: str, pod: Obj) -> None:
            self._on_pod_event(name, etype, pod)

        watch = Watcher(
            self.client,
            "/api/v1/pods",
            {"fieldSelector": f"spec.nodeName={name}"},
            handler,
            lambda: name in self.active,
            f"watch-pods-{name}",
        )
        watch.start()
        self._threads.append(watch)

    def restore_nodes(self) -> None:
        """New capacity after a spot interruption: register every configured node that is
        gone and serve it again (the agent was told with SIGHUP)."""
        for name, spec in self.nodes.items():
            if name in self.active:
                continue
            self.register(spec)
            LOG.info("node %s restored", name)
            self._watch_pods(name)
        if self._node_watch is None or not self._node_watch.is_alive():
            self._watch_nodes()

    def _preclaim_ips(self) -> None:
        """Reserve the IPs of pods already running on our nodes (agent restart) before any
        new pod is given one: a pod keeps its IP for life."""
        for name in self.nodes:
            lst = self.client.get(
                "/api/v1/pods", params={"fieldSelector": f"spec.nodeName={name}"}, retry_for=None
            )
            for pod in lst.get("items") or []:
                st = pod.get("status") or {}
                ip = st.get("podIP", "")
                if st.get("phase") not in ("Succeeded", "Failed") and ip and self.ips.reserve(ip):
                    self._preclaimed.add(ip)

    def shutdown(self) -> None:
        """Stop all containers gracefully, mark the nodes NotReady."""
        self.stop.set()
        for t in self._threads:
            if t.name == "supervisor":
                t.join(10)
        with self._lock:
            pods = list(self.pods.values())
        stoppers = []
        for rt in pods:
            if rt.terminating:
                if rt.thread is not None:
                    stoppers.append(rt.thread)
                continue
            grace = min(pod_grace(rt.pod), self.shutdown_grace)
            t = threading.Thread(target=self._stop_quietly, args=(rt, grace), daemon=True)
            t.start()
            stoppers.append(t)
        deadline = time.monotonic() + self.shutdown_grace + 10
        for t in stoppers:
            t.join(max(0.1, deadline - time.monotonic()))
        final = KubeClient(self.client.access, timeout=3)
        self.client = final
        for name in sorted(self.active):
            try:
                self._post_status(
                    self.nodes[name], ready=False, retry_for=2, message="node agent stopped"
                )
            except (ApiError, UnavailableError) as exc:
                LOG.info("could not mark %s NotReady: %s", name, exc)
        self._pool.shutdown(wait=False, cancel_futures=True)
        for server in self.log_servers.values():
            server.stop()
        LOG.info("node agent stopped")

    def _stop_quietly(self, rt: PodRuntime, grace: float) -> None:
        try:
            rt.terminate(grace)
        except Exception:
            LOG.exception("%s: stopping", rt.key)
        finally:
            rt.cleanup()

    def run_forever(self) -> None:
        try:
            self.start()
            while not self.stop.wait(0.5):
                if self.restore_requested.is_set():
                    self.restore_requested.clear()
                    self.restore_nodes()
        except UnavailableError:
            if not self.stop.is_set():
                raise
        finally:
            self.shutdown()
