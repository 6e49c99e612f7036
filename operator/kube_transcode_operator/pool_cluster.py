"""The Kubernetes side of WorkerPools: their Deployments and Pods, and other pools' queues.

One API client (one connection pool) for every tick, made once at startup after the client
configuration was loaded. The blocking calls run in a thread; reads take the raw JSON (plain
dicts, no round trip through the client's model classes).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import kubernetes

from kube_transcode.metric_names import POOL_POD_LABEL
from kube_transcode.names import GROUP, POOL_PLURAL, VERSION
from kube_transcode_operator.deletion_cost import DELETION_COST
from kube_transcode_operator.pools import pod_selector


class InvalidDeploymentError(Exception):
    """The API server refused the Deployment (422): only a change of the pool's spec helps."""


class DeploymentChangedError(Exception):
    """The Deployment changed between reading and replacing it: try again."""


class PoolCluster:
    def __init__(self, client: kubernetes.client.ApiClient | None = None) -> None:
        self._client = client or kubernetes.client.ApiClient()
        self._apps = kubernetes.client.AppsV1Api(self._client)
        self._core = kubernetes.client.CoreV1Api(self._client)
        self._custom = kubernetes.client.CustomObjectsApi(self._client)

    async def apply_deployment(self, wanted: dict[str, Any]) -> None:
        """Create the Deployment, or replace its spec keeping the replicas it has."""
        await asyncio.to_thread(self._apply_deployment, wanted)

    async def deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self._deployment, namespace, name)

    async def pods(self, namespace: str, pool: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._pods, namespace, pool)

    async def set_costs(self, namespace: str, changes: Mapping[str, str]) -> None:
        """Each Pod's deletion cost; a Pod gone meanwhile has nothing to protect."""
        if changes:
            await asyncio.to_thread(self._set_costs, namespace, changes)

    async def scale(self, namespace: str, name: str, replicas: int) -> None:
        await asyncio.to_thread(
            self._apps.patch_namespaced_deployment,
            name,
            namespace,
            {"spec": {"replicas": replicas}},
        )

    async def pool_queue(self, pool: str, default: str) -> str:
        """The pool's spec.queue when it names one, else `default` (pools are looked up in
        every namespace: a pool's name is global within the vhost)."""
        return await asyncio.to_thread(self._pool_queue, pool, default)

    async def worker_deployments(self, namespace: str) -> list[Any]:
        """The Deployments labelled with a pool in `namespace` (client models)."""
        return await asyncio.to_thread(self._worker_deployments, namespace)

    def close(self) -> None:
        self._client.close()  # type: ignore[no-untyped-call]

    def _apply_deployment(self, wanted: dict[str, Any]) -> None:
        meta = wanted["metadata"]
        try:
            self._apps.create_namespaced_deployment(meta["namespace"], wanted)  # type: ignore[arg-type]
            return
        except kubernetes.client.ApiException as error:
            _raise_if_invalid(error)
            if error.status != 409:
                raise
        current = self._apps.read_namespaced_deployment(meta["name"], meta["namespace"])
        wanted["spec"]["replicas"] = current.spec.replicas
        wanted["metadata"]["resourceVersion"] = current.metadata.resource_version  # type: ignore[union-attr]
        try:
            self._apps.replace_namespaced_deployment(meta["name"], meta["namespace"], wanted)  # type: ignore[arg-type]
        except kubernetes.client.ApiException as error:
            _raise_if_invalid(error)
            if error.status == 409:
                raise DeploymentChangedError(_api_message(error)) from error
            raise

    def _deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            response = self._apps.read_namespaced_deployment(
                name, namespace, _preload_content=False
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        return _json(response)

    def _pods(self, namespace: str, pool: str) -> list[dict[str, Any]]:
        response = self._core.list_namespaced_pod(
            namespace, label_selector=pod_selector(pool), _preload_content=False
        )
        items: list[dict[str, Any]] = _json(response).get("items") or []
        return items

    def _set_costs(self, namespace: str, changes: Mapping[str, str]) -> None:
        for pod, cost in changes.items():
            try:
                self._core.patch_namespaced_pod(
                    pod, namespace, {"metadata": {"annotations": {DELETION_COST: cost}}}
                )
            except kubernetes.client.ApiException as error:
                if error.status != 404:
                    raise

    def _pool_queue(self, pool: str, default: str) -> str:
        found = self._custom.list_cluster_custom_object(
            GROUP, VERSION, POOL_PLURAL, field_selector=f"metadata.name={pool}"
        )
        items = found.get("items") if isinstance(found, dict) else None
        for item in items or []:
            queue = (item.get("spec") or {}).get("queue")
            if queue:
                return str(queue)
        return default

    def _worker_deployments(self, namespace: str) -> list[Any]:
        listing = self._apps.list_namespaced_deployment(namespace, label_selector=POOL_POD_LABEL)
        return list(listing.items)


def _raise_if_invalid(error: kubernetes.client.ApiException) -> None:
    if error.status == 422:
        raise InvalidDeploymentError(_api_message(error)) from error


def _api_message(error: kubernetes.client.ApiException) -> str:
    try:
        return str(json.loads(error.body or "")["message"])
    except (TypeError, ValueError, KeyError):
        return str(error.reason)


def _json(response: Any) -> dict[str, Any]:
    data = json.loads(response.data)
    assert isinstance(data, dict)
    return data
