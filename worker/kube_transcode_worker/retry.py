"""What happens to a delivery once its job has ended: the one decision, and the backoff.

`decide` is the worker's single ack/nack decision point. It is pure: every way a delivery
ends is an Outcome, `decide` maps it to a Settlement, and the settler (settler.py) carries
that out; nothing else settles a delivery.

- succeeded                      -> Ack
- cancelled by the operator      -> Discard (ack, `failed` event with reason Cancelled)
- stopped by a worker shutdown   -> Requeue (same attempt: a preempted node is not a failure)
- arrived while the worker stops -> Requeue (never started)
- transient error, attempts left -> Retry after full-jitter exponential backoff, attempt + 1
- transient error, none left     -> DeadLetter with the error's reason
- permanent error                -> DeadLetter at once
- unreadable body (Invalid)      -> DeadLetter InvalidMessage at once, by the never_retry rule
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from typing import Final

from kube_transcode.messages import CANCELLED_REASON
from kube_transcode_worker.errors import JobError, PermanentJobError

INVALID_MESSAGE: Final = "InvalidMessage"
INTERNAL_ERROR: Final = "InternalError"
_JITTER: Final = random.Random()  # noqa: S311 - spreads retries; not a secret


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_seconds: float = 15.0
    max_seconds: float = 900.0
    # Reasons that a retry cannot fix even though the error was raised as transient.
    never_retry: frozenset[str] = field(default_factory=lambda: frozenset({INVALID_MESSAGE}))

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.base_seconds <= 0 or self.max_seconds < self.base_seconds:
            raise ValueError(f"inconsistent retry policy: {self}")
        if INVALID_MESSAGE not in self.never_retry:  # an unreadable body has no next attempt
            raise ValueError(f"inconsistent retry policy: {INVALID_MESSAGE} must never retry")

    def cap_seconds(self, attempt: int) -> float:
        """Upper bound of the wait after the given (failed) attempt: base * 2^(attempt-1)."""
        return min(self.max_seconds, self.base_seconds * 2.0 ** max(0, attempt - 1))

    def backoff_seconds(self, attempt: int, rng: random.Random | None = None) -> float:
        """Full jitter (uniform in [0, cap]) so retries of a failed batch spread out."""
        return (rng or _JITTER).uniform(0, self.cap_seconds(attempt))

    def with_backoff(self, base_seconds: float | None, max_seconds: float | None) -> RetryPolicy:
        """A job's own backoff (None: ours), never beyond our maximum wait."""
        longest = min(self.max_seconds, max_seconds or self.max_seconds)
        return replace(
            self, base_seconds=min(base_seconds or self.base_seconds, longest), max_seconds=longest
        )

    def retryable(self, error: JobError) -> bool:
        return not isinstance(error, PermanentJobError) and error.reason not in self.never_retry


@dataclass(frozen=True)
class Ack:
    pass


@dataclass(frozen=True)
class Requeue:
    reason: str = "WorkerShutdown"


@dataclass(frozen=True)
class Retry:
    next_attempt: int
    delay_seconds: float
    reason: str
    message: str


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    message: str


@dataclass(frozen=True)
class Discard:
    """Let go of the delivery for good: nobody wants its result any more."""

    reason: str
    message: str


Settlement = Ack | Requeue | Retry | DeadLetter | Discard


@dataclass(frozen=True)
class Succeeded:
    pass


@dataclass(frozen=True)
class Interrupted:
    """The worker is shutting down; the job did not fail."""


@dataclass(frozen=True)
class NotStarted:
    """The delivery arrived after the worker began to stop; it was never read or run."""


@dataclass(frozen=True)
class Cancelled:
    """The operator cancelled the job (deleted, superseded, past its deadline)."""

    message: str


@dataclass(frozen=True)
class Failed:
    error: JobError


@dataclass(frozen=True)
class Invalid:
    """The body is not a job message this worker can read: no attempt of it can succeed."""

    problem: str

    @property
    def error(self) -> JobError:
        """Neither permanent nor transient: the policy's never_retry rule is what stops it."""
        return JobError(INVALID_MESSAGE, self.problem)


Outcome = Succeeded | Interrupted | NotStarted | Cancelled | Failed | Invalid


def decide(
    outcome: Outcome,
    attempt: int,
    policy: RetryPolicy,
    max_attempts: int | None = None,
    rng: random.Random | None = None,
) -> Settlement:
    """The settlement for a job that ended with `outcome` on its `attempt`-th try.

    `max_attempts` is the job's own limit; it can lower the policy's, never raise it. For a
    body that was never read as a job (NotStarted, Invalid) pass attempt 1.
    """
    if isinstance(outcome, Succeeded):
        return Ack()
    if isinstance(outcome, Interrupted | NotStarted):
        return Requeue()
    if isinstance(outcome, Cancelled):
        return Discard(CANCELLED_REASON, outcome.message)
    error = outcome.error
    limit = min(policy.max_attempts, max_attempts or policy.max_attempts)
    if not policy.retryable(error):
        return DeadLetter(error.reason, error.message)
    if attempt >= limit:
        return DeadLetter(
            error.reason, f"{error.message} (gave up after {attempt} of {limit} attempts)"
        )
    return Retry(attempt + 1, policy.backoff_seconds(attempt, rng), error.reason, error.message)
