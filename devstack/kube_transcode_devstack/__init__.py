"""kube_transcode_devstack."""
