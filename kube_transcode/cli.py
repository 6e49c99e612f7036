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
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO, get_args
from urllib.parse import urlsplit

from pydantic import ValidationError

from kube_transcode.ladder import NAMED_RUNGS, HlsOptions, Rung, X264Preset, rung_by_name

if TYPE_CHECKING:
    from kube_transcode.ladder import LadderPlan
    from kube_transcode.messages import OutputLocation
    from kube_transcode_worker.settings import WorkerSettings

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_TEMPORARY = 75
EXIT_INTERRUPTED = 130
DEFAULT_PRESET: X264Preset = "veryfast"
REMOTE_SCHEMES = ("s3://", "https://", "http://")
PROG = "kube-transcode"


class BadRequestError(Exception):
    """Input the CLI refuses before any work starts (not a job failure, so no reason word)."""


# --- arguments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TranscodeRequest:
    """What `transcode` was asked to do, validated; nothing has been touched yet."""

    source: str
    dest: str
    rungs: list[Rung] | None = None
    hls: HlsOptions = field(default_factory=HlsOptions)
    preset: X264Preset = DEFAULT_PRESET
    overwrite: bool = False


def is_remote(location: str) -> bool:
    return location.startswith(REMOTE_SCHEMES)


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
    transcode = commands.add_parser(
        "transcode",
        help="transcode SOURCE into an HLS ladder at DEST",
        description=(
            "Probe SOURCE, plan the ladder (never upscaling), encode every rendition in one "
            "FFmpeg run and write HLS to DEST, master.m3u8 last."
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
        default=DEFAULT_PRESET,
        help=f"x264 preset (default {DEFAULT_PRESET})",
    )
    transcode.add_argument(
        "--overwrite", action="store_true", help="replace a ladder already at DEST"
    )
    transcode.add_argument(
        "-q", "--quiet", action="store_true", help="no progress, only errors and the result"
    )
    return parser


def request_from_args(args: argparse.Namespace) -> TranscodeRequest:
    return TranscodeRequest(
        source=args.source,
        dest=args.dest,
        rungs=args.rungs,
        hls=args.hls,
        preset=args.preset,
        overwrite=args.overwrite,
    )


# --- progress -----------------------------------------------------------------------------


def format_duration(seconds: float) -> str:
    """0:07, 1:02:03: short enough for a status line."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def render_status(phase: str, percent: float | None, elapsed: float, width: int = 30) -> str:
    """One status line: a bar when the phase has a percentage, the phase's elapsed time, ETA."""
    if percent is None:
        return f"{phase:<11} {format_duration(elapsed)}"
    percent = min(100.0, max(0.0, percent))
    filled = round(width * percent / 100)
    line = f"{phase:<11} [{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}%"
    line += f"  {format_duration(elapsed)}"
    # The first percent or so gives no usable rate; a wild guess is worse than none.
    if 1.0 <= percent < 100.0:
        line += f"  ~{format_duration(elapsed * (100 - percent) / percent)} left"
    return line


class ProgressReporter:
    """Phases and percentages to stderr: a redrawn bar on a terminal, plain lines otherwise.

    Plain lines (logs, CI) come on every phase change and then at most every
    `interval_seconds`, so a long encode leaves a readable, short trace. Thread-safe: the
    upload reports from the store's upload threads.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        interactive: bool,
        enabled: bool = True,
        interval_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.interactive = interactive
        self.enabled = enabled
        self.interval_seconds = interval_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._phase: str | None = None
        self._phase_started = 0.0
        self._last_draw = float("-inf")
        self._bar_open = False
        self._last_line = ""

    @classmethod
    def for_stream(cls, stream: TextIO, *, enabled: bool = True) -> ProgressReporter:
        return cls(stream, interactive=stream.isatty(), enabled=enabled)

    def update(self, phase: str, percent: float | None = None) -> None:
        if not self.enabled:
            return
        with self._lock:
            now = self.clock()
            changed = phase != self._phase
            if changed:
                if self._bar_open:
                    self._redraw(self._last_line, final=True)
                self._phase, self._phase_started = phase, now
            line = render_status(phase, percent, now - self._phase_started)
            self._last_line = line
            if self.interactive:
                # A terminal redraws cheaply, but 10 redraws a second are all an eye can use.
                if changed or now - self._last_draw >= 0.1 or percent == 100.0:
                    self._redraw(line, final=False)
                    self._last_draw = now
            elif changed or percent == 100.0 or now - self._last_draw >= self.interval_seconds:
                self.stream.write(line + "\n")
                self.stream.flush()
                self._last_draw = now

    def close(self) -> None:
        """End the bar's line, so what follows starts on a line of its own."""
        with self._lock:
            if self._bar_open:
                self._redraw(self._last_line, final=True)

    def _redraw(self, line: str, *, final: bool) -> None:
        # \r back to the start, \x1b[K erases what a longer previous line left behind.
        self.stream.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
        self.stream.flush()
        self._bar_open = not final


# --- the pipeline -------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    master: str
    plan: LadderPlan
    encoded_seconds: float
    elapsed_seconds: float

    def summary_lines(self) -> list[str]:
        lines = [
            f"{len(self.plan.renditions)} renditions"
            + (" + audio" if self.plan.audio else "")
            + f", {self.encoded_seconds:.1f} s of video in {self.elapsed_seconds:.1f} s:"
        ]
        for rendition in self.plan.renditions:
            lines.append(
                f"  {rendition.name:<6} {rendition.width}x{rendition.height} "
                f"{rendition.video_kbps} kbps {rendition.profile}@{rendition.level}"
            )
        return lines


def load_settings() -> WorkerSettings:
    """The worker's settings from the same KT_ variables; the broker URL is not needed here."""
    from kube_transcode_worker.settings import WorkerSettings

    try:
        # KT_RABBITMQ_URL is required by the worker, but the CLI never talks to a broker.
        return WorkerSettings(rabbitmq_url="amqp://unused.invalid/")  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"KT_{str(err['loc'][0]).upper() if err['loc'] else '?'}: {err['msg']}"
            for err in error.errors(include_url=False)
        )
        raise BadRequestError(f"invalid settings in the environment: {problems}") from None


def output_location(dest: str) -> OutputLocation:
    from kube_transcode.messages import OutputLocation

    bucket, _, prefix = dest.removeprefix("s3://").partition("/")
    try:
        return OutputLocation(bucket=bucket, prefix=prefix)
    except ValidationError as error:
        why = "; ".join(err["msg"] for err in error.errors(include_url=False))
        raise BadRequestError(f"DEST {dest!r} is not s3://<bucket>/<prefix>: {why}") from None


def check_request(request: TranscodeRequest) -> None:
    """Refuse what would fail anyway, or do harm, before fetching or encoding anything."""
    if not is_remote(request.source) and not Path(request.source).is_file():
        raise BadRequestError(f"SOURCE {request.source} is not a file")
    if is_remote(request.dest):
        if not request.dest.startswith("s3://"):
            raise BadRequestError(
                f"DEST must be a local folder or s3://bucket/prefix, got {request.dest}"
            )
        output_location(request.dest)
        return
    dest = Path(request.dest).resolve()
    if dest.exists() and not dest.is_dir():
        raise BadRequestError(f"DEST {request.dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()) and not request.overwrite:
        raise BadRequestError(f"DEST {request.dest} is not empty; pass --overwrite to replace it")
    # --overwrite replaces DEST as a whole: it must not take the source or the shell's cwd along.
    if not is_remote(request.source) and Path(request.source).resolve().is_relative_to(dest):
        raise BadRequestError(f"SOURCE {request.source} lies inside DEST {request.dest}")
    if Path.cwd().resolve().is_relative_to(dest):
        raise BadRequestError(f"DEST {request.dest} holds the current directory; name a subfolder")


def transcode(
    request: TranscodeRequest, progress: ProgressReporter, cancel: threading.Event | None = None
) -> Outcome:
    """Local or remote source to local or S3 destination, through the worker's modules."""
    from kube_transcode_worker.transcode_local import transcode_file

    cancel = cancel or threading.Event()
    check_request(request)
    started = time.monotonic()
    settings = load_settings()
    client = s3_client(settings) if is_remote(request.dest) else None
    location = output_location(request.dest) if is_remote(request.dest) else None
    if client is not None and location is not None:
        check_s3_dest(client, location, request.overwrite)
    with tempfile.TemporaryDirectory(prefix="kube-transcode-") as scratch:
        work = Path(scratch)
        source = fetch_source(request, work, settings, progress, cancel)
        ladder_dir = work / "ladder" if location else Path(request.dest)
        progress.update("probing")
        result = transcode_file(
            source,
            ladder_dir,
            request.rungs,
            request.hls,
            preset=request.preset,
            on_progress=lambda percent: progress.update("encoding", percent),
            cancel=cancel,
            limits=settings.probe_limits,
            overwrite=request.overwrite,
        )
        master = str(result.master_playlist)
        if client is not None and location is not None:
            master = upload_ladder(result.dest_dir, client, location, settings, progress, cancel)
    return Outcome(
        master=master,
        plan=result.plan,
        encoded_seconds=result.encoded_seconds,
        elapsed_seconds=time.monotonic() - started,
    )


def s3_client(settings: WorkerSettings) -> Any:
    """The worker's own S3 client, after checking that there are credentials to sign with."""
    import boto3

    from kube_transcode_worker.main import s3_client as worker_s3_client

    keys = (settings.s3_access_key_id, settings.s3_secret_access_key)
    # Without any, the first request fails with a "cannot reach" that sends users looking wrongly.
    if None in keys and boto3.Session().get_credentials() is None:
        raise BadRequestError(
            "no S3 credentials: set KT_S3_ACCESS_KEY_ID and KT_S3_SECRET_ACCESS_KEY "
            "(and KT_S3_ENDPOINT_URL for MinIO)"
        )
    return worker_s3_client(settings)


def fetch_source(
    request: TranscodeRequest,
    work: Path,
    settings: WorkerSettings,
    progress: ProgressReporter,
    cancel: threading.Event,
) -> Path:
    """A local source as it is; a remote one through the worker's guarded fetcher."""
    if not is_remote(request.source):
        return Path(request.source)
    from kube_transcode_worker.fetch import Fetcher, HttpFetcher, S3Fetcher

    fetcher = Fetcher(
        HttpFetcher(
            allowed_networks=settings.allowed_source_networks,
            allow_http=settings.allow_http_sources,
            max_bytes=settings.max_source_bytes,
            connect_timeout=settings.fetch_connect_timeout_seconds,
            read_timeout=settings.fetch_read_timeout_seconds,
            max_redirects=settings.fetch_max_redirects,
        ),
        S3Fetcher(s3_client(settings), max_bytes=settings.max_source_bytes),
    )
    progress.update("fetching")
    # The demuxer is pinned from the probe, not the name; the suffix only helps a human.
    suffix = PurePosixPath(urlsplit(request.source).path).suffix[:8]
    if not suffix[1:].isalnum():
        suffix = ""
    return fetcher.fetch(request.source, work / f"source{suffix}", cancel).path


def check_s3_dest(client: Any, location: OutputLocation, overwrite: bool) -> None:
    """The bucket must exist, and the prefix hold no ladder unless --overwrite says replace."""
    from botocore.exceptions import BotoCoreError, ClientError

    from kube_transcode_worker.errors import TransientJobError

    try:
        listing = client.list_objects_v2(
            Bucket=location.bucket, Prefix=f"{location.prefix}/", MaxKeys=1
        )
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", "?"))
        raise BadRequestError(f"DEST {location.uri()} cannot be written: {code}") from None
    except BotoCoreError as error:
        raise TransientJobError("StorageUnavailable", f"cannot reach S3: {error}") from None
    if listing.get("KeyCount", 0) and not overwrite:
        raise BadRequestError(
            f"DEST {location.uri()} already holds objects; pass --overwrite to replace them"
        )


def upload_ladder(
    ladder_dir: Path,
    client: Any,
    location: OutputLocation,
    settings: WorkerSettings,
    progress: ProgressReporter,
    cancel: threading.Event,
) -> str:
    """The worker's upload: segments, then media playlists, master last, stale objects removed."""
    from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
    from kube_transcode_worker.store import LadderStore

    total = sum(path.stat().st_size for path in ladder_dir.rglob("*") if path.is_file())
    sent = 0
    lock = threading.Lock()

    def on_bytes(count: int) -> None:
        nonlocal sent
        with lock:
            sent += count
            percent = 100 * sent / total if total else 100.0
        progress.update("uploading", percent)

    progress.update("uploading", 0.0)
    store = LadderStore(
        client,
        concurrency=settings.upload_concurrency,
        attempts=settings.upload_attempts,
        on_bytes=on_bytes,
    )
    store.publish(ladder_dir, location.bucket, location.prefix, cancel)
    return location.uri(MASTER_PLAYLIST_NAME)


# --- entry point --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    from kube_transcode_worker.errors import PermanentJobError, TransientJobError

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
    from kube_transcode_worker.errors import (
        JobCancelledError,
        PermanentJobError,
        TransientJobError,
    )

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
