"""kube-transcode's client: from a file on a laptop to a TranscodeJob, followed to its end.

It talks to the Kubernetes API with the user's kubeconfig; the worker package never does
(workers hold no Kubernetes credentials), so this lives apart from it.
"""
