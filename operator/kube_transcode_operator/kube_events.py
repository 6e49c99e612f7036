"""Kubernetes Events posted from outside kopf's handlers (the event consumer's thread).

kopf.event() posts only from within its per-object processing, so the consumer writes core/v1
Events itself, the way kubectl describe shows them.
"""

from __future__ import annotations

import logging
import socket
from datetime import UTC, datetime
from typing import Any

import kubernetes

from kube_transcode_operator.status import KubeEvent

log = logging.getLogger(__name__)
COMPONENT = "kube-transcode-operator"


class EventPoster:
    def __init__(self, api: Any | None = None, instance: str | None = None) -> None:
        self._api = api or kubernetes.client.CoreV1Api()
        self._instance = instance or socket.gethostname()

    def post(self, body: dict[str, Any], event: KubeEvent) -> None:
        """Best effort: an Event that cannot be written is logged, never retried."""
        meta = body["metadata"]
        now = datetime.now(UTC)
        manifest = kubernetes.client.CoreV1Event(
            metadata=kubernetes.client.V1ObjectMeta(
                generate_name=f"{meta['name']}.", namespace=meta["namespace"]
            ),
            involved_object=kubernetes.client.V1ObjectReference(
                api_version=body["apiVersion"],
                kind=body["kind"],
                name=meta["name"],
                namespace=meta["namespace"],
                uid=meta["uid"],
                resource_version=meta.get("resourceVersion"),
            ),
            type=event.type,
            reason=event.reason,
            message=event.message[:1024],
            source=kubernetes.client.V1EventSource(component=COMPONENT),
            reporting_component=COMPONENT,
            reporting_instance=self._instance,
            first_timestamp=now,
            last_timestamp=now,
            count=1,
        )
        try:
            self._api.create_namespaced_event(meta["namespace"], manifest)
        except (kubernetes.client.ApiException, OSError) as error:
            log.warning("cannot post event %s for %s: %s", event.reason, meta["name"], error)
