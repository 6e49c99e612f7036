"""`kube-transcode`: the worker's pipeline from a terminal, without a cluster or a queue.

    kube-transcode transcode SOURCE DEST [--rungs 360p,720p] [--segment-seconds 6]
                                         [--preset veryfast] [--overwrite] [--quiet]

SOURCE is a local file or an s3:// or https:// URL; DEST a local folder or s3://bucket/prefix.
The ladder is made the way a worker makes it (probe, plan, one FFmpeg run, master playlist
last; the worker's own fetch and upload for remote ends), so what a user tries here is what
the cluster produces. S3 is reached with the worker's settings (KT_S3_ENDPOINT_URL,
KT_S3_ACCESS_KEY_ID, KT_S3_SECRET_ACCESS_KEY, KT_S3_REGION).

Exit codes: 0 done; 2 bad input (usage, or a source or destination the job would fail on in
the cluster too); 75 a failure that may pass on a retry (EX_TEMPFAIL: storage unreachable,
encoder killed); 130 interrupted; 1 anything else.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO, get_args

from pydantic import ValidationError

from kube_transcode.ladder import (
    DEFAULT_X264_PRESET,
    NAMED_RUNGS,
    HlsOptions,
    Rung,
    X264Preset,
    rung_by_name,
)
from kube_transcode.names import MASTER_PLAYLIST_NAME
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError, TransientJobError
from kube_transcode_worker.oneshot import BadRequestError, TranscodeRequest, transcode
from kube_transcode_worker.terminal import ProgressReporter

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TEMPORARY = 75
EXIT_INTERRUPTED = 130
PROG = "kube-transcode"


# --- arguments ----------------------------------------------------------------------------


def parse_rungs(text: str) -> list[Rung]:
    """'360p,720p' as rungs; on error argparse prints the message, which lists the names."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one rung, e.g. 360p,720p")
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise argparse.ArgumentTypeError(f"rung named more than once: {', '.join(duplicates)}")
    try:
        return [rung_by_name(name) for name in names]
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_segment_seconds(text: str) -> HlsOptions:
    """Checked by the same model a TranscodeJob's HLS options go through."""
    try:
        return HlsOptions(segment_seconds=int(text))
    except ValueError as error:
        why = error.errors()[0]["msg"] if isinstance(error, ValidationError) else "not a number"
        raise argparse.ArgumentTypeError(
            f"segment length must be whole seconds: {why}, got {text!r}"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Turn a video into an HLS adaptive-bitrate ladder, as a worker would.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_transcode_parser(commands)
    return parser


def add_transcode_parser(commands: argparse._SubParsersAction[Any]) -> argparse.ArgumentParser:
    """The `transcode` command; the client's `kube-transcode` adds it beside its own."""
    transcode: argparse.ArgumentParser = commands.add_parser(
        "transcode",
        help="transcode SOURCE into an HLS ladder at DEST",
        description=(
            "Probe SOURCE, plan the ladder (never upscaling), encode every rendition in one "
            f"FFmpeg run and write HLS to DEST, {MASTER_PLAYLIST_NAME} last."
        ),
        epilog=(
            "S3 endpoint and keys come from KT_S3_ENDPOINT_URL, KT_S3_ACCESS_KEY_ID and "
            "KT_S3_SECRET_ACCESS_KEY. Exit codes: 0 done, 2 bad input, 75 temporary failure "
            "(retry may help), 130 interrupted, 1 other."
        ),
    )
    transcode.add_argument("source", metavar="SOURCE", help="local file, s3:// or https:// URL")
    transcode.add_argument("dest", metavar="DEST", help="local folder or s3://bucket/prefix")
    transcode.add_argument(
        "--rungs",
        type=parse_rungs,
        default=None,
        metavar="NAMES",
        help=f"comma-separated named rungs from {','.join(NAMED_RUNGS)} (default: all of "
        "them; rungs above the source are left out)",
    )
    transcode.add_argument(
        "--segment-seconds",
        dest="hls",
        type=parse_segment_seconds,
        default=HlsOptions(),
        metavar="SECONDS",
        help=f"HLS segment length (default {HlsOptions().segment_seconds})",
    )
    transcode.add_argument(
        "--preset",
        choices=get_args(X264Preset),
        default=DEFAULT_X264_PRESET,
        help=f"x264 preset (default {DEFAULT_X264_PRESET})",
    )
    transcode.add_argument(
        "--overwrite", action="store_true", help="replace a ladder already at DEST"
    )
    transcode.add_argument(
        "-q", "--quiet", action="store_true", help="no progress, only errors and the result"
    )
    return transcode


def request_from_args(args: argparse.Namespace) -> TranscodeRequest:
    return TranscodeRequest(
        source=args.source,
        dest=args.dest,
        rungs=args.rungs,
        hls=args.hls,
        preset=args.preset,
        overwrite=args.overwrite,
    )


# --- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    return transcode_main(build_parser().parse_args(argv))


def transcode_main(args: argparse.Namespace) -> int:
    """`transcode` with its parsed arguments: progress on stderr, Ctrl-C cancels."""
    progress = ProgressReporter.for_stream(sys.stderr, enabled=not args.quiet)
    cancel = threading.Event()
    with cancel_on_interrupt(cancel):
        return run_transcode(
            request_from_args(args), progress, stdout=sys.stdout, stderr=sys.stderr, cancel=cancel
        )


@contextmanager
def cancel_on_interrupt(cancel: threading.Event) -> Iterator[None]:
    """Ctrl-C sets `cancel` first: upload threads and FFmpeg stop instead of running on."""
    previous = signal.getsignal(signal.SIGINT)

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        cancel.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run_transcode(
    request: TranscodeRequest,
    progress: ProgressReporter,
    *,
    stdout: TextIO,
    stderr: TextIO,
    cancel: threading.Event | None = None,
) -> int:
    """Run the pipeline; every failure becomes one line on stderr and an exit code."""
    try:
        outcome = transcode(request, progress, cancel)
    except (BadRequestError, PermanentJobError, TransientJobError, KeyboardInterrupt) as error:
        progress.close()
        code, message = describe_failure(error)
        print(f"{PROG}: {message}", file=stderr)
        return code
    progress.close()
    if progress.enabled:
        for line in outcome.summary_lines():
            print(line, file=stderr)
    # The master playlist alone on stdout, so a script can take it: url=$(kube-transcode ...).
    print(outcome.master, file=stdout)
    return EXIT_OK


def describe_failure(error: BaseException) -> tuple[int, str]:
    """Pure: the exit code and the one line a user sees for a failure."""
    if isinstance(error, KeyboardInterrupt | JobCancelledError):
        # The master playlist is written last, so an interrupted run never publishes one.
        return EXIT_INTERRUPTED, "interrupted; no new master playlist was written"
    if isinstance(error, BadRequestError):
        return EXIT_BAD_INPUT, str(error)
    if isinstance(error, PermanentJobError):
        return EXIT_BAD_INPUT, f"{error.reason}: {error.message}"
    if isinstance(error, TransientJobError):
        return EXIT_TEMPORARY, f"{error.reason}: {error.message} (a retry may succeed)"
    return EXIT_FAILED, f"unexpected failure: {error!r}"


if __name__ == "__main__":
    raise SystemExit(main())
