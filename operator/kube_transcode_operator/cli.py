"""`kube-transcode-operator`: the operator as one process, with kopf's liveness endpoint."""

from __future__ import annotations

import kopf

from kube_transcode_operator import logs
from kube_transcode_operator.handlers.startup import load_settings


def main() -> None:
    """Like `kopf run -m kube_transcode_operator.main --standalone -A --liveness ...`."""
    import kube_transcode_operator.main  # noqa: F401 - registers the handlers

    settings = load_settings()
    kopf.configure(verbose=False)
    logs.configure()
    kopf.run(
        standalone=True,
        clusterwide=not settings.watch_namespaces,
        namespaces=settings.watch_namespaces,
        liveness_endpoint=settings.liveness_endpoint,
    )


if __name__ == "__main__":
    main()
