"""A real Prometheus (Debian's) scraping the local stack's kube-transcode Pods.

The Pods run as local processes on loopback Pod IPs, so there is no Kubernetes service
discovery to lean on without credentials: the targets are read with kubectl and written to a
file_sd file (`refresh_targets` again after Pods change), with the labels the chart's
ServiceMonitor and PodMonitor give them (`pool` from the Pod label kubetranscode.io/pool). The
chart's alert rules are loaded too, so this Prometheus also proves they evaluate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import yaml

from .layout import Layout, tools_bin
from .processes import Managed
from .waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "charts" / "kube-transcode" / "rules" / "kube-transcode.rules.yaml"
PORT = 29090
SCRAPE_INTERVAL = "2s"
APP_LABEL = "app.kubernetes.io/name"
COMPONENT_LABEL = "app.kubernetes.io/component"
POOL_LABEL = "kubetranscode.io/pool"


def binary() -> str:
    return shutil.which("prometheus") or "/usr/bin/prometheus"


def targets_from_pods(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """file_sd groups for the Running kube-transcode operator and worker Pods: each Pod's IP
    and its container port named `metrics`."""
    groups = []
    for pod in pods:
        meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
        labels = meta.get("labels") or {}
        component = labels.get(COMPONENT_LABEL)
        if labels.get(APP_LABEL) != "kube-transcode" or component not in ("operator", "worker"):
            continue
        if status.get("phase") != "Running" or not status.get("podIP"):
            continue
        if meta.get("deletionTimestamp"):
            continue
        ports = [
            port["containerPort"]
            for container in spec.get("containers", [])
            for port in container.get("ports", [])
            if port.get("name") == "metrics"
        ]
        if not ports:
            continue
        target_labels = {
            "namespace": meta["namespace"],
            "pod": meta["name"],
            "component": component,
        }
        if component == "worker" and labels.get(POOL_LABEL):
            target_labels["pool"] = labels[POOL_LABEL]
        groups.append({"targets": [f"{status['podIP']}:{ports[0]}"], "labels": target_labels})
    return sorted(groups, key=lambda group: group["labels"]["pod"])


def config(targets_file: Path, rules: Path = RULES) -> dict[str, Any]:
    return {
        "global": {
            "scrape_interval": SCRAPE_INTERVAL,
            "scrape_timeout": SCRAPE_INTERVAL,
            "evaluation_interval": SCRAPE_INTERVAL,
        },
        "rule_files": [str(rules)],
        "scrape_configs": [
            {
                "job_name": "kube-transcode",
                "file_sd_configs": [{"files": [str(targets_file)], "refresh_interval": "2s"}],
            }
        ],
    }


@dataclass(frozen=True)
class Prometheus:
    layout: Layout
    port: int = PORT

    @property
    def proc(self) -> Managed:
        return Managed("prometheus", self.layout)

    @property
    def folder(self) -> Path:
        return self.layout.data / "prometheus"

    @property
    def targets_file(self) -> Path:
        return self.folder / "targets.json"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def up(self, timeout: float = 60) -> None:
        """Start (or keep) Prometheus with fresh targets; wait until it is ready."""
        (self.folder / "tsdb").mkdir(parents=True, exist_ok=True)
        self.refresh_targets()
        config_file = self.folder / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config(self.targets_file), sort_keys=False))
        self.proc.start(
            [
                binary(),
                f"--config.file={config_file}",
                f"--storage.tsdb.path={self.folder / 'tsdb'}",
                "--storage.tsdb.retention.time=1d",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            cwd=self.folder,
        )
        wait_until(
            "prometheus",
            lambda: requests.get(f"{self.url}/-/ready", timeout=2).status_code == 200,
            timeout,
            detail=lambda: f"see {self.proc.log_file}",
            retry_on=(Exception,),
            alive=self.proc.running,
        )

    def down(self) -> None:
        self.proc.stop(grace_seconds=15)

    def refresh_targets(self) -> list[dict[str, Any]]:
        """Write the Pods' addresses for file_sd (atomically: Prometheus watches the file)."""
        out = subprocess.run(
            [
                str(tools_bin() / "kubectl"),
                "--kubeconfig",
                str(self.layout.kubeconfig),
                "get",
                "pods",
                "--all-namespaces",
                "-l",
                f"{APP_LABEL}=kube-transcode",
                "-o",
                "json",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        groups = targets_from_pods(json.loads(out)["items"])
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.targets_file.with_suffix(".tmp")
        partial.write_text(json.dumps(groups, indent=2))
        partial.replace(self.targets_file)
        return groups

    def active_targets(self) -> list[dict[str, Any]]:
        resp = requests.get(f"{self.url}/api/v1/targets", timeout=10)
        resp.raise_for_status()
        targets: list[dict[str, Any]] = resp.json()["data"]["activeTargets"]
        return targets

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (raises on a bad expression)."""
        resp = requests.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=30)
        body = resp.json()
        if body.get("status") != "success":
            raise ValueError(f"{expr}: {body.get('errorType')}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result
