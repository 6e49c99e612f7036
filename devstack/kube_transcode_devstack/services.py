"""RabbitMQ (with its management plugin) and MinIO as host services on loopback ports."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

from .credentials import Credentials
from .layout import Layout, Ports, tools_bin
from .processes import Managed
from .waiting import wait_until

RABBITMQ_SERVER = Path("/usr/lib/rabbitmq/bin/rabbitmq-server")
RABBITMQ_CTL = Path("/usr/lib/rabbitmq/bin/rabbitmqctl")
NODENAME = "kube-transcode@localhost"


class RabbitMQ:
    def __init__(self, layout: Layout, ports: Ports, creds: Credentials) -> None:
        self.layout, self.ports, self.creds = layout, ports, creds
        self.home = layout.data / "rabbitmq"
        self.proc = Managed("rabbitmq", layout)

    @property
    def url(self) -> str:
        c = self.creds
        return f"amqp://{c.rabbitmq_user}:{c.rabbitmq_password}@127.0.0.1:{self.ports.amqp}/%2F"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.rabbit_management}"

    def env(self) -> dict[str, str]:
        h = self.home
        return {
            "HOME": str(h),
            "RABBITMQ_NODENAME": NODENAME,
            "RABBITMQ_CONFIG_FILE": str(h / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(h / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(h / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.layout.logs / "rabbitmq.d"),
            "RABBITMQ_PID_FILE": str(h / "rabbitmq.pid"),
            "RABBITMQ_DIST_PORT": str(self.ports.rabbit_dist),
            "ERL_EPMD_PORT": str(self.ports.epmd),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    def up(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        p, c = self.ports, self.creds
        (self.home / "rabbitmq.conf").write_text(
            "\n".join(
                [
                    f"listeners.tcp.1 = 127.0.0.1:{p.amqp}",
                    "management.tcp.ip = 127.0.0.1",
                    f"management.tcp.port = {p.rabbit_management}",
                    f"default_user = {c.rabbitmq_user}",
                    f"default_pass = {c.rabbitmq_password}",
                    "default_user_tags.administrator = true",
                    "loopback_users = none",
                    "log.console = false",
                    "log.file.level = info",
                    "",
                ]
            )
        )
        (self.home / "enabled_plugins").write_text("[rabbitmq_management].\n")
        self.proc.start([str(RABBITMQ_SERVER)], env=self.env())
        wait_until(
            "RabbitMQ",
            self._management_ready,
            120,
            detail=lambda: f"see {self.proc.log_file}",
            retry_on=(Exception,),
            alive=self.proc.running,
        )

    def _management_ready(self) -> bool:
        token = base64.b64encode(
            f"{self.creds.rabbitmq_user}:{self.creds.rabbitmq_password}".encode()
        ).decode()
        req = urllib.request.Request(  # noqa: S310 - our own loopback URL
            f"{self.management_url}/api/overview", headers={"Authorization": f"Basic {token}"}
        )
        with urllib.request.urlopen(req, timeout=3) as resp:  # noqa: S310
            return bool(resp.status == 200)

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ)
        env.update(self.env())
        return subprocess.run(
            [str(RABBITMQ_CTL), "-n", NODENAME, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def down(self) -> None:
        if self.proc.running():
            self.ctl("stop")
        self.proc.stop(grace_seconds=30)
        self._stop_epmd()

    def _stop_epmd(self) -> None:
        """RabbitMQ starts epmd as a daemon outside its process group; stop ours too."""
        epmd = shutil.which("epmd") or _find_epmd()
        if epmd is None:
            return
        env = dict(os.environ)
        env.update(self.env())
        subprocess.run([epmd, "-kill"], env=env, capture_output=True, timeout=15, check=False)


def _find_epmd() -> str | None:
    for candidate in sorted(Path("/usr/lib/erlang").glob("erts-*/bin/epmd")):
        return str(candidate)
    return None


class MinIO:
    def __init__(self, layout: Layout, ports: Ports, creds: Credentials) -> None:
        self.layout, self.ports, self.creds = layout, ports, creds
        self.proc = Managed("minio", layout)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports.minio}"

    def up(self) -> None:
        data = self.layout.data / "minio"
        data.mkdir(parents=True, exist_ok=True)
        self.proc.start(
            [
                str(tools_bin() / "minio"),
                "server",
                str(data),
                "--address",
                f"127.0.0.1:{self.ports.minio}",
                "--console-address",
                f"127.0.0.1:{self.ports.minio_console}",
                "--quiet",
            ],
            env={
                "MINIO_ROOT_USER": self.creds.s3_access_key,
                "MINIO_ROOT_PASSWORD": self.creds.s3_secret_key,
                "MINIO_UPDATE": "off",
                "MINIO_BROWSER": "off",
                "HOME": str(data),
            },
        )
        wait_until(
            "MinIO",
            lambda: _http_ok(f"{self.endpoint}/minio/health/ready"),
            60,
            detail=lambda: f"see {self.proc.log_file}",
            retry_on=(Exception,),
            alive=self.proc.running,
        )

    def down(self) -> None:
        self.proc.stop()


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=3) as resp:  # noqa: S310 - our own loopback URL
        return bool(resp.status == 200)
