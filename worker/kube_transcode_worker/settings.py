"""The worker's configuration: typed objects read from KT_-prefixed environment variables.

Three layers, so each user of the pipeline reads only what it needs:
- `StorageSettings`: S3 endpoint and credentials, uploads, and the guards on fetching sources;
- `PipelineSettings`: that plus the media limits and FFmpeg, all a one-shot transcode needs
  (the `kube-transcode` CLI reads this one: it talks to no broker);
- `WorkerSettings`: that plus the broker, retries and the pod, for `kube-transcode-worker`.

Read once at startup (`load_settings`); a missing or malformed value stops the program with a
message that names the variable. Lists (KT_ALLOWED_SOURCE_NETWORKS) are comma-separated.
POD_NAME and POD_IP (from the Downward API) are read without the prefix.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, TypeVar, overload

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kube_transcode.addresses import Network, networks_from_setting
from kube_transcode.ladder import DEFAULT_X264_PRESET, X264Preset
from kube_transcode.messages import DEFAULT_EVENTS_EXCHANGE, MAX_ATTEMPTS_LIMIT
from kube_transcode.settings_errors import describe_settings_error
from kube_transcode_worker.ffmpeg_build import default_ffmpeg
from kube_transcode_worker.probe import ProbeLimits

GIB = 1024**3


class SettingsError(Exception):
    """The environment does not describe a runnable program; the text names what to fix."""


class StorageSettings(BaseSettings):
    """Where sources come from and ladders go: S3, uploads, and the fetch guards."""

    model_config = SettingsConfigDict(env_prefix="KT_", extra="ignore", frozen=True)

    s3_endpoint_url: str | None = None
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_region: str = "us-east-1"
    upload_concurrency: int = Field(default=8, ge=1, le=64)
    upload_attempts: int = Field(default=5, ge=1, le=20)

    max_source_bytes: int = Field(default=20 * GIB, gt=0)
    allowed_source_networks: Annotated[tuple[Network, ...], NoDecode] = ()
    allow_http_sources: bool = False
    fetch_connect_timeout_seconds: float = Field(default=10, gt=0)
    fetch_read_timeout_seconds: float = Field(default=60, gt=0)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)

    @field_validator("allowed_source_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return networks_from_setting(value)


class PipelineSettings(StorageSettings):
    """Everything one transcode needs: storage, the media limits, FFmpeg and scratch space."""

    max_duration_seconds: float = Field(default=4 * 3600, gt=0)
    max_long_side: int = Field(default=7680, gt=0)
    max_short_side: int = Field(default=4320, gt=0)
    max_fps: float = Field(default=120, gt=0)
    ffmpeg_preset: X264Preset = DEFAULT_X264_PRESET
    ffmpeg_binary: str = Field(default_factory=default_ffmpeg)
    work_dir: Path = Path("/tmp/kube-transcode")  # noqa: S108 - an emptyDir in the pod

    @property
    def probe_limits(self) -> ProbeLimits:
        return ProbeLimits(
            max_duration_seconds=self.max_duration_seconds,
            max_long_side=self.max_long_side,
            max_short_side=self.max_short_side,
            max_fps=self.max_fps,
        )


class WorkerSettings(PipelineSettings):
    """The queue worker: the pipeline plus the broker, retries and the pod it runs in."""

    # Broker
    rabbitmq_url: SecretStr = Field(description="amqp(s)://user:password@host:port/vhost")
    queue: str = Field(default="transcode", pattern=r"^[A-Za-z0-9_.:-]{1,200}$")
    events_exchange: str = Field(default=DEFAULT_EVENTS_EXCHANGE, min_length=1)
    heartbeat_seconds: int = Field(default=30, ge=5, le=600)
    # Below the broker's consumer_timeout (30 min by default): see renewal.py.
    delivery_renew_seconds: float = Field(default=600, gt=0)
    hold_ttl_seconds: float = Field(default=60, ge=1)

    # Retries (a job's own retry policy may lower max attempts)
    retry_max_attempts: int = Field(default=3, ge=1, le=MAX_ATTEMPTS_LIMIT)
    retry_base_seconds: float = Field(default=15, gt=0)
    retry_max_seconds: float = Field(default=900, gt=0)

    # The pod
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

    @property
    def worker_dir(self) -> Path:
        """This worker's own scratch space under work_dir (cleared at startup)."""
        return self.work_dir / self.pod_name


S = TypeVar("S", bound=StorageSettings)


@overload
def load_settings() -> WorkerSettings: ...


@overload
def load_settings(kind: type[S]) -> S: ...


def load_settings(kind: type[StorageSettings] = WorkerSettings) -> StorageSettings:
    """Settings of `kind` from the environment, or SettingsError listing every bad variable."""
    try:
        return kind()
    except ValidationError as exc:
        problems = describe_settings_error(exc)
        raise SettingsError(f"invalid configuration:\n{problems}") from None
