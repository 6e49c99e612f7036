"""The autoscaling benchmark: how fast a WorkerPool follows its queue, and drains a burst.

Against the chart installed on the local stack (`make up`): a spot WorkerPool of its own in the
release namespace (min 0, max 3, short cooldown, small requests), the installed operator
scaling it, real workers.
  (a) reaction: with the pool at zero, 3 messages are published to its queue (confirmed);
      timed until the Deployment asks for 3 replicas (target: 5 s);
  (b) the same, until 3 worker Pods are Ready (adds scheduling, process start and the
      readiness probe's period);
  (c) a burst of N tiny TranscodeJobs (2 s 320x180, one 240p rung) applied at once, timed
      until every one has Succeeded;
  (d) from the burst's last job done until the pool is back at zero (the cooldown, 10 s,
      plus a tick).
The messages of (a) are not jobs: the workers dead-letter them as invalid, which is what
makes the queue empty again; so while (a) and (b) are timed the pool's cooldown is held at
600 s, or it could scale in before its Pods are Ready; and a round starts only when the
previous round's Pods are gone, not just scaled to zero (a terminating worker could still
take the messages). Times are wall clock, polled every 0.1 s with the API client.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes
import pika

from benchmarks import media
from benchmarks.registry import Context
from benchmarks.report import Report, Sample, Variant
from kube_transcode.messages import dead_letter_name, job_queue_name
from kube_transcode_devstack import release
from kube_transcode_devstack.layout import tools_bin
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_operator.pools import POOL_LABEL

GROUP, VERSION = "kubetranscode.io", "v1alpha1"
MAX_REPLICAS = 3
COOLDOWN_SECONDS = 10
HOLD_SECONDS = 600  # the cooldown while the reaction to 3 messages is timed
TARGET_REACTION_SECONDS = 5.0
POLL_SECONDS = 0.1
TIMEOUT_SECONDS = 300.0


class AutoscaleBenchmark:
    name = "autoscale"
    summary = "WorkerPool reaction time (queue -> Deployment -> Ready) and a burst's drain time"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--autoscale-jobs", type=int, default=6, metavar="N", help="burst size (default 6)"
        )

    def unavailable(self, context: Context) -> str | None:
        stack = Stack.at(context.root / ".local")
        if not stack.layout.kubeconfig.exists():
            return "the local stack is not up (run `make up`)"
        if shutil.which(media.FFMPEG) is None:
            return f"no {media.FFMPEG}"
        return None

    def run(self, context: Context) -> Report:
        stack = Stack.at(context.root / ".local")
        kubernetes.config.load_kube_config(config_file=str(stack.layout.kubeconfig))  # type: ignore[no-untyped-call]
        source = upload_source(stack, context.cache_dir)
        pool = f"bench-{secrets.token_hex(3)}"
        jobs, top = context.options.autoscale_jobs, MAX_REPLICAS
        variants = {
            "a": Variant("a", f"queue 0 -> {top} messages until the Deployment is patched"),
            "b": Variant("b", f"queue 0 -> {top} messages until {top} Pods Ready"),
            "c": Variant("c", f"burst of {jobs} tiny jobs until all Succeeded"),
            "d": Variant("d", f"last job done until back at zero ({COOLDOWN_SECONDS} s cooldown)"),
        }
        notes: list[str] = []
        namespace = f"bench-autoscale-{secrets.token_hex(3)}"
        kubectl(stack, "create", "namespace", namespace)
        create_pool(stack, pool)
        try:
            for number in range(1, context.options.repeat + 1):
                seconds_until("the pool's Pods gone", lambda: not pool_pods(pool))
                # The workers drop the reaction's messages (not jobs) at once; the pool must
                # not scale in before its Pods are Ready, so the cooldown is long meanwhile.
                set_cooldown(stack, pool, HOLD_SECONDS)
                patched, ready = reaction(stack, pool)
                set_cooldown(stack, pool, COOLDOWN_SECONDS)
                variants["a"].samples.append(_sample(patched))
                variants["b"].samples.append(_sample(ready))
                seconds_until("the pool at zero", lambda: replicas(pool) == (0, 0))
                drained, back, highest = drain(
                    stack, pool, namespace, source, context.options.autoscale_jobs, number
                )
                variants["c"].samples.append(_sample(drained))
                variants["d"].samples.append(_sample(back))
                notes.append(
                    f"round {number}: patched {patched:.2f} s, Ready {ready:.2f} s, burst "
                    f"drained {drained:.1f} s at up to {highest} workers, zero {back:.1f} s later"
                )
        finally:
            kubectl(stack, "delete", "namespace", namespace, "--wait=false", check=False)
            kubectl(
                stack,
                "delete",
                "workerpool",
                pool,
                "-n",
                release.NAMESPACE,
                "--wait=false",
                check=False,
            )
            purge_dead_letters(stack, pool)
        worst = max(s.wall_seconds for s in variants["a"].samples)
        notes.append(
            f"target: queue change to Deployment patch <= {TARGET_REACTION_SECONDS:.0f} s: "
            f"{'met' if worst <= TARGET_REACTION_SECONDS else 'NOT met'} (worst {worst:.2f} s)"
        )
        notes.append("times are wall clock; CPU and RSS columns do not apply (0)")
        return Report(
            benchmark=self.name,
            title=f"Autoscaling: spot WorkerPool, 0..{MAX_REPLICAS} workers, local stack",
            variants=list(variants.values()),
            environment={"cores": _cores(), "load average": _load()},
            notes=notes,
        )


BENCHMARK = AutoscaleBenchmark()


def _sample(seconds: float) -> Sample:
    return Sample(wall_seconds=seconds, cpu_seconds=0.0, peak_rss_bytes=0)


def kubectl(stack: Stack, *args: str, input: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        [str(tools_bin() / "kubectl"), "--kubeconfig", str(stack.layout.kubeconfig), *args],
        input=input, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if check and proc.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args[:3])}: {proc.stderr.strip()}")
    return proc.stdout


def set_cooldown(stack: Stack, pool: str, seconds: int) -> None:
    patch = {"spec": {"scaleDownCooldownSeconds": seconds}}
    kubectl(
        stack, "patch", "workerpool", pool, "-n", release.NAMESPACE,
        "--type=merge", "-p", json.dumps(patch),
    )  # fmt: skip


def create_pool(stack: Stack, pool: str) -> None:
    crd = Path(__file__).resolve().parents[1] / "crds" / "workerpools.yaml"
    kubectl(stack, "apply", "--server-side", "--force-conflicts", "-f", str(crd))
    kubectl(stack, "wait", "--for=condition=Established", "crd/workerpools.kubetranscode.io")
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "WorkerPool",
        "metadata": {"name": pool, "namespace": release.NAMESPACE},
        "spec": {
            "maxReplicas": MAX_REPLICAS,
            "scaleDownCooldownSeconds": COOLDOWN_SECONDS,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "worker",
                            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
                            "env": [{"name": "KT_FFMPEG_PRESET", "value": "ultrafast"}],
                        }
                    ]
                }
            },
        },
    }
    kubectl(stack, "apply", "-f", "-", input=json.dumps(body))


def replicas(pool: str) -> tuple[int, int] | None:
    """(spec.replicas, readyReplicas) of the pool's Deployment."""
    try:
        deployment: Any = kubernetes.client.AppsV1Api().read_namespaced_deployment(
            f"{pool}-workers", release.NAMESPACE
        )
    except kubernetes.client.ApiException:
        return None
    return int(deployment.spec.replicas or 0), int(deployment.status.ready_replicas or 0)


def pool_pods(pool: str) -> list[str]:
    listed: Any = kubernetes.client.CoreV1Api().list_namespaced_pod(
        release.NAMESPACE, label_selector=f"{POOL_LABEL}={pool}"
    )
    return [pod.metadata.name for pod in listed.items]


def seconds_until(what: str, check: Callable[[], bool]) -> float:
    """Seconds until check() holds, polled every POLL_SECONDS."""
    started = time.monotonic()
    wait_until(what, check, TIMEOUT_SECONDS, interval=POLL_SECONDS)
    return time.monotonic() - started


def reaction(stack: Stack, pool: str) -> tuple[float, float]:
    connection = pika.BlockingConnection(pika.URLParameters(stack.rabbitmq.url))
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        started = time.monotonic()
        for n in range(MAX_REPLICAS):
            channel.basic_publish(
                "", job_queue_name(pool), f"benchmark {n}".encode(),
                pika.BasicProperties(delivery_mode=2), mandatory=True,
            )  # fmt: skip
    finally:
        connection.close()
    seconds_until("the patch", lambda: (replicas(pool) or (0, 0))[0] >= MAX_REPLICAS)
    patched = time.monotonic() - started
    seconds_until("Ready", lambda: (replicas(pool) or (0, 0))[1] >= MAX_REPLICAS)
    return patched, time.monotonic() - started


def drain(
    stack: Stack, pool: str, namespace: str, source: str, count: int, number: int
) -> tuple[float, float, int]:
    names = [f"burst-{number}-{n}" for n in range(count)]
    manifests = {
        "apiVersion": "v1",
        "kind": "List",
        "items": [
            {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "TranscodeJob",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {
                    "source": {"url": source},
                    "ladder": {"rungs": [{"name": "240p"}]},
                    "pool": pool,
                },
            }
            for name in names
        ],
    }
    api = kubernetes.client.CustomObjectsApi()
    highest = 0

    def all_succeeded() -> bool:
        nonlocal highest
        highest = max(highest, (replicas(pool) or (0, 0))[0])
        listed: Any = api.list_namespaced_custom_object(GROUP, VERSION, namespace, "transcodejobs")
        phases = {
            item["metadata"]["name"]: (item.get("status") or {}).get("phase")
            for item in listed["items"]
        }
        failed = [n for n in names if phases.get(n) == "Failed"]
        if failed:
            raise RuntimeError(f"jobs failed: {failed}")
        return all(phases.get(n) == "Succeeded" for n in names)

    started = time.monotonic()
    kubectl(stack, "apply", "-f", "-", input=json.dumps(manifests))
    seconds_until("the burst to succeed", all_succeeded)
    drained = time.monotonic() - started
    back = seconds_until("the pool at zero", lambda: replicas(pool) == (0, 0))
    return drained, back, highest


def upload_source(stack: Stack, cache_dir: Path) -> str:
    path = media.test_pattern(cache_dir, 2, width=320, height=180)
    key = f"benchmarks/{path.name}"
    release.ensure_buckets(stack)
    release.s3_client(stack).upload_file(str(path), release.SOURCES_BUCKET, key)
    return f"s3://{release.SOURCES_BUCKET}/{key}"


def purge_dead_letters(stack: Stack, pool: str) -> None:
    """(a)'s messages, dead-lettered by the workers; the pool's queues go with it."""
    kubectl(stack, "wait", "-n", release.NAMESPACE, f"deployment/{pool}-workers",
            "--for=delete", "--timeout=60s", check=False)  # fmt: skip
    queue = job_queue_name(pool)
    connection = pika.BlockingConnection(pika.URLParameters(stack.rabbitmq.url))
    try:
        channel = connection.channel()
        channel.queue_delete(dead_letter_name(queue))
        channel.exchange_delete(dead_letter_name(queue))
        channel.queue_delete(queue, if_empty=True)
    finally:
        connection.close()


def _cores() -> int:
    return os.cpu_count() or 0


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
