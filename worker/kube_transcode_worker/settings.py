"""The worker's configuration: one typed object read from KT_-prefixed environment variables.

Read once at startup (`load_settings`); a missing or malformed value stops the worker with a
message that names the variable. Lists (KT_ALLOWED_SOURCE_NETWORKS) are comma-separated.
POD_NAME and POD_IP (from the Downward API) are read without the prefix.
"""

from __future__ import annotations

import socket
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kube_transcode.ladder import X264Preset
from kube_transcode.messages import DEFAULT_EVENTS_EXCHANGE, MAX_ATTEMPTS_LIMIT
from kube_transcode_worker.ffmpeg_build import default_ffmpeg
from kube_transcode_worker.probe import ProbeLimits

Network = IPv4Network | IPv6Network
GIB = 1024**3


class SettingsError(Exception):
    """The environment does not describe a runnable worker; the text names what to fix."""


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KT_", extra="ignore", frozen=True)

    # Broker
    rabbitmq_url: SecretStr = Field(description="amqp(s)://user:password@host:port/vhost")
    queue: str = Field(default="transcode", pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    events_exchange: str = Field(default=DEFAULT_EVENTS_EXCHANGE, min_length=1)
    heartbeat_seconds: int = Field(default=30, ge=5, le=600)
    # Below the broker's consumer_timeout (30 min by default): see consumer.py.
    delivery_renew_seconds: float = Field(default=600, gt=0)
    hold_ttl_seconds: float = Field(default=60, ge=1)

    # Storage
    s3_endpoint_url: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    upload_concurrency: int = Field(default=8, ge=1, le=64)
    upload_attempts: int = Field(default=5, ge=1, le=20)

    # Sources
    max_source_bytes: int = Field(default=20 * GIB, gt=0)
    max_duration_seconds: float = Field(default=4 * 3600, gt=0)
    max_long_side: int = Field(default=7680, gt=0)
    max_short_side: int = Field(default=4320, gt=0)
    max_fps: float = Field(default=120, gt=0)
    allowed_source_networks: Annotated[tuple[Network, ...], NoDecode] = ()
    allow_http_sources: bool = False
    fetch_connect_timeout_seconds: float = Field(default=10, gt=0)
    fetch_read_timeout_seconds: float = Field(default=60, gt=0)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)

    # Retries (a job's own retry policy may lower max attempts)
    retry_max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS_LIMIT)
    retry_base_seconds: float = Field(default=15, gt=0)
    retry_max_seconds: float = Field(default=900, gt=0)

    # Encoding and the pod
    ffmpeg_preset: X264Preset = "veryfast"
    ffmpeg_binary: str = Field(default_factory=default_ffmpeg)
    work_dir: Path = Path("/tmp/kube-transcode")  # noqa: S108 - an emptyDir in the pod
    shutdown_grace_seconds: float = Field(default=8, gt=0, le=25)
    progress_interval_seconds: float = Field(default=1.0, ge=0.1)
    metrics_port: int = Field(default=9100, ge=1, le=65535)
    metrics_bind_address: str = Field(
        default="0.0.0.0",  # noqa: S104 - scraped from outside the pod
        validation_alias=AliasChoices("KT_METRICS_BIND_ADDRESS", "POD_IP"),
    )
    pod_name: str = Field(
        default_factory=socket.gethostname,
        validation_alias=AliasChoices("KT_POD_NAME", "POD_NAME"),
        pattern=r"^[A-Za-z0-9_.-]{1,200}$",
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("allowed_source_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(ip_network(part.strip()) for part in value.split(",") if part.strip())
        return value

    @property
    def probe_limits(self) -> ProbeLimits:
        return ProbeLimits(
            max_duration_seconds=self.max_duration_seconds,
            max_long_side=self.max_long_side,
            max_short_side=self.max_short_side,
            max_fps=self.max_fps,
        )

    @property
    def worker_dir(self) -> Path:
        """This worker's own scratch space under work_dir (cleared at startup)."""
        return self.work_dir / self.pod_name


def load_settings() -> WorkerSettings:
    """Settings from the environment, or SettingsError listing every bad variable."""
    try:
        return WorkerSettings()  # type: ignore[call-arg]  # filled from the environment
    except ValidationError as exc:
        lines = []
        for err in exc.errors(include_url=False):
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"  KT_{field.upper()}: {err['msg']}")
        raise SettingsError("invalid worker configuration:\n" + "\n".join(lines)) from None
