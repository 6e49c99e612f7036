"""One FFmpeg run for a whole ladder: decode once, split and scale per rung, HLS out.

Every rung gets keyframes at the same segment boundaries (forced by time, so 23.976 fps and
variable frame rates align too); audio is encoded once into its own rendition. FFmpeg writes
the media playlists; the master playlist is ours (see hls.py).

A chunked job's part (kube_transcode.chunks) is the same run cut down: a video chunk reads
its time range only (accurate input seek, `-t`), shifts its output by the range's start
(`-output_ts_offset`) and numbers its segments from the range's first one (`-start_number`),
so its segments are those of one continuous encode; the audio part encodes the whole
source's audio alone. Parts read the source's staged copy over HTTP(S) (a presigned URL:
FFmpeg seeks in it with range requests).
"""

from __future__ import annotations

import math
import os
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kube_transcode.codecs import VideoCodec
from kube_transcode.ladder import (
    AUDIO_RENDITION_NAME,
    DEFAULT_X264_PRESET,
    LadderPlan,
    VideoRendition,
    X264Preset,
)
from kube_transcode.messages import ChunkTask
from kube_transcode_worker.errors import JobCancelledError, PermanentJobError, TransientJobError
from kube_transcode_worker.hls import (
    AUDIO_GROUP_ID,
    INIT_PATTERN,
    MEDIA_PLAYLIST_NAME,
    segment_pattern,
)
from kube_transcode_worker.probe import DEFAULT_ALLOWED_DEMUXERS
from kube_transcode_worker.thumbnails import (
    FRAMES_DIR,
    ThumbnailPlan,
    branch_filters,
    branch_labels,
    output_args,
)

STDERR_TAIL_LINES = 20
KILL_GRACE_SECONDS = 5.0
# Output shorter than the source by more than this means the input ended early.
TRUNCATION_TOLERANCE_SECONDS = 1.0
TRUNCATION_TOLERANCE_SHARE = 0.01


@dataclass(frozen=True)
class ProgressUpdate:
    """One -progress block: how far the output has got, and whether FFmpeg is done."""

    out_time_us: int | None
    finished: bool


@dataclass(frozen=True)
class EncodeResult:
    out_dir: Path
    encoded_seconds: float
    elapsed_seconds: float


def filter_graph(plan: LadderPlan, thumbnails: ThumbnailPlan | None = None) -> str:
    """Decode once; scale to the tallest size, then each next one from the one above it,
    square pixels, 4:2:0. Each scaler reads the smaller picture before it rather than the full
    source: for a 1080p30 source and 5 rungs, 3.6% less FFmpeg CPU (60 s source) and 4-9% (20 s,
    two runs) than one branch per rung off the decoder. Every step is still a downscale, of at
    most 1.5x between neighbouring rungs. A size encoded in several codecs is scaled once and
    split to each codec's encoder. Poster and storyboard are further branches of the decoded
    picture (thumbnails.py), so they cost no second decode."""
    sizes: dict[tuple[int, int], list[int]] = {}
    for index, rendition in enumerate(plan.renditions):
        sizes.setdefault((rendition.width, rendition.height), []).append(index)
    order = sorted(sizes, key=lambda size: -size[1])
    chains = []
    previous = "[0:v:0]"
    branches = branch_labels(thumbnails) if thumbnails is not None else []
    if branches:
        chains.append(f"{previous}split={len(branches) + 1}[ladder]{''.join(branches)}")
        previous = "[ladder]"
    for step, (width, height) in enumerate(order):
        outputs = [f"[v{index}]" for index in sizes[(width, height)]]
        if step < len(order) - 1:
            outputs.append(f"[d{step}]")
        scaled = f"{previous}scale=w={width}:h={height},setsar=1,format=yuv420p"
        split = f",split={len(outputs)}" if len(outputs) > 1 else ""
        chains.append(f"{scaled}{split}{''.join(outputs)}")
        previous = f"[d{step}]"
    if branches and thumbnails is not None:
        chains += branch_filters(thumbnails)
    return ";".join(chains)


def var_stream_map(plan: LadderPlan, part: ChunkTask | None = None) -> str:
    """Which output streams form each rendition; name: gives each its folder via %v."""
    if part is not None and part.kind == "audio":
        return f"a:0,name:{AUDIO_RENDITION_NAME}"
    with_audio = plan.audio is not None and part is None
    group = f",agroup:{AUDIO_GROUP_ID}" if with_audio else ""
    entries = [
        f"v:{index}{group},name:{rendition.name}" for index, rendition in enumerate(plan.renditions)
    ]
    if with_audio:
        entries.append(f"a:0{group},name:{AUDIO_RENDITION_NAME}")
    return " ".join(entries)


def encoded_duration(plan: LadderPlan, part: ChunkTask | None) -> float:
    """Seconds of media this run produces: the source's, or the part's range."""
    return plan.source.duration_seconds if part is None else part.duration_seconds


def keyframe_interval_frames(plan: LadderPlan) -> int:
    """Frames per segment, rounded up, so x264's own GOP never ends inside a segment."""
    return max(1, math.ceil(plan.source.fps * plan.hls.segment_seconds))


def input_demuxer(container: str) -> str:
    """ffprobe's "mov,mp4,m4a,3gp,3g2,mj2" as -f accepts it: the first name."""
    return container.split(",", 1)[0]


# Every part's timeline starts this much later than the source's. A video chunk's B-frames
# are decoded before they are shown, so its first timestamps precede its offset; FFmpeg
# shifts an output whose timestamps would go negative, which only the first chunk's would
# without this lead, breaking the timeline where it meets the second. Longer than x264's
# reorder delay at any preset and frame rate we accept (16 B-frames at 10 fps). The audio
# part gets the same lead, and its AAC priming then lies before it, as in a whole run.
PART_TIMELINE_LEAD_SECONDS = 2.0

# The protocols a part's presigned URL needs (HTTP(S) to the S3 store, nothing else).
STAGED_SOURCE_PROTOCOLS = "http,https,tcp,tls"

# A local file, or the presigned http(s) URL of a staged source (our own, never a user's).
EncodeInput = Path | str


def ffmpeg_command(
    plan: LadderPlan,
    source: EncodeInput,
    out_dir: Path,
    *,
    part: ChunkTask | None = None,
    preset: X264Preset = DEFAULT_X264_PRESET,
    ffmpeg: str = "ffmpeg",
    allowed_demuxers: tuple[str, ...] = DEFAULT_ALLOWED_DEMUXERS,
    thumbnails: ThumbnailPlan | None = None,
    thumbs_dir: Path | None = None,
) -> list[str]:
    """The whole argument list (no shell); every value comes from validated models.

    With `thumbnails` (not empty) the poster and storyboard JPEGs go to `thumbs_dir`, as
    outputs after the HLS one."""
    audio_only = part is not None and part.kind == "audio"
    video_only = part is not None and part.kind == "video"
    if audio_only or thumbnails is None or thumbnails.empty:
        thumbnails = None
    elif thumbs_dir is None:
        raise ValueError("thumbnails need a folder to go to")
    extra = [] if thumbnails is None or thumbs_dir is None else output_args(thumbnails, thumbs_dir)
    return [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-y",
        *_input_args(plan, source, part, allowed_demuxers, thumbnails),
        *([] if audio_only else _video_args(plan, preset)),
        *([] if video_only else _audio_args(plan)),
        *_hls_args(plan, out_dir.resolve(), part),
        *extra,
    ]


def _input_args(
    plan: LadderPlan,
    source: EncodeInput,
    part: ChunkTask | None,
    allowed_demuxers: tuple[str, ...],
    thumbnails: ThumbnailPlan | None,
) -> list[str]:
    """The one input, its demuxer pinned, decoded once into the scaling graph."""
    args = ["-format_whitelist", ",".join(allowed_demuxers)]
    if isinstance(source, Path):
        location = f"file:{source.resolve()}"
    else:
        if not source.startswith(("http://", "https://")):
            raise ValueError("a staged source is read over http(s) only")
        args += ["-protocol_whitelist", STAGED_SOURCE_PROTOCOLS]
        location = source
    if part is not None and part.kind == "video":
        # Before -i: an accurate seek (decode from the keyframe before, drop up to start).
        args += ["-ss", f"{part.start_seconds:.6f}", "-t", f"{part.duration_seconds:.6f}"]
    # Pin the demuxer ffprobe accepted, so FFmpeg cannot probe its way to another.
    args += ["-f", input_demuxer(plan.source.container), "-i", location]
    if part is None or part.kind == "video":
        args += ["-filter_complex", filter_graph(plan, thumbnails)]
        for index in range(len(plan.renditions)):
            args += ["-map", f"[v{index}]"]
    if plan.audio and (part is None or part.kind == "audio"):
        args += ["-map", "0:a:0"]
    # Source tags (camera GPS, encoder names) do not belong in published output.
    return [*args, "-map_metadata", "-1", "-map_chapters", "-1"]


# libsvtav1's presets (0 slowest .. 13) for the x264 preset names a job's workers use, so one
# setting picks each codec's speed. From 10 up SVT-AV1 warns its presets are meant for
# automated tooling, so veryfast (the default) takes 9: `python -m benchmarks codecs` has it
# at 1.55x H.264's ladder time (x265 veryfast: 3.20x).
SVT_AV1_PRESETS: dict[X264Preset, int] = {
    "ultrafast": 12,
    "superfast": 11,
    "veryfast": 9,
    "faster": 9,
    "fast": 8,
    "medium": 7,
    "slow": 5,
    "slower": 4,
    "veryslow": 3,
}
ENCODERS: dict[VideoCodec, str] = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
# x265: closed GOPs, no scene-cut keyframes (boundaries are forced), only its errors logged.
_X265_PARAMS = "log-level=error:open-gop=0:scenecut=0"


def _video_args(plan: LadderPlan, preset: X264Preset) -> list[str]:
    """Each rendition's encoder, keyframes forced at every segment boundary, rates per rung."""
    args = [
        "-force_key_frames",
        f"expr:gte(t,n_forced*{plan.hls.segment_seconds})",
        "-g",
        str(keyframe_interval_frames(plan)),
    ]
    for index, rendition in enumerate(plan.renditions):
        args += [f"-c:v:{index}", ENCODERS[rendition.codec], *_codec_args(index, rendition, preset)]
        args += [f"-b:v:{index}", f"{rendition.video_kbps}k"]
        # SVT-AV1 takes a maximum rate in CRF mode only; its VBR keeps to the buffer.
        if rendition.codec != "av1":
            args += [f"-maxrate:v:{index}", f"{rendition.maxrate_kbps}k"]
        args += [f"-bufsize:v:{index}", f"{rendition.bufsize_kbps}k"]
    return args


def _codec_args(index: int, rendition: VideoRendition, preset: X264Preset) -> list[str]:
    if rendition.codec == "hevc":
        return [
            f"-preset:v:{index}",
            preset,
            f"-profile:v:{index}",
            rendition.profile,
            # Forced keyframes as IDR pictures: every segment decodes on its own.
            f"-forced-idr:v:{index}",
            "1",
            f"-x265-params:v:{index}",
            _X265_PARAMS,
            # Apple's HLS spec: HEVC in fMP4 as hvc1 (parameter sets in the init segment).
            f"-tag:v:{index}",
            "hvc1",
        ]
    if rendition.codec == "av1":
        return [f"-preset:v:{index}", str(SVT_AV1_PRESETS[preset])]
    return [
        f"-preset:v:{index}",
        preset,
        f"-sc_threshold:v:{index}",
        "0",
        f"-profile:v:{index}",
        rendition.profile,
        f"-level:v:{index}",
        rendition.level,
    ]


def _audio_args(plan: LadderPlan) -> list[str]:
    if not plan.audio:
        return []
    return [
        "-c:a",
        "aac",
        "-b:a",
        f"{plan.audio.bitrate_kbps}k",
        "-ac",
        str(plan.audio.channels),
        "-ar",
        str(plan.audio.sample_rate),
    ]


def _hls_args(plan: LadderPlan, out_dir: Path, part: ChunkTask | None) -> list[str]:
    """The HLS muxer: a folder per rendition, VOD playlists, progress on stdout."""
    placement: list[str] = []
    if part is not None:
        offset = PART_TIMELINE_LEAD_SECONDS
        if part.kind == "video":
            offset += part.start_seconds
            placement = ["-start_number", str(part.first_segment)]
        placement = ["-output_ts_offset", f"{offset:.6f}", *placement]
    return [
        # Many encoders fed by one decoder start at different times; give the muxer room.
        "-max_muxing_queue_size",
        "1024",
        *placement,
        "-f",
        "hls",
        "-hls_time",
        str(plan.hls.segment_seconds),
        "-hls_playlist_type",
        "vod",
        *_segment_args(plan, part),
        "-hls_flags",
        "independent_segments",
        "-hls_segment_filename",
        str(out_dir / "%v" / segment_pattern(plan.hls.segment_format)),
        "-var_stream_map",
        var_stream_map(plan, part),
        "-nostats",
        "-progress",
        "pipe:1",
        "-stats_period",
        "0.5",
        str(out_dir / "%v" / MEDIA_PLAYLIST_NAME),
    ]


def _segment_args(plan: LadderPlan, part: ChunkTask | None) -> list[str]:
    if not plan.fmp4:
        return ["-hls_segment_type", "mpegts"]
    names = [entry.rpartition("name:")[2] for entry in var_stream_map(plan, part).split(" ")]
    return [
        "-hls_segment_type",
        "fmp4",
        # %v is the rendition's name: the same init name whichever streams a run (or a
        # chunk's run) has, so every chunk's identical init lands on the same key. FFmpeg
        # fills in %v there only when there are several renditions.
        "-hls_fmp4_init_filename",
        INIT_PATTERN if len(names) > 1 else INIT_PATTERN.replace("%v", names[0]),
        # Without it the mp4 muxer writes a part's timeline offset as an edit list in the
        # init and starts each fragment's decode time at 0; with it the decode times (tfdt)
        # are the timeline's and every part's init is the same bytes.
        "-hls_segment_options",
        "movflags=+frag_discont",
    ]


def parse_progress(lines: Iterable[str]) -> Iterator[ProgressUpdate]:
    """Pure: FFmpeg's -progress key=value lines, one update per block (at "progress=")."""
    out_time_us: int | None = None
    for raw in lines:
        key, separator, value = raw.strip().partition("=")
        if not separator:
            continue
        if key == "out_time_us":
            out_time_us = _microseconds(value)
        elif key == "out_time_ms" and out_time_us is None:
            # Despite its name, out_time_ms is in microseconds too.
            out_time_us = _microseconds(value)
        elif key == "progress":
            yield ProgressUpdate(out_time_us=out_time_us, finished=value == "end")
            out_time_us = None


def _microseconds(value: str) -> int | None:
    try:
        return max(0, int(value))
    except ValueError:
        return None


def progress_percent(out_time_us: int, duration_seconds: float) -> float:
    """Share of the source encoded, 0..100."""
    if duration_seconds <= 0:
        return 0.0
    return min(100.0, max(0.0, out_time_us / (duration_seconds * 1e6) * 100))


def run_encode(
    plan: LadderPlan,
    source: EncodeInput,
    out_dir: Path,
    on_progress: Callable[[float], None],
    cancel: threading.Event,
    *,
    part: ChunkTask | None = None,
    preset: X264Preset = DEFAULT_X264_PRESET,
    ffmpeg: str = "ffmpeg",
    allowed_demuxers: tuple[str, ...] = DEFAULT_ALLOWED_DEMUXERS,
    kill_grace_seconds: float = KILL_GRACE_SECONDS,
    thumbnails: ThumbnailPlan | None = None,
    thumbs_dir: Path | None = None,
) -> EncodeResult:
    """Encode the ladder into out_dir/<rendition>/; on_progress gets percent (0..100).

    Raises JobCancelledError when `cancel` is set, TransientJobError when FFmpeg was killed
    or the disk is full, PermanentJobError (with FFmpeg's last error lines) otherwise.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    if thumbs_dir is not None:
        (thumbs_dir / FRAMES_DIR).mkdir(parents=True, exist_ok=True)
    command = ffmpeg_command(
        plan,
        source,
        out_dir,
        part=part,
        preset=preset,
        ffmpeg=ffmpeg,
        allowed_demuxers=allowed_demuxers,
        thumbnails=thumbnails,
        thumbs_dir=thumbs_dir.resolve() if thumbs_dir is not None else None,
    )
    duration = encoded_duration(plan, part)
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SVT-AV1 logs to stderr past FFmpeg's -loglevel; errors only, like FFmpeg's.
        env={**os.environ, "SVT_LOG": "1"},
    )
    stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
    readers = [
        threading.Thread(target=_collect_lines, args=(process, stderr_tail), daemon=True),
        threading.Thread(
            target=_stop_when_cancelled,
            args=(process, cancel, kill_grace_seconds),
            daemon=True,
        ),
    ]
    for reader in readers:
        reader.start()
    encoded_us = 0
    try:
        assert process.stdout is not None  # set by stdout=PIPE
        for update in parse_progress(process.stdout):
            if update.out_time_us is not None:
                encoded_us = max(encoded_us, update.out_time_us)
            percent = 100.0 if update.finished else progress_percent(encoded_us, duration)
            on_progress(percent)
        returncode = process.wait()
    finally:
        if process.poll() is None:
            _terminate(process, kill_grace_seconds)
        for reader in readers:
            reader.join(timeout=kill_grace_seconds)
    if cancel.is_set():
        raise JobCancelledError()
    _raise_for_failure(returncode, list(stderr_tail))
    encoded_seconds = encoded_us / 1e6
    _check_complete(encoded_seconds, duration, list(stderr_tail))
    return EncodeResult(
        out_dir=out_dir,
        encoded_seconds=encoded_seconds,
        elapsed_seconds=time.monotonic() - started,
    )


def _collect_lines(process: subprocess.Popen[str], tail: deque[str]) -> None:
    assert process.stderr is not None  # set by stderr=PIPE
    for line in process.stderr:
        if line.strip():
            tail.append(line.rstrip())


def _stop_when_cancelled(
    process: subprocess.Popen[str], cancel: threading.Event, grace: float
) -> None:
    while process.poll() is None:
        if cancel.wait(timeout=0.2):
            _terminate(process, grace)
            return


def _terminate(process: subprocess.Popen[str], grace: float) -> None:
    """SIGTERM lets FFmpeg close its files; SIGKILL if it does not within the grace period."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _raise_for_failure(returncode: int, stderr_tail: list[str]) -> None:
    if returncode == 0:
        return
    tail = " | ".join(stderr_tail[-5:]) or "no output"
    if any("No space left on device" in line for line in stderr_tail):
        raise TransientJobError("DiskFull", f"no space left for the encode: {tail}")
    if returncode < 0:
        raise TransientJobError("EncoderKilled", f"ffmpeg was killed by signal {-returncode}")
    raise PermanentJobError("EncodeFailed", f"ffmpeg exited with {returncode}: {tail}")


def _check_complete(
    encoded_seconds: float, duration_seconds: float, stderr_tail: list[str]
) -> None:
    """FFmpeg exits 0 on a source cut short mid-stream; a shorter output gives that away."""
    tolerance = max(TRUNCATION_TOLERANCE_SECONDS, duration_seconds * TRUNCATION_TOLERANCE_SHARE)
    if encoded_seconds < duration_seconds - tolerance:
        tail = " | ".join(stderr_tail[-3:]) or "no errors reported"
        raise PermanentJobError(
            "TruncatedSource",
            f"only {encoded_seconds:.1f} s of {duration_seconds:.1f} s could be decoded: {tail}",
        )
