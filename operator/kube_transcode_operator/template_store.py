"""TranscodeTemplates read from the API server (the operator only reads them)."""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes

from kube_transcode.names import GROUP, TEMPLATE_PLURAL, VERSION


class TemplateStore:
    def __init__(self, api: Any | None = None) -> None:
        self._api = api or kubernetes.client.CustomObjectsApi()

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The template as it is now, or None: there is none of that name in the namespace."""
        return await asyncio.to_thread(self._get, namespace, name)

    def _get(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            body = self._api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, TEMPLATE_PLURAL, name
            )
        except kubernetes.client.ApiException as error:
            if error.status == 404:
                return None
            raise
        if not isinstance(body, dict):
            raise TypeError(f"expected a TranscodeTemplate object, got {type(body).__name__}")
        return body
