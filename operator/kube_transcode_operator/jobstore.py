"""TranscodeJobs read and status-patched from a thread (the event consumer), with the Kubernetes
client: every patch carries the resourceVersion it was computed from, so nothing written
concurrently (by kopf's handlers) is overwritten unseen.
"""

from __future__ import annotations

from typing import Any, Final

import kubernetes

GROUP: Final = "kubetranscode.io"
VERSION: Final = "v1alpha1"
PLURAL: Final = "transcodejobs"


class ConflictError(Exception):
    """The job changed since it was read; read it again."""


class JobStore:
    def __init__(self, api: Any | None = None) -> None:
        self._api = api or kubernetes.client.CustomObjectsApi()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body = self._api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        if not isinstance(body, dict):
            raise TypeError(f"expected a TranscodeJob object, got {type(body).__name__}")
        return body

    def patch_status(self, body: dict[str, Any], status: dict[str, Any]) -> None:
        metadata = body["metadata"]
        patch = {
            "metadata": {"resourceVersion": metadata["resourceVersion"]},
            "status": status,
        }
        try:
            self._api.patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], PLURAL, metadata["name"], patch
            )
        except kubernetes.client.ApiException as error:
            if error.status == 409:
                raise ConflictError(str(error.reason)) from error
            raise

    def delete(self, namespace: str, name: str, uid: str) -> None:
        """Delete this very object (not a namesake created since); gone already is fine."""
        try:
            self._api.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace,
                PLURAL,
                name,
                body=kubernetes.client.V1DeleteOptions(
                    preconditions=kubernetes.client.V1Preconditions(uid=uid),
                    propagation_policy="Background",
                ),
            )
        except kubernetes.client.ApiException as error:
            if error.status not in (404, 409):
                raise
