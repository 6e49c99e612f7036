"""kube_transcode_operator."""
