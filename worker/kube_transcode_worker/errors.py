"""Job failures the worker reports: permanent ones fail the job, transient ones are retried.

`reason` is a one-word PascalCase value that ends up in the TranscodeJob's condition, so the
set of reasons is part of the user-facing contract; `message` is for humans.
"""

from __future__ import annotations

from collections.abc import Mapping


class JobError(Exception):
    """A failure with a machine-readable reason and a human message."""

    def __init__(self, reason: str, message: str) -> None:
        if not reason or not reason[0].isupper() or not reason.isalnum():
            raise ValueError(f"reason must be one PascalCase word, got {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message

    def in_user_terms(self, names: Mapping[str, str]) -> JobError:
        """The same failure with local paths replaced by what the user knows them as.

        FFmpeg and ffprobe name the files they were given, which are a worker's scratch
        files; a user gave a URL. Longer paths go first, so a folder never splits a file.
        """
        message = self.message
        for local in sorted(names, key=len, reverse=True):
            message = message.replace(f"file:{local}", local).replace(local, names[local])
        self.message = message
        self.args = (f"{self.reason}: {message}",)
        return self


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
