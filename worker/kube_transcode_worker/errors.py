"""Job failures the worker reports: permanent ones fail the job, transient ones are retried.

`reason` is a one-word PascalCase value that ends up in the TranscodeJob's condition, so the
set of reasons is part of the user-facing contract; `message` is for humans.
"""

from __future__ import annotations


class JobError(Exception):
    """A failure with a machine-readable reason and a human message."""

    def __init__(self, reason: str, message: str) -> None:
        if not reason or not reason[0].isupper() or not reason.isalnum():
            raise ValueError(f"reason must be one PascalCase word, got {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class PermanentJobError(JobError):
    """Retrying cannot help (bad source, limits exceeded, encoder rejects the input)."""


class TransientJobError(JobError):
    """Retrying may help (node preempted, disk full, process killed)."""


class JobCancelledError(TransientJobError):
    """The encode was stopped on request; the job goes back to the queue unless it was deleted."""

    def __init__(self, message: str = "encode cancelled") -> None:
        super().__init__("Cancelled", message)


class CancelRequestedError(JobError):
    """The operator cancelled the job (its cancel marker is in the bucket): drop the work."""

    def __init__(self, message: str) -> None:
        super().__init__("Cancelled", message)
