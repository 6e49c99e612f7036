"""`kube-transcode`: the worker's pipeline from a terminal, without a cluster or a queue.

    kube-transcode transcode SOURCE DEST [--rungs 360p,720p] [--segment-seconds 6]
                                         [--segment-format ts|fmp4] [--codecs h264,hevc,av1]
                                         [--no-poster] [--poster-width 1280]
                                         [--no-storyboard] [--storyboard-interval 10]
                                         [--thumbnail-width 160] [--storyboard-grid 5x5]
                                         [--preset veryfast] [--overwrite] [--quiet]

SOURCE is a local file or an s3:// or https:// URL; DEST a local folder or s3://bucket/prefix.
The ladder is made the way a worker makes it (probe, plan, one FFmpeg run, master playlist
last; the worker's own fetch and upload for remote ends), so what a user tries here is what
the cluster produces: HEVC and AV1 renditions (fMP4 segments only, as for a TranscodeJob), and
poster.jpg and storyboard/ beside the master playlist unless turned off. S3 is reached with
the worker's settings (KT_S3_ENDPOINT_URL, KT_S3_ACCESS_KEY_ID, KT_S3_SECRET_ACCESS_KEY,
KT_S3_REGION).

Exit codes: 0 done; 2 bad input (usage, or a source or destination the job would fail on in
the cluster too); 75 a failure that may pass on a retry (EX_TEMPFAIL: storage unreachable,
encoder killed); 130 interrupted; 1 anything else.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, TextIO, get_args

from pydantic import BaseModel, ValidationError

from kube_transcode.codecs import (
    DEFAULT_SEGMENT_FORMAT,
    DEFAULT_VIDEO_CODECS,
    VIDEO_CODECS,
    SegmentFormat,
)
from kube_transcode.ladder import (
    DEFAULT_X264_PRESET,
    NAMED_RUNGS,
    HlsOptions,
    Rung,
    VideoOptions,
    X264Preset,
    rung_by_name,
)
from kube_transcode.names import MASTER_PLAYLIST_NAME
from kube_transcode.thumbnails import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_POSTER_WIDTH,
    DEFAULT_SHEET_COLUMNS,
    DEFAULT_SHEET_ROWS,
    DEFAULT_THUMBNAIL_WIDTH,
    PosterOptions,
    StoryboardOptions,
    ThumbnailOptions,
)
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


def parse_segment_seconds(text: str) -> int:
    """Checked by the same model a TranscodeJob's HLS options go through."""
    try:
        return HlsOptions(segment_seconds=int(text)).segment_seconds
    except ValueError as error:
        why = error.errors()[0]["msg"] if isinstance(error, ValidationError) else "not a number"
        raise argparse.ArgumentTypeError(
            f"segment length must be whole seconds: {why}, got {text!r}"
        ) from None


def parse_codecs(text: str) -> VideoOptions:
    """'h264,av1' as a TranscodeJob's video options, checked by the same model."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give at least one video codec, e.g. h264,av1")
    try:
        return VideoOptions.model_validate({"codecs": names})
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        if first["type"] == "literal_error":
            raise argparse.ArgumentTypeError(
                f"unknown video codec {first['input']!r}; codecs are {', '.join(VIDEO_CODECS)}"
            ) from None
        why = str(first["ctx"]["error"]) if first["type"] == "value_error" else first["msg"]
        raise argparse.ArgumentTypeError(why) from None


def whole_number_of(model: type[BaseModel], field: str, what: str) -> Callable[[str], int]:
    """An argparse type for one int field of a spec.thumbnails model, held to its bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
            model.model_validate({field: value})
        except ValidationError as error:
            why = error.errors(include_url=False)[0]["msg"]
            raise argparse.ArgumentTypeError(f"{what}: {why}, got {text!r}") from None
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{what} must be a whole number, got {text!r}"
            ) from None
        return value

    return parse


def parse_grid(text: str) -> tuple[int, int]:
    """'5x5' as a storyboard sheet's columns and rows, held to spec.thumbnails' bounds."""
    columns, separator, rows = text.lower().partition("x")
    if not (separator and columns.isdigit() and rows.isdigit()):
        raise argparse.ArgumentTypeError(f"storyboard grid is COLUMNSxROWS, e.g. 5x5, got {text!r}")
    try:
        grid = StoryboardOptions(columns=int(columns), rows=int(rows))
    except ValidationError as error:
        why = error.errors(include_url=False)[0]["msg"]
        raise argparse.ArgumentTypeError(f"storyboard grid: {why}, got {text!r}") from None
    return grid.columns, grid.rows


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
        type=parse_segment_seconds,
        default=HlsOptions().segment_seconds,
        metavar="SECONDS",
        help=f"HLS segment length (default {HlsOptions().segment_seconds})",
    )
    transcode.add_argument(
        "--segment-format",
        choices=get_args(SegmentFormat),
        default=DEFAULT_SEGMENT_FORMAT,
        help=f"MPEG-TS or fragmented MP4 (CMAF) segments (default {DEFAULT_SEGMENT_FORMAT})",
    )
    transcode.add_argument(
        "--codecs",
        dest="video",
        type=parse_codecs,
        default=VideoOptions(),
        metavar="CODECS",
        help=f"comma-separated video codecs from {','.join(VIDEO_CODECS)}, each rung encoded "
        f"once in each (default {','.join(DEFAULT_VIDEO_CODECS)}; hevc and av1 need "
        "--segment-format fmp4)",
    )
    add_thumbnail_arguments(transcode)
    transcode.add_argument(
        "--preset",
        choices=get_args(X264Preset),
        default=DEFAULT_X264_PRESET,
        help=f"x264 preset; x265 takes the same, SVT-AV1 its match (default {DEFAULT_X264_PRESET})",
    )
    transcode.add_argument(
        "--overwrite", action="store_true", help="replace a ladder already at DEST"
    )
    transcode.add_argument(
        "-q", "--quiet", action="store_true", help="no progress, only errors and the result"
    )
    return transcode


def add_thumbnail_arguments(transcode: argparse.ArgumentParser) -> None:
    """spec.thumbnails of a TranscodeJob as options: the same fields, bounds and defaults."""
    thumbnails = transcode.add_argument_group(
        "poster and storyboard", "made in the ladder's FFmpeg run, as a worker makes them"
    )
    thumbnails.add_argument(
        "--no-poster", action="store_true", help="no poster.jpg beside the master playlist"
    )
    thumbnails.add_argument(
        "--poster-width",
        type=whole_number_of(PosterOptions, "width", "poster width"),
        default=DEFAULT_POSTER_WIDTH,
        metavar="PIXELS",
        help=f"poster width, at most the source's (default {DEFAULT_POSTER_WIDTH})",
    )
    thumbnails.add_argument(
        "--no-storyboard", action="store_true", help="no storyboard/ (sprite sheets and VTT)"
    )
    thumbnails.add_argument(
        "--storyboard-interval",
        type=whole_number_of(StoryboardOptions, "interval_seconds", "storyboard interval"),
        default=DEFAULT_INTERVAL_SECONDS,
        metavar="SECONDS",
        help=f"one storyboard thumbnail every SECONDS (default {DEFAULT_INTERVAL_SECONDS})",
    )
    thumbnails.add_argument(
        "--thumbnail-width",
        type=whole_number_of(StoryboardOptions, "width", "thumbnail width"),
        default=DEFAULT_THUMBNAIL_WIDTH,
        metavar="PIXELS",
        help=f"storyboard thumbnail width (default {DEFAULT_THUMBNAIL_WIDTH})",
    )
    thumbnails.add_argument(
        "--storyboard-grid",
        type=parse_grid,
        default=(DEFAULT_SHEET_COLUMNS, DEFAULT_SHEET_ROWS),
        metavar="COLUMNSxROWS",
        help="thumbnails per sprite sheet, tiled row by row "
        f"(default {DEFAULT_SHEET_COLUMNS}x{DEFAULT_SHEET_ROWS})",
    )


def request_from_args(args: argparse.Namespace) -> TranscodeRequest:
    return TranscodeRequest(
        source=args.source,
        dest=args.dest,
        rungs=args.rungs,
        hls=HlsOptions(segment_seconds=args.segment_seconds, segment_format=args.segment_format),
        video=args.video,
        thumbnails=ThumbnailOptions(
            poster=PosterOptions(enabled=not args.no_poster, width=args.poster_width),
            storyboard=StoryboardOptions(
                enabled=not args.no_storyboard,
                interval_seconds=args.storyboard_interval,
                width=args.thumbnail_width,
                columns=args.storyboard_grid[0],
                rows=args.storyboard_grid[1],
            ),
        ),
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
