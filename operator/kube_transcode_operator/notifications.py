"""Telling a receiver that a job ended: who is told, the CloudEvent, its signature, the retry
decision, and the Notified condition. Pure; the delivery itself is webhook.py.

A receiver verifies an event by computing HMAC-SHA256 with its shared secret over the exact
request body and comparing `sha256=<hex>` with the SIGNATURE_HEADER in constant time. Delivery
is at least once: a receiver de-duplicates on the event's `id`, which is the same for every
delivery of one outcome of one generation of one job.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Final
from urllib.parse import urlsplit

from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent

from kube_transcode.names import GROUP, JOB_PLURAL, VERSION
from kube_transcode_operator.conditions import Condition, find_condition, set_condition
from kube_transcode_operator.status import TERMINAL_PHASES

SIGNATURE_HEADER: Final = "X-KubeTranscode-Signature"
EVENT_TYPE_PREFIX: Final = "io.kubetranscode.job."
# 4xx worth retrying: the receiver asks us to come back.
RETRYABLE_CLIENT_STATUSES: Final = frozenset({408, 429})


class Outcome(Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class Receiver:
    url: str
    secret_namespace: str
    secret_name: str
    secret_key: str

    @property
    def shown(self) -> str:
        """The URL without its query, which may hold a token: for conditions and logs."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}{parts.path}"


@dataclass(frozen=True)
class DefaultReceiver:
    """The cluster's receiver of every job's events (a Secret in the operator's namespace)."""

    url: str
    secret_namespace: str
    secret_name: str
    secret_key: str


def receivers(
    spec: Mapping[str, Any], namespace: str, default: DefaultReceiver | None
) -> list[Receiver]:
    """The job's own webhook, then the cluster default."""
    found: list[Receiver] = []
    webhook = (spec.get("notify") or {}).get("webhook")
    if webhook and webhook.get("url"):
        ref = webhook.get("secretRef") or {}
        found.append(Receiver(webhook["url"], namespace, str(ref["name"]), str(ref["key"])))
    if default is not None:
        found.append(
            Receiver(default.url, default.secret_namespace, default.secret_name, default.secret_key)
        )
    return found


def outcome_of(status: Mapping[str, Any]) -> Outcome:
    """Succeeded or Failed from a finished job's phase; a job deleted before that: Cancelled."""
    phase = status.get("phase")
    if phase == "Succeeded":
        return Outcome.SUCCEEDED
    if phase == "Failed":
        return Outcome.FAILED
    return Outcome.CANCELLED


def is_notified(status: Mapping[str, Any], generation: int) -> bool:
    """The Notified condition is final (True or False) for this generation."""
    notified = find_condition(status.get("conditions") or [], "Notified")
    return (
        notified is not None
        and notified.get("status") in ("True", "False")
        and notified.get("observedGeneration") == generation
    )


def is_due(status: Mapping[str, Any], generation: int) -> bool:
    """Finished, for this generation, and nobody told yet (also after an operator restart)."""
    return (
        status.get("phase") in TERMINAL_PHASES
        and status.get("observedGeneration") == generation
        and not is_notified(status, generation)
    )


def event_id(uid: str, generation: int, outcome: Outcome) -> str:
    """Stable across deliveries and operator restarts: what a receiver de-duplicates on."""
    return f"{uid}.{generation}.{outcome.value}"


def source_of(namespace: str, name: str) -> str:
    return f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{JOB_PLURAL}/{name}"


def event_data(status: Mapping[str, Any], outcome: Outcome, message: str | None) -> dict[str, Any]:
    if outcome is Outcome.SUCCEEDED:
        outputs = status.get("outputs") or {}
        return {
            "phase": "Succeeded",
            "masterPlaylist": outputs.get("masterPlaylist"),
            "masterPlaylistUrl": outputs.get("masterPlaylistUrl"),
            "renditions": list(outputs.get("renditions") or []),
        }
    if outcome is Outcome.FAILED:
        failed = find_condition(status.get("conditions") or [], "Failed") or {}
        return {
            "phase": "Failed",
            "reason": failed.get("reason") or "Failed",
            "message": failed.get("message") or status.get("message") or "",
        }
    return {"phase": "Cancelled", "reason": "Deleted", "message": message or "the job was deleted"}


def build_event(
    body: Mapping[str, Any], outcome: Outcome, now: datetime, message: str | None = None
) -> CloudEvent:
    meta, status = body["metadata"], body.get("status") or {}
    generation = int(meta["generation"])
    return CloudEvent(
        attributes={
            "type": EVENT_TYPE_PREFIX + outcome.value,
            "source": source_of(meta["namespace"], meta["name"]),
            "id": event_id(str(meta["uid"]), generation, outcome),
            "subject": meta["name"],
            "time": now,
            "datacontenttype": "application/json",
        },
        data={"generation": generation, **event_data(status, outcome, message)},
    )


def signature(secret: bytes, body: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does (in any language): recompute, compare in constant time."""
    return hmac.compare_digest(signature(secret, body), header)


def request_of(event: CloudEvent, secret: bytes) -> tuple[dict[str, str], bytes]:
    """Structured mode: the whole event as the JSON body; the headers, signature included."""
    message = to_structured_event(event)
    headers = {
        "Content-Type": message.headers["content-type"],
        SIGNATURE_HEADER: signature(secret, message.body),
    }
    return headers, message.body


def is_retryable_status(status: int) -> bool:
    """5xx, 408 and 429 are tried again; any other answer settles the delivery."""
    return status >= 500 or status in RETRYABLE_CLIENT_STATUSES


@dataclass(frozen=True)
class Delivery:
    """How one receiver's delivery ended."""

    receiver: Receiver
    delivered: bool
    attempts: int
    reason: str  # Delivered, GaveUp, Rejected, Refused, NoSecret
    error: str = ""

    @property
    def summary(self) -> str:
        tries = f"{self.attempts} attempt{'s' if self.attempts != 1 else ''}"
        if self.delivered:
            return f"delivered to {self.receiver.shown} in {tries}"
        if self.attempts == 0:
            return f"not sent to {self.receiver.shown}: {self.error}"
        return f"not delivered to {self.receiver.shown} after {tries}: {self.error}"


def pending(status: Mapping[str, Any], *, generation: int, now: datetime) -> list[Condition]:
    return set_condition(
        status.get("conditions") or [], "Notified", "Unknown", "Pending",
        "delivering the job's outcome", generation=generation, now=now,
    )  # fmt: skip


def notified(
    status: Mapping[str, Any], deliveries: Sequence[Delivery], *, generation: int, now: datetime
) -> list[Condition]:
    """True when every receiver got it; otherwise False with the first failure's reason."""
    failed = [d for d in deliveries if not d.delivered]
    reason = failed[0].reason if failed else "Delivered"
    message = "; ".join(d.summary for d in deliveries)
    return set_condition(
        status.get("conditions") or [], "Notified", "False" if failed else "True", reason,
        message, generation=generation, now=now,
    )  # fmt: skip
