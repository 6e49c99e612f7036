"""Where the operator's Kubernetes credentials come from, decided in one place.

In a cluster, the Pod's service account. On the project's local stack (no containers), the node
agent writes the service account token, CA and namespace to the folder named by
KT_SERVICEACCOUNT_DIR instead of /var/run/secrets/kubernetes.io/serviceaccount. Elsewhere (a
developer's shell, tests), the current kubeconfig context.
"""

from __future__ import annotations

import os
from pathlib import Path

import kopf
import kubernetes

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


def service_account_dir() -> Path | None:
    explicit = os.environ.get("KT_SERVICEACCOUNT_DIR")
    if explicit:
        return Path(explicit)
    if (IN_CLUSTER_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return IN_CLUSTER_DIR
    return None


def api_server_url() -> str:
    host = os.environ["KUBERNETES_SERVICE_HOST"]
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    host = f"[{host}]" if ":" in host else host
    return f"https://{host}:{port}"


def kopf_connection() -> kopf.ConnectionInfo | None:
    """For kopf's login handler; None lets kopf fall back to the kubeconfig."""
    folder = service_account_dir()
    if folder is None:
        return None
    namespace_file = folder / "namespace"
    return kopf.ConnectionInfo(
        server=api_server_url(),
        ca_path=str(folder / "ca.crt"),
        token=(folder / "token").read_text().strip(),
        scheme="Bearer",
        default_namespace=namespace_file.read_text().strip() if namespace_file.exists() else None,
    )


def load_client_config() -> None:
    """Configure the kubernetes client the same way (it re-reads the token file as it rotates)."""
    folder = service_account_dir()
    if folder is not None:
        loader = kubernetes.config.incluster_config.InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(folder / "token"),
            cert_filename=str(folder / "ca.crt"),
            try_refresh_token=True,
        )
        loader.load_and_set()  # type: ignore[no-untyped-call]
        return
    # Read KUBECONFIG now: the client reads it at import, which may be too early.
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=os.environ.get("KUBECONFIG")
    )
