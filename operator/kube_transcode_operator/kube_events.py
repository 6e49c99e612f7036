"""Kubernetes Events about TranscodeJobs and WorkerPools, the way kubectl describe shows them.

One poster for the whole operator: the worker-event consumer's thread calls `post`, kopf's
handlers await `emit`. Unlike kopf.event(), which queues the Event for a background task that
is cancelled when the operator stops, a handler's Event is written before the handler
returns, so an Event is not lost when the operator stops right after a transition.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kubernetes
import urllib3

from kube_transcode_operator.conditions import timestamp
from kube_transcode_operator.status import KubeEvent

log = logging.getLogger(__name__)
COMPONENT = "kube-transcode-operator"
MAX_MESSAGE_CHARS = 1024


class EventPoster:
    def __init__(self, api: Any | None = None, instance: str | None = None) -> None:
        self._api: Any = api or kubernetes.client.CoreV1Api()  # plain manifests, see post()
        self._instance = instance or socket.gethostname()

    def post(self, body: Mapping[str, Any], event: KubeEvent) -> None:
        """Best effort: an Event that cannot be written is logged, never retried."""
        meta = body["metadata"]
        try:
            # A plain manifest, and the response read but not parsed into the client's model
            # classes, which cost more CPU than the request.
            response = self._api.create_namespaced_event(
                meta["namespace"],
                self.manifest(body, event, datetime.now(UTC)),
                _preload_content=False,
            )
            response.read()
            response.release_conn()
        except (kubernetes.client.ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("cannot post event %s for %s: %s", event.reason, meta["name"], error)

    def manifest(self, body: Mapping[str, Any], event: KubeEvent, now: datetime) -> dict[str, Any]:
        """A core/v1 Event about the object `body`."""
        meta = body["metadata"]
        at = timestamp(now)
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": body["apiVersion"],
                "kind": body["kind"],
                "name": meta["name"],
                "namespace": meta["namespace"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message[:MAX_MESSAGE_CHARS],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance,
            "firstTimestamp": at,
            "lastTimestamp": at,
            "count": 1,
        }

    async def emit(self, body: Mapping[str, Any], event: KubeEvent) -> None:
        """From a kopf handler: written before the handler goes on."""
        await asyncio.to_thread(self.post, body, event)
