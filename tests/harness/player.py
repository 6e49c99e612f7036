"""A real browser playing a ladder: headless Chromium runs hls.js (player/, pinned by its
package-lock.json, installed by hack/player.sh) and reports what a viewer would notice.

The page and hls.js are served by a loopback StubServer; the page plays every rendition from
start to end, locked to that level, then seeks in a fresh player, and POSTs its report to the
same server. Nothing is driven over the DevTools protocol: Chromium only loads one URL, so no
extra Python package is needed. The playlist and segments come straight from their own URL
(MinIO answers the page's cross-origin requests with Access-Control-Allow-Origin).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict

from kube_transcode_devstack.layout import cache_dir
from kube_transcode_devstack.waiting import TimedOutError, wait_until
from tests.harness import ROOT
from tests.harness.http_stub import NOT_FOUND, Reply, Request, StubServer

PAGE_DIR = ROOT / "player"
CHROMIUM = "chromium"
# hls.js's pinned version, as hack/player.sh installs it: outside the checkout.
HLS_JS = cache_dir() / "player" / "node_modules" / "hls.js" / "dist" / "hls.min.js"
KILL_GRACE_SECONDS = 5

Outcome = Literal["met", "fatal", "timeout"]


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CodecSupport(_Report):
    """MediaSource.isTypeSupported for H.264 High, HEVC Main, AV1 Main and AAC-LC in MP4."""

    h264: bool
    hevc: bool
    av1: bool
    aac: bool


class Level(_Report):
    """A variant of the master playlist as hls.js parsed it (sorted by bitrate)."""

    index: int
    width: int
    height: int
    bitrate: int
    video_codec: str | None
    audio_codec: str | None
    uri: str


class Waiting(_Report):
    time_seconds: float
    buffered_ahead_seconds: float  # 0: the buffer ran dry; more: the decoder fell behind


class PlayThrough(_Report):
    """One rendition played from its start until `ended` (or a fatal error, or the timeout)."""

    outcome: Outcome
    ended: bool
    stalls: int  # hls.js BUFFER_STALLED_ERROR after load
    waiting: int  # <video> waiting events after playback began
    waiting_at: list[Waiting]
    fatal_error: str | None
    errors: list[str]  # every non-fatal hls.js error: details (fragment): message
    played_seconds: float  # media time covered by video.played
    duration_seconds: float | None
    current_time_seconds: float
    decoded_frames: int  # getVideoPlaybackQuality().totalVideoFrames
    dropped_frames: int
    video_width: int
    video_height: int
    fragment_levels: list[int]  # the levels of the main fragments buffered
    playback_rate: float
    wall_seconds: float


class Seek(_Report):
    fraction: float
    target_seconds: float
    target_was_buffered: bool  # False: the seek had to fetch segments there
    outcome: Outcome
    seeked_at_seconds: float | None  # currentTime at the `seeked` event
    buffered_at_seeked: list[tuple[float, float]]  # video.buffered then
    reached_seconds: float  # currentTime once playing resumed past the target
    wall_seconds: float

    @property
    def resumed(self) -> bool:
        return self.outcome == "met"


class SeekSession(_Report):
    outcome: Outcome
    seeks: list[Seek]
    fatal_error: str | None
    errors: list[str]


class Rendition(_Report):
    level: Level
    play: PlayThrough
    seek: SeekSession


class PlaybackReport(_Report):
    hls_version: str
    hls_supported: bool
    user_agent: str
    codecs: CodecSupport
    renditions: list[Rendition]
    error: str | None  # the page's own failure (no manifest, an exception), if any


def play_ladder(
    master_url: str,
    *,
    rate: float = 4.0,
    seeks: Sequence[float] = (0.25, 0.75),
    level_timeout: float = 120.0,
    timeout: float = 600.0,
) -> PlaybackReport:
    """Every rendition of the ladder at master_url played at `rate`, then seeked to `seeks`
    (fractions of the duration). level_timeout bounds each play-through and each seek.

    "Every" as hls.js lists them: it leaves out the variants whose CODECS this browser's
    MediaSource refuses (HEVC in Chromium without a platform decoder), so the report's
    renditions are those it can play; `codecs` says which codecs those are."""
    query = {
        "src": master_url,
        "rate": str(rate),
        "seeks": ",".join(str(s) for s in seeks),
        "level_timeout": str(level_timeout),
    }
    return _run_page(query, timeout)


def codec_support(timeout: float = 60.0) -> CodecSupport:
    """Which codecs this Chromium's MediaSource accepts."""
    return _run_page({}, timeout).codecs


def _run_page(query: dict[str, str], timeout: float) -> PlaybackReport:
    if not HLS_JS.exists():
        raise FileNotFoundError(f"{HLS_JS} is missing: run hack/player.sh (make deps)")
    with (
        StubServer(respond=_serve) as server,
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile,
    ):
        url = server.url(f"/index.html?{urlencode(query)}")
        log = Path(profile) / "chromium.log"
        with _chromium(url, Path(profile) / "profile", log) as browser:
            report = wait_until(
                "the browser player's report",
                lambda: next(
                    (r for r in server.requests if (r.method, r.path) == ("POST", "/result")),
                    None,
                ),
                timeout,
                detail=lambda: _tail(log),
                interval=0.5,
                alive=lambda: browser.poll() is None,
            )
        return PlaybackReport.model_validate_json(report.body)


def _serve(request: Request) -> Reply:
    path = request.path.split("?", 1)[0]
    files = {
        "/index.html": (PAGE_DIR / "index.html", "text/html; charset=utf-8"),
        "/player.js": (PAGE_DIR / "player.js", "text/javascript; charset=utf-8"),
        "/hls.min.js": (HLS_JS, "text/javascript; charset=utf-8"),
    }
    if request.method == "POST" and path == "/result":
        return Reply(204)
    if request.method != "GET" or path not in files:
        return NOT_FOUND
    file, content_type = files[path]
    return Reply(
        200, file.read_bytes(), {"Content-Type": content_type, "Cache-Control": "no-store"}
    )


@contextmanager
def _chromium(url: str, profile: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Headless Chromium on url, in a process group of its own that is always killed after."""
    binary = shutil.which(CHROMIUM)
    if binary is None:
        raise FileNotFoundError("chromium is not installed: run hack/player.sh (make deps)")
    args = [
        binary,
        "--headless=new",
        "--no-sandbox",  # tests may run as root, where Chromium's sandbox refuses to start
        "--autoplay-policy=no-user-gesture-required",
        "--mute-audio",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        # A headless page counts as hidden: its timers and media must not be throttled.
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
        "--enable-logging=stderr",
        url,
    ]
    with log.open("wb") as out:
        browser = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    try:
        yield browser
    finally:
        _stop_group(browser)


def _stop_group(browser: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the browser's process group (renderer, GPU and zygote too), SIGKILL if slow."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(browser.pid, sig)
            wait_until(
                "Chromium's processes to exit",
                lambda: not _group_alive(browser),
                KILL_GRACE_SECONDS,
            )
            break
        except ProcessLookupError:
            break
        except TimedOutError:
            continue
    browser.wait()


def _group_alive(browser: subprocess.Popen[bytes]) -> bool:
    browser.poll()  # reaps the leader, so a zombie does not count
    try:
        os.killpg(browser.pid, 0)
    except ProcessLookupError:
        return False
    return True


def _tail(log: Path, lines: int = 40) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"no log at {log}"
    return "\n".join(text.splitlines()[-lines:])
