"""The chart against the real API server: lint, then a server-side dry run of what it renders
(every object, the CRD included, validated by the API server's own schemas)."""

from __future__ import annotations

import json
import subprocess
from typing import Any, cast

import pytest
import yaml

from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.stack import Stack
from tests.harness import ROOT
from tests.harness.kube import Kubectl, install_crd

pytestmark = pytest.mark.integration

CHART = ROOT / "charts" / "kube-transcode"
BROKER = ["--set", "rabbitmq.url=amqp://u:p@rabbit:5672/"]
# The fixed worker Deployment, opt-in: it serves the default pool in place of the WorkerPool.
FIXED_WORKER = ["--set", "worker.deployment.enabled=true", "--set", "pools.items.default=null"]


@pytest.fixture(scope="module")
def pool_crd(kube: Stack) -> None:
    """The chart renders the default WorkerPool: a server dry run needs its CRD served."""
    install_crd(kube.layout.kubeconfig, "workerpools.yaml")


def helm(*args: str) -> str:
    proc = subprocess.run(
        [str(tools_bin() / "helm"), *args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_chart_lints() -> None:
    out = helm("lint", str(CHART), "--strict", "--set", "rabbitmq.url=amqp://u:p@rabbit:5672/")
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize(
    "values",
    [
        ["--set", "local=true", "--set", "rabbitmq.url=amqp://u:p@rabbit:5672/"],
        ["--set", "rabbitmq.existingSecret=rmq", "--set", "s3.existingSecret=s3",
         "--set", "operator.watchNamespaces={NAMESPACE}", "--set", "worker.spot.enabled=false"],
    ],
    ids=["local-with-secrets", "existing-secrets-namespaced"],
)  # fmt: skip
def test_rendered_chart_passes_a_server_side_dry_run(
    kube: Stack, namespace: Kubectl, pool_crd: None, values: list[str]
) -> None:
    values = [value.replace("NAMESPACE", namespace.namespace) for value in values]
    rendered = helm(
        "template", "kt", str(CHART), "--namespace", namespace.namespace, "--include-crds", *values
    )
    out = namespace("apply", "--dry-run=server", "-f", "-", input=rendered)
    for kind in (
        "deployment.apps/kt-kube-transcode-operator",
        "serviceaccount/",
        "clusterrole.rbac.authorization.k8s.io/",
        "customresourcedefinition",
        "workerpool.kubetranscode.io/default",
    ):
        assert kind in out  # fmt: skip


def _docs(rendered: str, kind: str) -> dict[str, dict[str, Any]]:
    return {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == kind
    }


def test_the_default_pool_is_a_spot_workerpool_and_the_fixed_deployment_opt_in() -> None:
    default = helm("template", "kt", str(CHART), *BROKER)
    pools = _docs(default, "WorkerPool")
    assert list(pools) == ["default"]
    spec = pools["default"]["spec"]
    assert (spec["capacity"], spec["minReplicas"], spec["maxReplicas"]) == ("Spot", 1, 4)
    assert list(_docs(default, "Deployment")) == ["kt-kube-transcode-operator"]

    fixed = helm("template", "kt", str(CHART), *BROKER, *FIXED_WORKER)
    assert _docs(fixed, "WorkerPool") == {}
    worker = _docs(fixed, "Deployment")["kt-kube-transcode-worker-default"]
    assert worker["spec"]["replicas"] == 1

    both = subprocess.run(
        [str(tools_bin() / "helm"), "template", "kt", str(CHART), *BROKER,
         "--set", "worker.deployment.enabled=true"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert both.returncode != 0
    assert 'pool "default" is served by the WorkerPool pools.items.default already' in both.stderr
    assert "--set pools.items.default=null" in both.stderr


def test_values_schema_refuses_a_typo() -> None:
    proc = subprocess.run(
        [str(tools_bin() / "helm"), "template", "kt", str(CHART),
         "--set", "rabbitmq.url=amqp://u:p@rabbit:5672/", "--set", "worker.deployment.replicaz=3"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "replicaz" in proc.stderr


def test_the_chart_needs_a_broker() -> None:
    proc = subprocess.run(
        [str(tools_bin() / "helm"), "template", "kt", str(CHART)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "rabbitmq.url or rabbitmq.existingSecret is required" in proc.stderr


def test_kind_values_use_the_images_kind_up_builds_and_pass_a_server_dry_run(
    namespace: Kubectl, pool_crd: None
) -> None:
    rendered = helm(
        "template",
        "kube-transcode",
        str(CHART),
        "--namespace",
        namespace.namespace,
        "-f",
        str(ROOT / "hack" / "kind" / "values.yaml"),
    )
    # The operator's Deployment, and the worker Pod template it gives the default WorkerPool.
    containers = [
        container
        for spec in _pod_specs(rendered).values()
        for container in cast(list[dict[str, Any]], spec["containers"])
    ]
    images = {c["image"] for c in containers}
    assert images == {"kube-transcode/operator:dev", "kube-transcode/worker:dev"}
    assert {c["imagePullPolicy"] for c in containers} == {"Never"}
    assert list(_docs(rendered, "WorkerPool")) == ["default"]
    namespace("apply", "--dry-run=server", "-f", "-", input=rendered)
    # The development services, validated in this test's namespace (a dry run creates none).
    docs = yaml.safe_load_all((ROOT / "hack" / "kind" / "services.yaml").read_text())
    services = [d for d in docs if d["kind"] != "Namespace"]
    for doc in services:
        doc["metadata"]["namespace"] = namespace.namespace
    out = namespace("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(services))
    assert "deployment.apps/rabbitmq created (server dry run)" in out


def _pod_specs(rendered: str) -> dict[str, dict[str, object]]:
    """Deployment name -> its Pod spec; the WorkerPools' default template by its ConfigMap."""
    specs: dict[str, dict[str, object]] = {}
    for doc in yaml.safe_load_all(rendered):
        if doc and doc["kind"] == "Deployment":
            specs[doc["metadata"]["name"]] = doc["spec"]["template"]["spec"]
        if doc and doc["kind"] == "ConfigMap" and "template.json" in doc.get("data", {}):
            specs["pool-template"] = yaml.safe_load(doc["data"]["template.json"])["spec"]
    return specs


def test_the_operator_outranks_its_workers_by_default_and_classes_can_be_renamed_or_brought(
    kube: Stack, namespace: Kubectl, pool_crd: None
) -> None:
    # With the fixed worker Deployment (opt-in) too: its class is checked beside the template's.
    base = ["--namespace", namespace.namespace, *BROKER, *FIXED_WORKER]
    rendered = helm("template", "kt", str(CHART), *base)
    classes = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == "PriorityClass"
    }
    operator, worker = classes["kt-kube-transcode-operator"], classes["kt-kube-transcode-worker"]
    assert operator["value"] > 0 > worker["value"]
    assert (operator["preemptionPolicy"], worker["preemptionPolicy"]) == (
        "PreemptLowerPriority",
        "Never",
    )
    specs = _pod_specs(rendered)
    assert specs["kt-kube-transcode-operator"]["priorityClassName"] == "kt-kube-transcode-operator"
    for name in ("kt-kube-transcode-worker-default", "pool-template"):
        assert specs[name]["priorityClassName"] == "kt-kube-transcode-worker", name
    out = namespace("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert "priorityclass.scheduling.k8s.io/kt-kube-transcode-operator" in out

    renamed = helm(
        "template", "kt", str(CHART), *base,
        "--set", "priorityClasses.operator.name=video-control",
        "--set", "priorityClasses.worker.name=video-batch",
    )  # fmt: skip
    specs = _pod_specs(renamed)
    assert specs["kt-kube-transcode-operator"]["priorityClassName"] == "video-control"
    assert specs["kt-kube-transcode-worker-default"]["priorityClassName"] == "video-batch"

    own = helm(
        "template", "kt", str(CHART), *base,
        "--set", "priorityClasses.create=false",
        "--set", "operator.priorityClassName=platform-critical",
    )  # fmt: skip
    assert "kind: PriorityClass" not in own
    specs = _pod_specs(own)
    assert specs["kt-kube-transcode-operator"]["priorityClassName"] == "platform-critical"
    assert "priorityClassName" not in specs["kt-kube-transcode-worker-default"]


@pytest.mark.usefixtures("crd")
def test_templates_from_values_are_created_in_the_release_namespace(namespace: Kubectl) -> None:
    phones = {"ladder": {"preset": "mobile"}, "hls": {"segmentSeconds": 4}}
    base = ["--namespace", namespace.namespace, "--set", "rabbitmq.url=amqp://u:p@rabbit:5672/"]
    rendered = helm(
        "template", "kt", str(CHART), *base,
        "--set-json", f"templates={json.dumps({'phones': phones})}",
        "--show-only", "templates/transcodetemplates.yaml",
    )  # fmt: skip
    template = yaml.safe_load(rendered)
    assert (template["kind"], template["metadata"]["namespace"]) == (
        "TranscodeTemplate",
        namespace.namespace,
    )
    assert template["spec"] == phones
    out = namespace("apply", "--dry-run=server", "-f", "-", input=rendered)
    assert "transcodetemplate.kubetranscode.io/phones created (server dry run)" in out

    typo = subprocess.run(
        [str(tools_bin() / "helm"), "template", "kt", str(CHART), *base,
         "--set", "templates.phones.hls.segmentSecond=4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert typo.returncode != 0
    assert "segmentSecond" in typo.stderr
