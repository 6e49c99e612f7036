"""The local stack's node agent: a kubelet stand-in that runs Pods as local processes.

Start it (``make up`` does) with::

    python -m kube_transcode_devstack.nodeagent --kubeconfig PATH --state DIR \\
        --node spot-1:spot --node ondemand-1:ondemand [--pod-cidr-prefix 127.77] \\
        [--tls-cert-dir PKI --client-ca-file PKI/ca.crt --kubelet-port 20250]

and simulate a spot interruption (evict all pods with their grace periods, then delete the
Node; the agent notices and stops serving it) with::

    python -m kube_transcode_devstack.nodeagent interrupt --kubeconfig PATH --node spot-1

``... cleanup --state DIR`` kills container processes an agent that died left behind (a new
agent run does the same at start).

What a Pod gets, in place of a container:

* every container's ``command`` + ``args`` (``$(VAR)`` expanded) exec'd directly, never
  through a shell, in a session of its own; a container without ``command`` is reported
  Waiting/``NoCommand``: there are no images, hence no entrypoints;
* its env resolved as kubelet does (``env``, ``envFrom``, Secrets, ConfigMaps, ``fieldRef``,
  ``resourceFieldRef``), plus ``HOSTNAME`` and ``HOME``; the agent's own ``PATH`` is appended
  after the container's, so project commands resolve from the agent's virtualenv; nothing
  else of the agent's environment is passed on;
* its own loopback IP ``127.77.X.Y`` as ``status.podIP`` (hostIP 127.0.0.1), so many pods can
  bind the same port;
* stdout and stderr, one pipe, in ``<state>/pods/<namespace>_<name>_<uid>/<container>.log``,
  each line stamped (:mod:`.logfile`); on a restart the last instance's log becomes
  ``<container>.previous.log``. Working directory that pod folder unless ``workingDir`` is
  set; the folders of the last 100 Pods that left the node are kept for their logs
  (``poddirs``);
* no mounts: processes cannot see ``/var/run/secrets/kubernetes.io/serviceaccount``. Unless
  ``automountServiceAccountToken`` is false (pod, else ServiceAccount), a TokenRequest token,
  ``ca.crt`` and ``namespace`` are written to ``<pod dir>/serviceaccount/`` (refreshed at 80%
  of the token's hour) and ``KT_SERVICEACCOUNT_DIR`` points there, with
  ``KUBERNETES_SERVICE_HOST=127.0.0.1`` and ``KUBERNETES_SERVICE_PORT`` the apiserver's port.
  In-cluster clients must read the token from ``$KT_SERVICEACCOUNT_DIR`` when it is set.
  Volumes (configMap, secret, emptyDir ...) are not materialised.

Probes (httpGet, tcpSocket, exec; startup, liveness, readiness) run against the pod IP;
restart policies and CrashLoopBackOff follow kubelet; deletion runs preStop hooks, SIGTERMs
each container's process group, waits the grace period, SIGKILLs, and deletes the Pod with
grace 0.

``kubectl logs`` (``-f``, ``--tail``, ``--since``, ``--previous`` ...): each Node serves the
kubelet's container-log endpoint over mutual TLS on a loopback port of its own, published in
its status (:mod:`.logserver`; ``--tls-cert-dir``, ``--client-ca-file``, ``--kubelet-port``).

Nodes: see :mod:`.nodes` for the spot/on-demand labels and the spot taints chosen.
"""

from .cli import main

__all__ = ["main"]
