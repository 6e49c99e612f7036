"""A delivery the worker holds, and the properties its republished copies carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import pika

from kube_transcode.messages import CONTENT_TYPE

HOLD_TOKEN_HEADER: Final = "x-kt-hold-token"  # noqa: S105 - a header name
PERSISTENT: Final = pika.DeliveryMode.Persistent


@dataclass
class Delivery:
    tag: int
    body: bytes
    properties: pika.BasicProperties
    held: bool = False  # a copy taken from this worker's hold queue


def copied_properties(base: pika.BasicProperties, **changes: Any) -> pika.BasicProperties:
    """A copy of a message's properties, persistent, with headers merged in (no hold token)."""
    headers = {k: v for k, v in (base.headers or {}).items() if k != HOLD_TOKEN_HEADER}
    headers.update(changes.pop("headers", {}))
    fields = {
        "content_type": base.content_type or CONTENT_TYPE,
        "priority": base.priority,
        "message_id": base.message_id,
        "correlation_id": base.correlation_id,
        "timestamp": base.timestamp,
        "type": base.type,
        "app_id": base.app_id,
        "delivery_mode": PERSISTENT,
        "headers": headers,
    }
    fields.update(changes)
    return pika.BasicProperties(**fields)
