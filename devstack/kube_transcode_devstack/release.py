"""The chart installed into the local stack with the real helm, and an example TranscodeJob
transcoded end to end: what `make up` finishes with."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import yaml

from .layout import tools_bin
from .stack import Stack

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "kube-transcode"
CRDS = ROOT / "crds"
SOURCE_ANNOTATION = "kubetranscode.io/source-digest"
RELEASE = "kube-transcode"
NAMESPACE = "kube-transcode"
DEFAULT_BUCKET = "kube-transcode"
SOURCES_BUCKET = "sources"
EXAMPLE_KEY = "examples/testcard-720p.mp4"
# The default pool's WorkerPool here: the chart's (spot, 1 worker waiting) up to 3 workers,
# what the two 2-CPU nodes hold at 1 CPU each beside the operator.
LOCAL_MAX_WORKERS = 3


def s3_client(stack: Stack) -> Any:
    c = stack.credentials
    return boto3.client(
        "s3",
        endpoint_url=stack.minio.endpoint,
        aws_access_key_id=c.s3_access_key,
        aws_secret_access_key=c.s3_secret_key,
        region_name="us-east-1",
    )


def ensure_buckets(stack: Stack) -> None:
    s3 = s3_client(stack)
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in (DEFAULT_BUCKET, SOURCES_BUCKET):
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
    # The master playlist URL in status plays in a browser or player without credentials.
    s3.put_bucket_policy(Bucket=DEFAULT_BUCKET, Policy=json.dumps(playback_policy(DEFAULT_BUCKET)))


def playback_policy(bucket: str) -> dict[str, Any]:
    """Anyone may read the ladders; the operator's own bookkeeping stays private."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/*"],
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": ["*"]},
                "Action": ["s3:GetObject"],
                "Resource": [f"arn:aws:s3:::{bucket}/.kube-transcode/*"],
            },
        ],
    }


def helm_values(stack: Stack, fixed_workers: int | None = None) -> dict[str, Any]:
    """`make up`'s values: the chart's default, an autoscaled WorkerPool for the default pool.
    With fixed_workers, the chart's fixed worker Deployment of that many Pods serves it
    instead (for tests and benchmarks that need a known number of consumers)."""
    c = stack.credentials
    worker: dict[str, Any] = {
        "podAnnotations": {SOURCE_ANNOTATION: source_digest("kube_transcode", "worker")},
    }
    pools: dict[str, Any] = {"default": {"maxReplicas": LOCAL_MAX_WORKERS}}
    if fixed_workers is not None:
        worker["deployment"] = {"enabled": True, "replicas": fixed_workers}
        pools = {"default": None}  # null removes the chart's default WorkerPool
    return {
        "local": True,
        "rabbitmq": {"url": stack.rabbitmq.url, "managementUrl": stack.rabbitmq.management_url},
        "s3": {
            "endpointUrl": stack.minio.endpoint,
            "accessKeyId": c.s3_access_key,
            "secretAccessKey": c.s3_secret_key,
        },
        # Pods here run the checkout's code: a changed source rolls them on the next install.
        "operator": {
            "defaultBucket": DEFAULT_BUCKET,
            "podAnnotations": {SOURCE_ANNOTATION: source_digest("kube_transcode", "operator")},
        },
        "worker": worker,
        "pools": {"items": pools},
        # The dashboard ConfigMap (no Grafana here: tests/e2e/test_observability.py runs its
        # queries against the local Prometheus, devstack/prometheus.py).
        "grafana": {"dashboards": {"enabled": True}},
        # Webhook receivers of the tests listen on loopback.
        "notifications": {"allowedNetworks": ["127.0.0.0/8"]},
    }


def source_digest(*folders: str) -> str:
    """A digest of the Python sources under the given checkout folders."""
    digest = hashlib.sha256()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def apply_crds(stack: Stack) -> None:
    """helm installs a chart's crds/ on first install only and never upgrades them, so the
    current CRDs are applied first: a changed schema takes effect on the next `make up`."""
    _run(
        [
            str(tools_bin() / "kubectl"),
            "--kubeconfig",
            str(stack.layout.kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kube-transcode-devstack",
            "-f",
            str(CRDS),
        ]
    )


def install_chart(stack: Stack, fixed_workers: int | None = None, timeout: str = "5m") -> None:
    """The current CRDs, then helm upgrade --install, waiting until every Pod is Ready (the
    WorkerPool's workers come after: the operator creates them). Credentials go through a
    private values file, never the command line. fixed_workers: see helm_values."""
    apply_crds(stack)
    values = stack.layout.state / "helm-values.yaml"
    values.write_text(yaml.safe_dump(helm_values(stack, fixed_workers)))
    values.chmod(0o600)
    _run(
        [
            str(tools_bin() / "helm"),
            "upgrade",
            "--install",
            RELEASE,
            str(CHART),
            "--kubeconfig",
            str(stack.layout.kubeconfig),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "-f",
            str(values),
            "--wait",
            "--timeout",
            timeout,
        ]
    )


def make_example_source(stack: Stack) -> str:
    """A 10 s 720p test card with a tone, generated once and uploaded to the sources bucket."""
    local = stack.layout.data / "example-source.mp4"
    if not local.exists():
        _run(
            [
                "ffmpeg",
                "-nostdin",
                "-v",
                "error",
                "-y",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30:duration=10",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=10",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-shortest",
                "-movflags",
                "+faststart",
                str(local),
            ]
        )
    s3_client(stack).upload_file(str(local), SOURCES_BUCKET, EXAMPLE_KEY)
    return f"s3://{SOURCES_BUCKET}/{EXAMPLE_KEY}"


def example_job(source_url: str, name: str = "example") -> dict[str, Any]:
    return {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "TranscodeJob",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "source": {"url": source_url},
            "ladder": {
                "rungs": [
                    {"name": "360p"},
                    {"name": "720p"},
                ]
            },
        },
    }


def transcode_example(stack: Stack, timeout_seconds: int = 300) -> dict[str, Any]:
    """Apply the example job afresh, wait for Succeeded, return its status."""
    kubectl = [str(tools_bin() / "kubectl"), "--kubeconfig", str(stack.layout.kubeconfig)]
    job = example_job(make_example_source(stack))
    _run([*kubectl, "delete", "transcodejob", "example", "-n", "default", "--ignore-not-found"])
    _run([*kubectl, "apply", "-f", "-"], input=yaml.safe_dump(job))
    _run(
        [
            *kubectl,
            "wait",
            "transcodejob/example",
            "-n",
            "default",
            "--for=condition=Succeeded",
            f"--timeout={timeout_seconds}s",
        ]
    )
    out = _run([*kubectl, "get", "transcodejob/example", "-n", "default", "-o", "json"])
    status: dict[str, Any] = json.loads(out)["status"]
    return status


def _run(argv: list[str], input: str | None = None) -> str:
    proc = subprocess.run(argv, input=input, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{Path(argv[0]).name} {' '.join(argv[1:3])} failed:\n{proc.stderr}")
    return proc.stdout
