"""Kubernetes-style conditions, kept pure: the list in, the new list out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

ConditionType = Literal[
    "Queued",
    "Running",
    "Succeeded",
    "Failed",
    "Available",
    "Schedulable",
    "QueueReachable",
    "Notified",
]
ConditionStatus = Literal["True", "False", "Unknown"]
Condition = dict[str, Any]


def timestamp(at: datetime) -> str:
    """RFC 3339 in UTC with a Z, to the second, as Kubernetes writes its own times."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def set_condition(
    conditions: Iterable[Mapping[str, Any]],
    type_: ConditionType,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int,
    now: datetime,
) -> list[Condition]:
    """Set one condition; lastTransitionTime moves only when its status changes."""
    result: list[Condition] = []
    found = False
    for existing in conditions:
        condition = dict(existing)
        if condition.get("type") == type_:
            found = True
            changed = condition.get("status") != status
            condition.update(
                status=status, reason=reason, message=message, observedGeneration=generation
            )
            if changed or "lastTransitionTime" not in condition:
                condition["lastTransitionTime"] = timestamp(now)
        result.append(condition)
    if not found:
        result.append(
            {
                "type": type_,
                "status": status,
                "reason": reason,
                "message": message,
                "observedGeneration": generation,
                "lastTransitionTime": timestamp(now),
            }
        )
    return result


def find_condition(
    conditions: Iterable[Mapping[str, Any]], type_: ConditionType
) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]], type_: ConditionType) -> bool:
    condition = find_condition(conditions, type_)
    return condition is not None and condition.get("status") == "True"
