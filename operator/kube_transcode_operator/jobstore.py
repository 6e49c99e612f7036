"""TranscodeJobs read and status-patched from threads (the event consumer, the pool timers), with
the Kubernetes client: every patch carries the resourceVersion it was computed from, so nothing
written concurrently (by kopf's handlers) is overwritten unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Protocol

import kubernetes

from kube_transcode.names import GROUP, JOB_PLURAL, VERSION
from kube_transcode_operator.status import StatusPatch

CONFLICT_RETRIES: Final = 5
# The job as read -> the status patch to write, or None: nothing to do.
StatusChange = Callable[[dict[str, Any]], StatusPatch | None]


class ConflictError(Exception):
    """The job changed since it was read; read it again."""


class JobKey(Protocol):
    """Which TranscodeJob: a JobRef or the pools' JobView."""

    @property
    def uid(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def name(self) -> str: ...


class JobStore:
    def __init__(self, api: Any | None = None) -> None:
        self._api = api or kubernetes.client.CustomObjectsApi()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body = self._api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, JOB_PLURAL, name
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        if not isinstance(body, dict):
            raise TypeError(f"expected a TranscodeJob object, got {type(body).__name__}")
        return body

    def update_status(self, job: JobKey, change: StatusChange) -> dict[str, Any] | None:
        """Patch the job's status with `change(body)`, computed from the job as just read; on a
        conflict, read and compute again. Returns the body the landed patch was computed from,
        or None: the job is gone (or is a namesake), or `change` had nothing to do. Raises
        ConflictError when every one of CONFLICT_RETRIES tries met a concurrent write."""
        for _ in range(CONFLICT_RETRIES):
            body = self.get(job.namespace, job.name)
            if body is None or body["metadata"]["uid"] != job.uid:
                return None
            patch = change(body)
            if patch is None:
                return None
            try:
                self.patch_status(body, patch)
            except ConflictError:
                continue
            return body
        raise ConflictError(f"{job.namespace}/{job.name} kept changing")

    def patch_status(self, body: dict[str, Any], status: StatusPatch) -> None:
        metadata = body["metadata"]
        patch = {
            "metadata": {"resourceVersion": metadata["resourceVersion"]},
            "status": status,
        }
        try:
            self._api.patch_namespaced_custom_object_status(
                GROUP, VERSION, metadata["namespace"], JOB_PLURAL, metadata["name"], patch
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
                JOB_PLURAL,
                name,
                body=kubernetes.client.V1DeleteOptions(
                    preconditions=kubernetes.client.V1Preconditions(uid=uid),
                    propagation_policy="Background",
                ),
            )
        except kubernetes.client.ApiException as error:
            if error.status not in (404, 409):
                raise
