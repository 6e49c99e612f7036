"""Where the local stack keeps things, and the loopback ports it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def cache_dir() -> Path:
    """The build cache outside the checkout (same rule as hack/tools.sh)."""
    explicit = os.environ.get("KT_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "kube-transcode"


def tools_bin() -> Path:
    return cache_dir() / "bin"


@dataclass(frozen=True)
class Ports:
    etcd_client: int = 23790
    etcd_peer: int = 23800
    apiserver: int = 16443
    controller_manager: int = 20257
    scheduler: int = 20259
    kubelet: int = 20250  # the node agent's logs endpoint: one port per node from here
    amqp: int = 25673
    rabbit_management: int = 25674
    rabbit_dist: int = 25675
    epmd: int = 25676
    minio: int = 29000
    minio_console: int = 29001


@dataclass(frozen=True)
class Layout:
    """Every process's log, pid and data live under one state folder."""

    state: Path

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def pids(self) -> Path:
        return self.state / "pids"

    @property
    def data(self) -> Path:
        return self.state / "data"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def env_file(self) -> Path:
        return self.state / "env"

    @property
    def credentials(self) -> Path:
        return self.state / "credentials.json"

    def make(self) -> None:
        for d in (self.logs, self.pids, self.data, self.pki):
            d.mkdir(parents=True, exist_ok=True)
