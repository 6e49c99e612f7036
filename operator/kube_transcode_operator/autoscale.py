"""The autoscaler's decision, level-based and pure: what the queue and the workers look like
now, in; how many workers the pool should have now, out.

- demand = ceil((ready + unacknowledged) / jobsPerReplica), clamped to [min, max];
- more than we have: scale up at once;
- less: only once demand has not changed for scaleDownCooldownSeconds, and never below the
  number of busy workers (which of them goes is the pod-deletion-cost's business);
- above maxReplicas (the spec changed): down to max at once, busy workers still kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from kube_transcode_operator.pools import PoolSpec

# One PascalCase word each, for status.lastScaleReason and Events.
SCALE_UP: Final = "ScaleUp"
SCALE_DOWN: Final = "ScaleDown"
SCALE_TO_ZERO: Final = "ScaleToZero"
ABOVE_MAX: Final = "AboveMax"
COOLDOWN: Final = "CooldownPending"
BUSY_FLOOR: Final = "WorkersBusy"
STEADY: Final = "Steady"


@dataclass(frozen=True)
class QueueDepth:
    ready: int
    unacknowledged: int

    @property
    def total(self) -> int:
        return self.ready + self.unacknowledged


@dataclass(frozen=True)
class Decision:
    replicas: int
    reason: str
    message: str

    def changes(self, current: int) -> bool:
        return self.replicas != current


def demand_replicas(depth: QueueDepth, spec: PoolSpec) -> int:
    """Workers the jobs in the queue ask for, within the pool's bounds."""
    wanted = math.ceil(max(0, depth.total) / spec.jobs_per_replica)
    return min(spec.max_replicas, max(spec.min_replicas, wanted))


def demand_since(
    previous_demand: int | None, previous_since: datetime | None, demand: int, now: datetime
) -> datetime:
    """When demand last changed: the scale-down cooldown counts from there."""
    if previous_demand != demand or previous_since is None:
        return now
    return previous_since


def decide_replicas(
    depth: QueueDepth,
    busy: int,
    current: int,
    spec: PoolSpec,
    last_change: datetime,
    now: datetime,
) -> Decision:
    demand = demand_replicas(depth, spec)
    jobs = f"{depth.ready} waiting, {depth.unacknowledged} running"
    if demand > current:
        return Decision(demand, SCALE_UP, f"{jobs}: {demand} workers wanted, had {current}")
    if demand == current:
        return Decision(current, STEADY, f"{jobs}: {current} workers")
    floor = max(demand, min(busy, current))
    if floor >= current:
        return Decision(current, BUSY_FLOOR, f"{jobs}: {busy} of {current} workers busy")
    if current > spec.max_replicas:
        return Decision(floor, ABOVE_MAX, f"maxReplicas is {spec.max_replicas}, had {current}")
    waited = (now - last_change).total_seconds()
    cooldown = spec.scale_down_cooldown_seconds
    if waited < cooldown:
        return Decision(
            current,
            COOLDOWN,
            f"{jobs}: {demand} workers wanted for {waited:.0f}s of {cooldown}s before shrinking",
        )
    reason = SCALE_TO_ZERO if floor == 0 else SCALE_DOWN
    return Decision(floor, reason, f"{jobs} for {waited:.0f}s: {floor} workers, had {current}")
