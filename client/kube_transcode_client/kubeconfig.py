"""The Kubernetes API with the user's kubeconfig, chosen as kubectl chooses it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubernetes import client, config

from kube_transcode.names import GROUP, JOB_PLURAL, VERSION

REQUEST_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Cluster:
    jobs: Any  # kubernetes.client.CustomObjectsApi
    namespace: str


def connect(kubeconfig: str | None, context: str | None, namespace: str | None) -> Cluster:
    """--kubeconfig, else $KUBECONFIG (a list of files, merged), else ~/.kube/config; the
    context's namespace unless one is given, else `default`. ConfigException when unusable."""
    contexts, active = config.list_kube_config_contexts(  # type: ignore[no-untyped-call]
        config_file=kubeconfig
    )
    chosen = active
    if context is not None:
        chosen = next((c for c in contexts if c["name"] == context), None)
    if chosen is None:
        raise config.ConfigException(f"context {context!r} is not in the kubeconfig")
    api = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=kubeconfig, context=chosen["name"]
    )
    default = (chosen.get("context") or {}).get("namespace") or "default"
    return Cluster(client.CustomObjectsApi(api), namespace or default)


def check_access(cluster: Cluster) -> None:
    """One cheap read of TranscodeJobs: the API server answers, the credentials work and the
    CRD is installed, before anything large is uploaded."""
    cluster.jobs.list_namespaced_custom_object(
        GROUP,
        VERSION,
        cluster.namespace,
        JOB_PLURAL,
        limit=1,
        _request_timeout=REQUEST_TIMEOUT_SECONDS,
    )
