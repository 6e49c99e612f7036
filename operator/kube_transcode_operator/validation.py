"""Rules beyond the schema: which sources and output locations a namespace may use, and, once
the job is merged over its template, a chunk length of whole segments and video codecs that its
segment format carries.

The output rule: in the default bucket a namespace writes only under `<namespace>/` (the
prefix defaults to `<namespace>/<name>`); another bucket must list the namespace (a glob) in
KT_OUTPUT_BUCKETS, and then any prefix in it is the namespace's.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from urllib.parse import urlsplit

from kube_transcode.chunks import ChunkingOptions, chunk_length
from kube_transcode.codecs import check_codecs_fit
from kube_transcode.ladder import HlsOptions, VideoOptions
from kube_transcode.messages import OutputLocation
from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.settings import OperatorSettings


class JobRejectedError(Exception):
    """The spec passed the schema but may not run; reason is one PascalCase word."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def output_location(
    spec: TranscodeJobSpec, namespace: str, name: str, settings: OperatorSettings
) -> OutputLocation:
    """The bucket and prefix with the operator's defaults filled in."""
    return OutputLocation(
        bucket=spec.output.bucket or settings.default_bucket,
        prefix=spec.output.prefix or f"{namespace}/{name}",
    )


def check_output_allowed(
    location: OutputLocation, namespace: str, settings: OperatorSettings
) -> None:
    if location.bucket == settings.default_bucket:
        if not location.prefix.startswith(f"{namespace}/"):
            raise JobRejectedError(
                "OutputNotAllowed",
                f"in the default bucket {location.bucket!r} a job in namespace {namespace!r} "
                f"may only write under {namespace + '/'!r}, not {location.prefix!r}",
            )
        return
    patterns = settings.output_buckets.get(location.bucket, [])
    if not any(fnmatchcase(namespace, pattern) for pattern in patterns):
        raise JobRejectedError(
            "OutputNotAllowed",
            f"namespace {namespace!r} may not write to bucket {location.bucket!r}; "
            f"use the default bucket {settings.default_bucket!r} or ask an operator "
            "administrator to allow it (KT_OUTPUT_BUCKETS)",
        )


def check_source_allowed(url: str, settings: OperatorSettings) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in settings.allowed_source_schemes:
        allowed = ", ".join(f"{s}://" for s in settings.allowed_source_schemes)
        raise JobRejectedError(
            "SourceNotAllowed",
            f"source scheme {scheme}:// is not allowed by this operator (allowed: {allowed})",
        )


def chunking_options(spec: TranscodeJobSpec, template: str | None = None) -> ChunkingOptions:
    """The job's chunking, refused when its chunk length is not whole segments: the API server
    checks that only when the job alone sets both (a template may set either)."""
    options = ChunkingOptions(mode=spec.chunking.mode, chunk_seconds=spec.chunking.chunk_seconds)
    try:
        chunk_length(options, spec.hls.segment_seconds)
    except ValueError as error:
        origin = f" (with TranscodeTemplate {template})" if template else ""
        raise JobRejectedError(
            "InvalidSpec",
            f"chunking.chunkSeconds must be a whole number of hls.segmentSeconds "
            f"({spec.hls.segment_seconds}){origin}: {error}",
        ) from error
    return options


def video_and_hls_options(
    spec: TranscodeJobSpec, template: str | None = None
) -> tuple[VideoOptions, HlsOptions]:
    """The job's codecs and HLS options, refused when a codec does not fit the segment format:
    the API server checks that only when the job does not leave the format to a template."""
    try:
        check_codecs_fit(spec.video.codecs, spec.hls.segment_format)
    except ValueError as error:
        origin = f" (with TranscodeTemplate {template})" if template else ""
        raise JobRejectedError("InvalidSpec", f"{error}{origin}") from error
    video = VideoOptions(codecs=spec.video.codecs)
    hls = HlsOptions(
        segment_seconds=spec.hls.segment_seconds, segment_format=spec.hls.segment_format
    )
    return video, hls
