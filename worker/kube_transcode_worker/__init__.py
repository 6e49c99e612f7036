"""kube_transcode_worker."""
