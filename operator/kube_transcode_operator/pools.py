"""WorkerPools: the typed spec, and the Deployment the operator builds for one (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kube_transcode.messages import job_queue_name
from kube_transcode.metric_names import POOL_POD_LABEL
from kube_transcode_operator.placement import Capacity, worker_pod_template

# Selects a pool's own Pods; kubetranscode.io/pool is kept too (shared with the chart's
# fixed worker Deployment and dashboards), but only this label identifies pool-owned Pods.
POOL_LABEL: Final = "kubetranscode.io/workerpool"
JobPriority = Literal["low", "normal", "high"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, alias_generator=to_camel, populate_by_name=True)


class OnDemandFallback(_Model):
    pool: str
    after_seconds: int = Field(default=120, ge=0)
    priorities: tuple[JobPriority, ...] = ("high",)


class PoolTemplate(_Model):
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: dict[str, Any] = Field(default_factory=dict)


class PoolSpec(_Model):
    """Defaults as in the CRD (which applies them first)."""

    queue: str | None = None
    min_replicas: int = Field(default=0, ge=0)
    max_replicas: int = Field(ge=1)
    jobs_per_replica: int = Field(default=1, ge=1)
    scale_down_cooldown_seconds: int = Field(default=60, ge=0)
    capacity: Capacity = "Spot"
    termination_grace_period_seconds: int = Field(default=30, ge=1)
    template: PoolTemplate = PoolTemplate()
    on_demand_fallback: OnDemandFallback | None = None

    @classmethod
    def from_body(cls, spec: Mapping[str, Any]) -> PoolSpec:
        return cls.model_validate(dict(spec))

    def queue_of(self, pool: str) -> str:
        return self.queue or job_queue_name(pool)


def deployment_name(pool: str) -> str:
    return f"{pool}-workers"[:63].rstrip("-")


def pod_labels(pool: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "kube-transcode",
        "app.kubernetes.io/component": "worker",
        "app.kubernetes.io/managed-by": "kube-transcode-operator",
        POOL_POD_LABEL: pool,
        POOL_LABEL: pool,
    }


def pod_selector(pool: str) -> str:
    return f"{POOL_LABEL}={pool}"


def build_deployment(
    pool: str,
    namespace: str,
    spec: PoolSpec,
    default_template: Mapping[str, Any],
    *,
    replicas: int | None = None,
) -> dict[str, Any]:
    """The pool's Deployment; `replicas` only when creating it (the autoscaler owns it later)."""
    labels = pod_labels(pool)
    body: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": deployment_name(pool), "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": {POOL_LABEL: pool}},
            # Replace workers one at a time: a rollout must not take every worker at once.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "revisionHistoryLimit": 3,
            "template": worker_pod_template(
                default_template,
                spec.template.model_dump(),
                labels=labels,
                queue=spec.queue_of(pool),
                capacity=spec.capacity,
                grace_seconds=spec.termination_grace_period_seconds,
            ),
        },
    }
    if replicas is not None:
        body["spec"]["replicas"] = replicas
    return body
