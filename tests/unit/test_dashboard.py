"""The Grafana dashboard: shipped by the chart for the sidecar, a `$datasource` variable behind
every query, only metrics kube-transcode exports, grouped by low-cardinality labels."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from kube_transcode import metric_names
from kube_transcode_devstack.layout import tools_bin
from tests.harness import ROOT

pytestmark = pytest.mark.unit

CHART = ROOT / "charts" / "kube-transcode"
DASHBOARD = CHART / "dashboards" / "kube-transcode.json"
# kube-transcode's own series, with the suffixes of histograms.
METRIC = re.compile(r"\bkube_transcode_[a-z_]+\b")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
LOW_CARDINALITY = {"pool", "priority", "phase", "outcome", "reason", "state", "le"}
WANTED = ("queue depth", "throughput", "latency", "desired vs ready", "failures", "encode speed")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def exprs() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p["targets"]]


def test_the_chart_ships_the_dashboard_as_a_configmap_for_the_grafana_sidecar() -> None:
    out = subprocess.run(
        [str(tools_bin() / "helm"), "template", "kube-transcode", str(CHART),
         "--set", "grafana.dashboards.enabled=true", "--set", "rabbitmq.url=amqp://x",
         "--set", "grafana.dashboards.annotations.grafana_folder=Video",
         "--show-only", "templates/dashboards-configmap.yaml"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    configmap = yaml.safe_load(out)
    assert configmap["kind"] == "ConfigMap"
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Video"}
    assert json.loads(configmap["data"][DASHBOARD.name]) == dashboard()


def test_every_query_uses_the_datasource_variable() -> None:
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard()["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])


def test_the_panels_an_sre_needs_are_there() -> None:
    titles = " | ".join(p["title"].lower() for p in dashboard()["panels"])
    assert [wanted for wanted in WANTED if wanted not in titles] == []
    assert len({p["id"] for p in dashboard()["panels"]}) == len(dashboard()["panels"])


def test_queries_use_only_exported_metrics() -> None:
    known = set(metric_names.ALL)
    unknown = set()
    for expr in exprs():
        for name in METRIC.findall(expr):
            base = next(
                (name.removesuffix(s) for s in HISTOGRAM_SUFFIXES if name.endswith(s)), name
            )
            if name not in known and base not in known:
                unknown.add(name)
    assert unknown == set()


def test_queries_group_only_by_low_cardinality_labels() -> None:
    grouped = {
        label.strip()
        for expr in exprs()
        for group in re.findall(r"by \(([^)]*)\)", expr)
        for label in group.split(",")
    }
    assert grouped <= LOW_CARDINALITY
