"""The whole local stack: up, down, status, and the env file that points tools at it."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .controlplane import COMPONENTS, ControlPlane
from .credentials import Credentials
from .layout import Layout, Ports, tools_bin
from .processes import Managed
from .services import MinIO, RabbitMQ
from .waiting import wait_until

NODES = ("spot-1:spot", "ondemand-1:ondemand")


@dataclass(frozen=True)
class Stack:
    layout: Layout
    ports: Ports = field(default_factory=Ports)

    @classmethod
    def at(cls, state: Path) -> Stack:
        return cls(Layout(state.resolve()))

    @property
    def credentials(self) -> Credentials:
        return Credentials.load_or_create(self.layout.credentials)

    @property
    def control_plane(self) -> ControlPlane:
        return ControlPlane(self.layout, self.ports)

    @property
    def rabbitmq(self) -> RabbitMQ:
        return RabbitMQ(self.layout, self.ports, self.credentials)

    @property
    def minio(self) -> MinIO:
        return MinIO(self.layout, self.ports, self.credentials)

    @property
    def node_agent(self) -> Managed:
        return Managed("node-agent", self.layout)

    def up(self) -> None:
        self.layout.make()
        self.control_plane.up()
        self.rabbitmq.up()
        self.minio.up()
        self.start_node_agent()
        self.write_env()
        self.wait_nodes_ready()

    def down(self) -> None:
        self.node_agent.stop(grace_seconds=60)
        self.minio.down()
        self.rabbitmq.down()
        self.control_plane.down()

    def start_node_agent(self) -> None:
        pki = self.control_plane.pki
        argv = [
            sys.executable,
            "-m",
            "kube_transcode_devstack.nodeagent",
            "--kubeconfig",
            str(self.control_plane.kubeconfig_for("node-agent")),
            "--state",
            str(self.layout.state / "node-agent"),
            # kubectl logs: the apiserver presents a certificate of the same CA.
            "--tls-cert-dir",
            str(pki.folder),
            "--client-ca-file",
            str(pki.ca_cert),
            "--kubelet-port",
            str(self.ports.kubelet),
        ]
        for node in NODES:
            pki.ensure_kubelet_serving(node.split(":")[0])
            argv += ["--node", node]
        self.node_agent.start(argv, env={"PATH": self._path()})

    def interrupt(self, node: str) -> int:
        """A spot interruption: every Pod on the node is evicted with its grace period, then
        the node goes away."""
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "kube_transcode_devstack.nodeagent",
                "interrupt",
                "--kubeconfig",
                str(self.control_plane.kubeconfig_for("node-agent")),
                "--node",
                node,
            ],
            check=False,
        ).returncode

    def restore_nodes(self, timeout: float = 60) -> None:
        """New spot capacity: the node agent registers its missing nodes again (SIGHUP)."""
        pid = self.node_agent.pid()
        if pid is None:
            raise RuntimeError("the node agent is not running: run `make up`")
        os.kill(pid, signal.SIGHUP)
        self.wait_nodes_ready(timeout)

    def wait_nodes_ready(self, timeout: float = 60) -> None:
        names = [n.split(":")[0] for n in NODES]
        wait_until(
            f"nodes {', '.join(names)}",
            lambda: all(self._node_ready(n) for n in names),
            timeout,
            detail=lambda: f"see {self.node_agent.log_file}",
            retry_on=(Exception,),
            alive=self.node_agent.running,
        )

    def _node_ready(self, name: str) -> bool:
        out = subprocess.run(
            [
                str(tools_bin() / "kubectl"),
                "--kubeconfig",
                str(self.layout.kubeconfig),
                "get",
                "node",
                name,
                "-o",
                'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            ],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
        return out.stdout.strip() == "True"

    def _path(self) -> str:
        venv_bin = str(Path(sys.executable).parent)
        return os.pathsep.join([str(tools_bin()), venv_bin, os.environ.get("PATH", "")])

    def env(self) -> dict[str, str]:
        c = self.credentials
        return {
            "KUBECONFIG": str(self.layout.kubeconfig),
            "PATH": self._path(),
            "KT_STATE": str(self.layout.state),
            "KT_RABBITMQ_URL": self.rabbitmq.url,
            "KT_RABBITMQ_MANAGEMENT_URL": self.rabbitmq.management_url,
            "KT_S3_ENDPOINT_URL": self.minio.endpoint,
            "KT_S3_ACCESS_KEY_ID": c.s3_access_key,
            "KT_S3_SECRET_ACCESS_KEY": c.s3_secret_key,
            "AWS_ACCESS_KEY_ID": c.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": c.s3_secret_key,
            "AWS_ENDPOINT_URL": self.minio.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def write_env(self) -> None:
        lines = ["# Written by `make up`: source it with `. .local/env`."]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in self.env().items()]
        self.layout.env_file.write_text("\n".join(lines) + "\n")
        self.layout.env_file.chmod(0o600)

    def status(self) -> list[tuple[str, int | None, str]]:
        rows: list[tuple[str, int | None, str]] = []
        for name in (*COMPONENTS, "rabbitmq", "minio", "node-agent"):
            proc = Managed(name, self.layout)
            rows.append((name, proc.pid(), str(proc.log_file)))
        return rows
