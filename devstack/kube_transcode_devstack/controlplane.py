"""The Kubernetes control plane as local processes: etcd, kube-apiserver, controller-manager,
scheduler; plus kubeconfigs for the admin, the controllers and the node agent."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path

import yaml

from .layout import Layout, Ports, tools_bin
from .pki import Pki
from .processes import Managed
from .waiting import wait_until

SERVICE_CIDR = "10.96.0.0/16"
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def binary(name: str) -> str:
    path = tools_bin() / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make deps` (hack/tools.sh) first")
    return str(path)


class ControlPlane:
    def __init__(self, layout: Layout, ports: Ports) -> None:
        self.layout = layout
        self.ports = ports
        self.pki = Pki(layout.pki)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def kubeconfig_for(self, user: str) -> Path:
        return (
            self.layout.state / f"kubeconfig-{user}" if user != "admin" else self.layout.kubeconfig
        )

    def up(self) -> None:
        self.layout.make()
        self.pki.ensure()
        for user in ("admin", "controller-manager", "scheduler", "node-agent"):
            self._write_kubeconfig(user)
        self._start_etcd()
        self._start_apiserver()
        self._start_controller_manager()
        self._start_scheduler()

    def down(self) -> None:
        for name in reversed(COMPONENTS):
            Managed(name, self.layout).stop()

    def _start_etcd(self) -> None:
        p = self.ports
        etcd = Managed("etcd", self.layout)
        etcd.start(
            [
                binary("etcd"),
                "--name=local",
                f"--data-dir={self.layout.data / 'etcd'}",
                f"--listen-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--advertise-client-urls=http://127.0.0.1:{p.etcd_client}",
                f"--listen-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{p.etcd_peer}",
                f"--initial-cluster=local=http://127.0.0.1:{p.etcd_peer}",
                "--unsafe-no-fsync",
                "--quota-backend-bytes=4294967296",
                "--log-level=warn",
            ]
        )
        wait_until(
            "etcd",
            lambda: _http_ok(f"http://127.0.0.1:{p.etcd_client}/health"),
            30,
            detail=lambda: f"see {etcd.log_file}",
            retry_on=(Exception,),
            alive=etcd.running,
        )

    def _start_apiserver(self) -> None:
        pki, p = self.pki, self.ports
        api = Managed("kube-apiserver", self.layout)
        api.start(
            [
                binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{p.etcd_client}",
                f"--cert-dir={self.layout.pki}",
                f"--tls-cert-file={pki.cert('apiserver')}",
                f"--tls-private-key-file={pki.key('apiserver')}",
                f"--client-ca-file={pki.ca_cert}",
                f"--secure-port={p.apiserver}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--authorization-mode=RBAC",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                f"--kubelet-client-certificate={pki.cert('apiserver-kubelet-client')}",
                f"--kubelet-client-key={pki.key('apiserver-kubelet-client')}",
                # The node agent's Nodes: dial 127.0.0.1, verify their serving certificates.
                "--kubelet-preferred-address-types=InternalIP,Hostname",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                # Aggregation-layer settings: without them every component logs a missing CA.
                f"--requestheader-client-ca-file={pki.ca_cert}",
                "--requestheader-allowed-names=front-proxy-client",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.cert('front-proxy-client')}",
                f"--proxy-client-key-file={pki.key('front-proxy-client')}",
                "--profiling=false",
                "--v=1",
            ]
        )
        wait_until(
            "kube-apiserver",
            self._apiserver_ready,
            90,
            detail=lambda: f"see {api.log_file}",
            retry_on=(Exception,),
            alive=api.running,
        )

    def _start_controller_manager(self) -> None:
        pki = self.pki
        Managed("kube-controller-manager", self.layout).start(
            [
                binary("kube-controller-manager"),
                f"--kubeconfig={self.kubeconfig_for('controller-manager')}",
                f"--authentication-kubeconfig={self.kubeconfig_for('controller-manager')}",
                f"--authorization-kubeconfig={self.kubeconfig_for('controller-manager')}",
                f"--service-account-private-key-file={pki.sa_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--cluster-signing-cert-file={pki.ca_cert}",
                f"--cluster-signing-key-file={pki.ca_key}",
                "--use-service-account-credentials=true",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.controller_manager}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ]
        )

    def _start_scheduler(self) -> None:
        Managed("kube-scheduler", self.layout).start(
            [
                binary("kube-scheduler"),
                f"--kubeconfig={self.kubeconfig_for('scheduler')}",
                f"--authentication-kubeconfig={self.kubeconfig_for('scheduler')}",
                f"--authorization-kubeconfig={self.kubeconfig_for('scheduler')}",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports.scheduler}",
                "--leader-elect=false",
                "--profiling=false",
                "--v=1",
            ]
        )

    def wait_ready(self, timeout: float = 90) -> None:
        wait_until("kube-apiserver", self._apiserver_ready, timeout, retry_on=(Exception,))

    def _apiserver_ready(self) -> bool:
        ctx = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        ctx.load_cert_chain(str(self.pki.cert("admin")), str(self.pki.key("admin")))
        return _http_ok(f"{self.server}/readyz", ctx)

    def _write_kubeconfig(self, user: str) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "kube-transcode-local",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority": str(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate": str(self.pki.cert(user)),
                        "client-key": str(self.pki.key(user)),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "kube-transcode-local",
                    "context": {
                        "cluster": "kube-transcode-local",
                        "user": user,
                        "namespace": "default",
                    },
                }
            ],
            "current-context": "kube-transcode-local",
        }
        path = self.kubeconfig_for(user)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)


def _http_ok(url: str, ctx: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=3, context=ctx) as resp:  # noqa: S310 - our own loopback URL
        return bool(resp.status == 200)
