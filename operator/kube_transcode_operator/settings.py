"""The operator's configuration: one typed object read from KT_* environment variables."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kube_transcode.addresses import Network, networks_from_setting


class OperatorSettings(BaseSettings):
    """Read once at startup; a missing or malformed variable stops the operator with its name."""

    model_config = SettingsConfigDict(env_prefix="KT_", frozen=True, extra="ignore")

    # The broker: job queues, the workers' events exchange and the control exchange.
    rabbitmq_url: SecretStr
    # The operator's own durable queue, bound to the events exchange.
    events_queue: str = "kube-transcode.operator.events"

    # S3: where outputs go, and where the operator removes partial ones.
    s3_endpoint_url: str | None = None
    s3_region: str = "us-east-1"
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    # Base of the HTTP URLs put in status (path style: <base>/<bucket>/<key>).
    s3_public_url: str | None = None
    default_bucket: str = "kube-transcode"
    # Further buckets a namespace may write anywhere in: {"bucket": ["namespace-glob", ...]}.
    output_buckets: dict[str, list[str]] = Field(default_factory=dict)
    allowed_source_schemes: Annotated[tuple[str, ...], NoDecode] = ("s3", "https")

    # Which namespaces to watch; empty means all of them.
    watch_namespaces: Annotated[tuple[str, ...], NoDecode] = ()
    # Pods share one network namespace locally, so bind to the Pod's own IP there.
    bind_address: str = "0.0.0.0"  # noqa: S104 - a Pod listens on its own interfaces
    health_port: int = Field(default=8080, ge=1, le=65535)
    metrics_port: int = Field(default=9090, ge=0, le=65535)
    # How often queue depth, dead letters and replicas are read for /metrics; 0: never.
    queue_metrics_seconds: float = Field(default=15.0, ge=0)

    progress_interval_seconds: float = Field(default=1.0, gt=0)
    # How long deletion waits for a running worker to confirm it stopped before cleaning up.
    cancel_grace_seconds: float = Field(default=30.0, ge=0)
    publish_timeout_seconds: float = Field(default=10.0, gt=0)

    # WorkerPools: the management API (optional; credentials and vhost from the AMQP URL),
    # and the default worker Pod template (JSON) that a pool's own template is merged over.
    rabbitmq_management_url: str | None = None
    worker_template: dict[str, Any] = Field(default_factory=dict)

    # Webhook notifications when a job ends: retried for this long in total, each attempt
    # bounded; receivers on internal addresses only in these networks (CIDRs).
    notify_give_up_seconds: float = Field(default=300.0, gt=0)
    notify_timeout_seconds: float = Field(default=10.0, gt=0)
    notify_backoff_seconds: float = Field(default=1.0, gt=0)
    notify_max_backoff_seconds: float = Field(default=60.0, gt=0)
    notify_allowed_networks: Annotated[tuple[Network, ...], NoDecode] = ()
    # A receiver of every job's notification; its Secret is in the operator's namespace.
    notify_default_webhook_url: str | None = Field(default=None, pattern=r"^https?://\S+$")
    notify_default_secret_name: str | None = None
    notify_default_secret_key: str = "signingKey"  # noqa: S105 - a key name, not a secret
    notify_default_secret_namespace: str | None = None  # default: the operator's own

    @field_validator("allowed_source_schemes", "watch_namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("notify_allowed_networks", mode="before")
    @classmethod
    def _cidrs(cls, value: object) -> object:
        return networks_from_setting(value)

    @field_validator("allowed_source_schemes")
    @classmethod
    def _known_schemes(cls, schemes: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(schemes) - {"s3", "https"})
        if unknown:
            raise ValueError(f"only s3 and https sources exist, got {', '.join(unknown)}")
        return schemes

    @property
    def public_url_base(self) -> str | None:
        base = self.s3_public_url or self.s3_endpoint_url
        return base.rstrip("/") if base else None

    @property
    def liveness_endpoint(self) -> str:
        return f"http://{self.bind_address}:{self.health_port}/healthz"
