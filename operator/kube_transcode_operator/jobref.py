"""A TranscodeJob's identity on the wire (JobRef), and where its published work writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kube_transcode.messages import JobRef
from kube_transcode_operator.settings import OperatorSettings


def job_ref(meta: Mapping[str, Any], generation: int | None = None) -> JobRef:
    """The job at `generation` (its current one by default)."""
    return JobRef(
        uid=str(meta["uid"]),
        namespace=str(meta["namespace"]),
        name=str(meta["name"]),
        generation=int(meta["generation"] if generation is None else generation),
    )


def published_bucket(status: Mapping[str, Any], settings: OperatorSettings) -> str:
    """The bucket the published work writes to; the default one for jobs published before
    status recorded it."""
    published = status.get("published") or {}
    return str(published.get("bucket") or settings.default_bucket)


def published_prefix(status: Mapping[str, Any], meta: Mapping[str, Any]) -> str:
    published = status.get("published") or {}
    return str(published.get("prefix") or f"{meta['namespace']}/{meta['name']}")
