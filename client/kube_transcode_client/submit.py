"""A TranscodeJob from the command line's choices: its name and its manifest (pure), created
through the API."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Sequence
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from kube_transcode.names import GROUP, JOB_PLURAL, VERSION

KIND = "TranscodeJob"
NAME_LIMIT = 63  # a DNS label: the name is also a folder of the output and a label value
SUFFIX_LENGTH = 5
SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
REQUEST_TIMEOUT_SECONDS = 30


def job_name(source: str, suffix: str | None = None) -> str:
    """'My Talk (final).mp4' -> 'my-talk-final-x7k2p': the file's stem made DNS-safe, plus a
    random suffix so submitting the same file twice makes two jobs."""
    path = urlsplit(source).path if "://" in source else source
    stem = PurePosixPath(path.replace("\\", "/")).name.rsplit(".", 1)[0]
    base = re.sub(r"[^a-z0-9]+", "-", stem.lower()).strip("-") or "job"
    if suffix is None:
        suffix = "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))
    base = base[: NAME_LIMIT - len(suffix) - 1].rstrip("-")
    return f"{base}-{suffix}"


def build_job(
    name: str,
    source_url: str,
    *,
    priority: str | None = None,
    pool: str | None = None,
    template: str | None = None,
    rungs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The manifest; fields not chosen are left to the template and the CRD's defaults."""
    spec: dict[str, Any] = {"source": {"url": source_url}}
    if template is not None:
        spec["template"] = template
    if rungs:
        spec["ladder"] = {"rungs": [{"name": rung} for rung in rungs]}
    if priority is not None:
        spec["priority"] = priority
    if pool is not None:
        spec["pool"] = pool
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name},
        "spec": spec,
    }


def create_job(jobs: Any, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """The created object, as the API server stored it (its resourceVersion starts a watch)."""
    created: dict[str, Any] = jobs.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        JOB_PLURAL,
        manifest,
        _request_timeout=REQUEST_TIMEOUT_SECONDS,
    )
    return created
