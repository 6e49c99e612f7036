"""What the handlers share, built once at startup and kept in kopf's memo."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kube_transcode_operator.cleanup import OutputStore
from kube_transcode_operator.event_consumer import EventConsumer
from kube_transcode_operator.jobstore import JobStore
from kube_transcode_operator.kube_events import EventPoster
from kube_transcode_operator.publisher import Publisher
from kube_transcode_operator.settings import OperatorSettings

MEMO_KEY = "runtime"


@dataclass
class Runtime:
    settings: OperatorSettings
    publisher: Publisher
    outputs: OutputStore
    jobs: JobStore
    consumer: EventConsumer
    events: EventPoster


def runtime_of(memo: Mapping[str, Any]) -> Runtime:
    runtime = memo[MEMO_KEY]
    assert isinstance(runtime, Runtime)
    return runtime
