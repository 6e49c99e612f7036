"""`kube-transcode` (and `kubectl transcode`, the same program as a kubectl plugin).

    kube-transcode submit SOURCE [--wait] [--name NAME] [--priority P] [--pool POOL]
                                 [--template NAME] [--rungs 360p,720p] [--limit-rate 2M]
    kube-transcode watch NAME
    kube-transcode transcode SOURCE DEST ...    (the worker's pipeline on this machine)

`submit` uploads a local SOURCE to the sources bucket (KT_SOURCES_BUCKET, default `sources`;
S3 from KT_S3_*, as `transcode` reads it), creates the TranscodeJob with the user's kubeconfig
and prints its name; `--wait` and `watch` follow the job to its end and print the master
playlist's URL. stdout carries only those; progress and errors go to stderr.

Exit codes: 0 done; 1 the job failed (its reason on stderr); 2 bad input (usage, a missing
file, kubeconfig or permission problems, a job refused by the API server or not found);
3 the job was deleted while watched; 75 temporary (the API server or S3 unreachable or
failing: a retry may succeed, and an upload resumes where it stopped); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from kubernetes.client.exceptions import ApiException
from kubernetes.config import ConfigException
from urllib3.exceptions import HTTPError

from kube_transcode_client.follow import JobDeletedError, JobNotFoundError, JobState, follow
from kube_transcode_client.kubeconfig import Cluster, check_access, connect
from kube_transcode_client.submit import build_job, create_job, job_name
from kube_transcode_client.upload import SourceUploader, SubmitSettings, UploadResult
from kube_transcode_worker import cli as worker_cli
from kube_transcode_worker.settings import SettingsError, load_settings
from kube_transcode_worker.terminal import ProgressReporter, format_bytes
from kube_transcode_worker.wiring import has_s3_credentials, s3_client

PROG = "kube-transcode"
EXIT_OK = worker_cli.EXIT_OK
EXIT_JOB_FAILED = 1
EXIT_BAD_INPUT = worker_cli.EXIT_BAD_INPUT
EXIT_JOB_DELETED = 3
EXIT_TEMPORARY = worker_cli.EXIT_TEMPORARY
EXIT_INTERRUPTED = worker_cli.EXIT_INTERRUPTED
REMOTE_SCHEMES = ("s3://", "https://")
RATE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
S3_CONFIG_ERRORS = frozenset(
    {"AccessDenied", "NoSuchBucket", "InvalidAccessKeyId", "SignatureDoesNotMatch"}
)


class BadInputError(Exception):
    """Refused before anything was sent anywhere."""


# --- arguments ----------------------------------------------------------------------------


def parse_rate(text: str) -> float:
    """'2M' -> 2 MiB/s; K, M, G are binary, a bare number is bytes per second."""
    number, unit = text.strip().upper().rstrip("B"), ""
    if number[-1:] in RATE_UNITS:
        number, unit = number[:-1], number[-1]
    try:
        rate = float(number) * RATE_UNITS[unit]
    except ValueError:
        raise argparse.ArgumentTypeError(f"a rate like 500K or 2M, got {text!r}") from None
    if rate <= 0:
        raise argparse.ArgumentTypeError(f"the rate must be above zero, got {text!r}")
    return rate


def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "-n", "--namespace", help="namespace (default: the context's, else default)"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress, only errors")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Submit videos to kube-transcode and follow them, or transcode one here.",
        epilog="Exit codes: 0 done, 1 job failed, 2 bad input, 3 job deleted while watched, "
        "75 temporary failure (retry may help), 130 interrupted.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    submit = commands.add_parser(
        "submit",
        help="upload SOURCE if it is a local file, create a TranscodeJob, print its name",
        description="Create a TranscodeJob for SOURCE. A local file is uploaded first to the "
        "sources bucket (KT_SOURCES_BUCKET, default sources) under a key derived from its "
        "content; an interrupted upload resumes, a file already there is not sent again.",
    )
    submit.add_argument("source", metavar="SOURCE", help="local file, s3:// or https:// URL")
    submit.add_argument("--name", help="the job's name (default: from SOURCE, random suffix)")
    submit.add_argument("--priority", choices=("low", "normal", "high"))
    submit.add_argument("--pool", help="the WorkerPool to run on (default: default)")
    submit.add_argument("--template", metavar="NAME", help="a TranscodeTemplate to start from")
    submit.add_argument(
        "--rungs",
        type=worker_cli.parse_rungs,
        metavar="NAMES",
        help="comma-separated named rungs, e.g. 360p,720p (default: the template's or standard)",
    )
    submit.add_argument(
        "--limit-rate", type=parse_rate, metavar="RATE", help="upload at most RATE/s (500K, 2M)"
    )
    submit.add_argument(
        "--wait", action="store_true", help="follow the job and print the playlist's URL"
    )
    add_cluster_options(submit)
    follow_ = commands.add_parser(
        "watch", help="follow a TranscodeJob to its end, print the playlist's URL"
    )
    follow_.add_argument("name", metavar="NAME")
    add_cluster_options(follow_)
    worker_cli.add_transcode_parser(commands)
    return parser


# --- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "transcode":
        return worker_cli.transcode_main(args)
    progress = ProgressReporter.for_stream(sys.stderr, enabled=not args.quiet)
    cancel = threading.Event()
    try:
        with worker_cli.cancel_on_interrupt(cancel):
            if args.command == "submit":
                return run_submit(args, progress, sys.stdout, sys.stderr)
            return run_watch(args, progress, sys.stdout, sys.stderr)
    except (Exception, KeyboardInterrupt) as error:
        progress.close()
        code, message = describe_failure(error)
        print(f"{PROG}: {message}", file=sys.stderr)
        return code


def run_submit(
    args: argparse.Namespace, progress: ProgressReporter, stdout: TextIO, stderr: TextIO
) -> int:
    source = args.source
    local = None if "://" in source else Path(source)
    if local is None and not source.startswith(REMOTE_SCHEMES):
        raise BadInputError(f"SOURCE must be a local file, s3:// or https://, got {source}")
    if local is not None and not local.is_file():
        raise BadInputError(f"{source}: no such file")
    # The cluster first: a wrong kubeconfig is found before a large upload, not after.
    cluster = connect(args.kubeconfig, args.context, args.namespace)
    check_access(cluster)
    if local is not None:
        try:
            uploaded = upload_source(local, progress, args.limit_rate)
        except KeyboardInterrupt:
            progress.close()
            print(f"{PROG}: the same command resumes the upload", file=stderr)
            raise
        progress.close()
        if progress.enabled:
            print(describe_upload(uploaded), file=stderr)
        source = uploaded.url
    name = args.name or job_name(args.source)
    manifest = build_job(
        name,
        source,
        priority=args.priority,
        pool=args.pool,
        template=args.template,
        rungs=[rung.name for rung in args.rungs] if args.rungs else None,
    )
    created = create_job(cluster.jobs, cluster.namespace, manifest)
    print(name, file=stdout, flush=True)
    if not args.wait:
        return EXIT_OK
    return finish(cluster, name, progress, stdout, stderr, created)


def run_watch(
    args: argparse.Namespace, progress: ProgressReporter, stdout: TextIO, stderr: TextIO
) -> int:
    cluster = connect(args.kubeconfig, args.context, args.namespace)
    return finish(cluster, args.name, progress, stdout, stderr, None)


def finish(
    cluster: Cluster,
    name: str,
    progress: ProgressReporter,
    stdout: TextIO,
    stderr: TextIO,
    job: dict[str, object] | None,
) -> int:
    try:
        state = follow(cluster.jobs, cluster.namespace, name, progress, job)
    except KeyboardInterrupt:
        progress.close()
        print(f"{PROG}: {name} goes on; follow it with: {PROG} watch {name}", file=stderr)
        raise
    return report(state, stdout, stderr)


def report(state: JobState, stdout: TextIO, stderr: TextIO) -> int:
    """Pure but for printing: the URL on stdout for a success, `Reason: message` otherwise."""
    if state.succeeded:
        print(state.playlist or "", file=stdout, flush=True)
        return EXIT_OK
    print(f"{state.reason}: {state.message}", file=stderr)
    return EXIT_JOB_FAILED


def upload_source(path: Path, progress: ProgressReporter, limit_rate: float | None) -> UploadResult:
    try:
        settings = load_settings(SubmitSettings)
    except SettingsError as error:
        raise BadInputError(f"invalid settings in the environment: {error}") from None
    if not has_s3_credentials(settings):
        raise BadInputError(
            "no S3 credentials: set KT_S3_ACCESS_KEY_ID and KT_S3_SECRET_ACCESS_KEY"
        )
    uploader = SourceUploader(
        s3_client(settings), settings.sources_bucket, progress, limit_rate=limit_rate
    )
    return uploader.upload(path)


def describe_upload(result: UploadResult) -> str:
    if result.already_there:
        return f"already uploaded: {result.url} ({format_bytes(result.size)}), nothing sent"
    kept = f", {result.kept_parts} part(s) kept from an interrupted upload" * bool(
        result.kept_parts
    )
    return (
        f"uploaded {result.url}: sent {format_bytes(result.sent_bytes)} in "
        f"{result.sent_parts} part(s){kept}"
    )


def describe_failure(error: BaseException) -> tuple[int, str]:
    """Pure: the exit code and the one line a user sees for what stopped the command."""
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "interrupted"
    if isinstance(error, BadInputError | JobNotFoundError | ConfigException):
        return EXIT_BAD_INPUT, str(error)
    if isinstance(error, JobDeletedError):
        return EXIT_JOB_DELETED, str(error)
    if isinstance(error, ApiException):
        return _api_failure(error)
    if isinstance(error, HTTPError):
        return EXIT_TEMPORARY, f"the Kubernetes API is unreachable: {error} (a retry may succeed)"
    if isinstance(error, NoCredentialsError):
        return EXIT_BAD_INPUT, f"S3: {error}"
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in S3_CONFIG_ERRORS or (400 <= status < 500 and status != 429):
            return EXIT_BAD_INPUT, f"S3: {error}"
        return EXIT_TEMPORARY, f"S3: {error} (a retry resumes the upload)"
    if isinstance(error, BotoCoreError):
        return EXIT_TEMPORARY, f"S3 is unreachable: {error} (a retry resumes the upload)"
    if isinstance(error, OSError):
        return EXIT_BAD_INPUT, str(error)
    return worker_cli.EXIT_FAILED, f"unexpected failure: {error!r}"


def _api_failure(error: ApiException) -> tuple[int, str]:
    message = error.reason or ""
    with contextlib.suppress(ValueError, AttributeError):  # not a Status object: keep reason
        message = json.loads(error.body or "{}").get("message") or message
    if error.status is None or error.status == 429 or error.status >= 500:
        return EXIT_TEMPORARY, f"the Kubernetes API: {message} (a retry may succeed)"
    return EXIT_BAD_INPUT, f"the Kubernetes API refused: {message}"


if __name__ == "__main__":
    raise SystemExit(main())
