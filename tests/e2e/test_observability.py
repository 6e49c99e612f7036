"""What an SRE sees: a real Prometheus scrapes the installed chart's operator and workers while
tiny jobs run, and every query of the dashboard the chart ships returns data.

Prometheus is Debian's, started by devstack/prometheus.py on a loopback port with the Pods'
addresses (read with kubectl) as file_sd targets and the chart's alert rules loaded; it is
stopped at the end. The dashboard is read from the ConfigMap the release installed.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from kube_transcode_devstack import release as chart
from kube_transcode_devstack.prometheus import Prometheus
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.e2e.helpers import OPERATOR, WORKER, Jobs, release_kubectl, transcode_job
from tests.harness.kube import Kubectl
from tests.harness.media import make_source

pytestmark = pytest.mark.e2e

SCRAPE_SECONDS = 2.0
# What the operator exports once the code of this checkout runs (a stale Pod lacks them).
FRESH_OPERATOR = "kube_transcode_pool_ready_replicas"
FRESH_WORKER = 'kube_transcode_worker_jobs_total{outcome="abandoned"}'


def pod_metrics(k: Kubectl, selector: str, port: int) -> str:
    pods = json.loads(k("get", "pods", "-l", selector, "-o", "json"))["items"]
    texts = []
    for pod in pods:
        ip = pod.get("status", {}).get("podIP")
        if ip and not pod["metadata"].get("deletionTimestamp"):
            try:
                texts.append(requests.get(f"http://{ip}:{port}/metrics", timeout=5).text)
            except requests.RequestException:
                texts.append("")
    return "\n".join(texts) if texts else ""


def ensure_current_code(k: Kubectl, deployment: str, selector: str, port: int, mark: str) -> None:
    """Pods started before this checkout's metrics existed are restarted (a helm upgrade only
    restarts Pods whose template changed)."""
    if mark in pod_metrics(k, selector, port):
        return
    k("rollout", "restart", deployment)
    k("rollout", "status", deployment, "--timeout=180s")
    wait_until(
        f"{deployment} to serve {mark}",
        lambda: mark in pod_metrics(k, selector, port),
        60,
        lambda: pod_metrics(k, selector, port)[-2000:],
    )


@pytest.fixture(scope="module")
def prometheus(release: Stack) -> Iterator[Prometheus]:
    k = release_kubectl(release)
    ensure_current_code(k, OPERATOR, "app.kubernetes.io/component=operator", 9090, FRESH_OPERATOR)
    ensure_current_code(k, WORKER, "app.kubernetes.io/component=worker", 9100, FRESH_WORKER)
    prom = Prometheus(release.layout)
    prom.down()  # a leftover of an interrupted run would scrape stale targets
    prom.up()
    try:
        yield prom
    finally:
        prom.down()
        assert not prom.proc.running(), "prometheus is still running"


@pytest.fixture(scope="module")
def tiny_source(release: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A 3 s 426x240 clip with a tone in the sources bucket."""
    path = tmp_path_factory.mktemp("observability") / "tiny.mp4"
    make_source(path, width=426, height=240, seconds=3, fps="25", qp=None)
    key = f"observability/{path.name}"
    s3: Any = chart.s3_client(release)
    s3.upload_file(str(path), chart.SOURCES_BUCKET, key)
    yield f"s3://{chart.SOURCES_BUCKET}/{key}"
    s3.delete_object(Bucket=chart.SOURCES_BUCKET, Key=key)


def wait_scraped(prom: Prometheus, components: set[str], timeout: float = 90) -> None:
    """Every operator and worker Pod is a target that was scraped successfully."""

    def healthy() -> bool:
        prom.refresh_targets()
        targets = prom.active_targets()
        up = {t["labels"].get("component") for t in targets if t["health"] == "up"}
        return components <= up and all(t["health"] == "up" for t in targets)

    wait_until("operator and workers scraped", healthy, timeout, lambda: str(prom.active_targets()))


def settle(prom: Prometheus, scrapes: int = 3) -> None:
    """Until Prometheus has scraped every target `scrapes` more times: what just happened is
    in, and a counter's next increase is seen by rate()."""
    due = datetime.now(UTC) + timedelta(seconds=(scrapes - 1) * SCRAPE_SECONDS)

    def scraped_since() -> bool:
        targets = prom.active_targets()
        return bool(targets) and all(scrape_time(t["lastScrape"]) > due for t in targets)

    wait_until(
        f"{scrapes} more scrapes of every target",
        scraped_since,
        30 + scrapes * SCRAPE_SECONDS,
        lambda: str(prom.active_targets()),
    )


def scrape_time(value: str) -> datetime:
    """Prometheus's RFC 3339 times carry nanoseconds; Python reads microseconds."""
    return datetime.fromisoformat(re.sub(r"(\.\d{6})\d+", r"\1", value).replace("Z", "+00:00"))


def dashboard_from_release(release: Stack) -> dict[str, Any]:
    k = release_kubectl(release)
    items = json.loads(k("get", "configmaps", "-l", "grafana_dashboard=1", "-o", "json"))["items"]
    assert len(items) == 1, "the release should install exactly one dashboard ConfigMap"
    (text,) = items[0]["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def substitute(expr: str, variables: dict[str, str]) -> str:
    """What Grafana sends: its variables replaced, `$name` and `${name}` alike."""
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: variables[m.group(1) or m.group(2)], expr)


def test_every_dashboard_panel_shows_data_for_jobs_that_ran(
    release: Stack, prometheus: Prometheus, jobs: Jobs, tiny_source: str
) -> None:
    started = time.monotonic()
    wait_scraped(prometheus, {"operator", "worker"})
    settle(prometheus)  # the series exist before the first job: rate() sees its increase

    jobs.apply(
        transcode_job("tiny-high", tiny_source, priority="high"),
        transcode_job("tiny-low", tiny_source, priority="low"),
    )
    missing = f"s3://{chart.SOURCES_BUCKET}/observability/no-such-clip.mp4"
    # Two failures, with a scrape between them: the first creates the series of its reason.
    for name in ("missing-1", "missing-2"):
        jobs.apply(transcode_job(name, missing, retry={"attempts": 1}))
        jobs.wait_finished([name], timeout=180)
        settle(prometheus)
    finished = jobs.wait_finished(["tiny-high", "tiny-low"], timeout=300)
    assert {n: j["status"]["phase"] for n, j in finished.items()} == {
        "tiny-high": "Succeeded",
        "tiny-low": "Succeeded",
        "missing-1": "Failed",
        "missing-2": "Failed",
    }
    # Pods may have been replaced meanwhile (other tests share the release): current targets.
    wait_scraped(prometheus, {"operator", "worker"})
    # The operator reads the queues every 15 s; then a scrape or two more.
    wait_until(
        "dead-letter depth of pool default in Prometheus",
        lambda: prometheus.query('kube_transcode_dead_letter_messages{pool="default"}'),
        60,
        lambda: str(prometheus.active_targets()),
    )
    settle(prometheus)

    dashboard = dashboard_from_release(release)
    window = f"{int(time.monotonic() - started) + 60}s"
    variables = {"datasource": "prometheus", "pool": ".*", "__rate_interval": window}
    empty: list[str] = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = substitute(target["expr"], variables)
            values = [float(s["value"][1]) for s in prometheus.query(expr)]
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{panel['title']} [{target['refId']}]: {expr} -> {values}")
    assert empty == [], "panels without data:\n" + "\n".join(empty)


def test_the_chart_rules_load_into_prometheus(prometheus: Prometheus) -> None:
    resp = requests.get(f"{prometheus.url}/api/v1/rules", timeout=10)
    groups = resp.json()["data"]["groups"]
    rules = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert {name for name in rules if name.startswith("KubeTranscode")} >= {
        "KubeTranscodeQueueGrowing",
        "KubeTranscodeDeadLetters",
        "KubeTranscodeJobFailureRateHigh",
        "KubeTranscodePoolBelowDesired",
        "KubeTranscodeWorkersCrashLooping",
        "KubeTranscodeNoSpotCapacity",
    }
    assert all(rule["health"] != "err" for rule in rules.values()), rules


def test_prometheus_runs_from_the_state_folder(prometheus: Prometheus, release: Stack) -> None:
    assert prometheus.url.startswith("http://127.0.0.1:")
    assert Path(prometheus.folder).is_relative_to(release.layout.state)
    assert (prometheus.folder / "tsdb").is_dir()
