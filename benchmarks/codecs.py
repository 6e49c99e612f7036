"""The codecs benchmark: what H.264, HEVC and AV1 cost in encode time and save in bytes.

On one generated source (`media.test_pattern`: 1080p30 testsrc2 with a tone,
`--codecs-duration`, default 20 s), the default ladder (`plan_ladder`'s rungs, 240p..1080p
here), the workers' default preset, fMP4 segments for every codec (so packaging is equal),
each variant the worker's own command (`encode.ffmpeg_command`):
  (a) (b) (c) the ladder in H.264, HEVC, AV1, with audio, on the bundled FFmpeg (the
      workers' default);
then the top rung alone, no audio, on a shorter source of the same kind
(`--codecs-choice-duration`, default 10 s), to choose the AV1 encoder and the FFmpeg build:
  (d) (e) (f) H.264, HEVC, AV1 (libsvtav1) on the bundled FFmpeg;
  (g) AV1 with libaom-av1 (`-cpu-used 8 -row-mt 1`, its realtime-ish speed) instead;
  (h) (i) (j) H.264, HEVC, AV1 on Debian's FFmpeg.
Per variant: wall and CPU time of the FFmpeg run, bytes of every video rendition (init plus
segments, as its playlist lists them), and the SSIM ("All", FFmpeg's `ssim` filter) of the
top rung against the source. Rounds rotate the order, so drifting load hits all alike.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import media
from benchmarks.measure import run_measured
from benchmarks.registry import Context
from benchmarks.report import MIB, Report, Sample, Variant
from benchmarks.worker import check_renditions, ffmpeg_version, fresh, load_average, machine
from kube_transcode.codecs import VideoCodec
from kube_transcode.ladder import (
    AUDIO_RENDITION_NAME,
    HlsOptions,
    LadderPlan,
    SourceInfo,
    VideoOptions,
    X264Preset,
    plan_ladder,
)
from kube_transcode_worker.encode import ffmpeg_command
from kube_transcode_worker.hls import MEDIA_PLAYLIST_NAME
from kube_transcode_worker.playlists import parse_media_playlist
from kube_transcode_worker.probe import probe_source

DEBIAN_FFMPEG = "/usr/bin/ffmpeg"
CODECS: tuple[VideoCodec, ...] = ("h264", "hevc", "av1")
ENCODERS: dict[VideoCodec, str] = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}
LIBAOM = "libaom-av1"
# libaom's fastest good-quality speed with row multithreading: its closest to SVT's presets.
LIBAOM_OPTIONS = ("-cpu-used", "8", "-row-mt", "1")
# Options of the worker's AV1 command that only SVT-AV1 knows (its preset and parameters).
SVT_ONLY_OPTIONS = ("-preset", "-svtav1-params")
# At least this share of the source's frames must be compared, or the SSIM is not the top
# rung's (a decode that stopped early would still print one).
MIN_FRAMES_COMPARED = 0.99

_SSIM_ALL = re.compile(r"\] SSIM .*All:([0-9.]+)")
_ENCODER_VERSIONS = (
    ("x264 core", re.compile(r"264 - core (\d+(?: r\d+)?)")),
    ("x265", re.compile(r"HEVC encoder version (\S+)")),
    ("SVT-AV1", re.compile(r"SVT-AV1 Encoder Lib (v\S+)")),
    ("libaom", re.compile(r"\[libaom-av1 @ [^\]]*\] (v\d\S*)")),
)


@dataclass(frozen=True)
class Encode:
    """One variant: its codec, the FFmpeg build, the whole ladder or the top rung alone."""

    key: str
    label: str
    codec: VideoCodec
    ffmpeg: str
    ladder: bool
    libaom: bool = False


@dataclass(frozen=True)
class Outcome:
    """What one run of a variant produced, beside its times."""

    rendition_bytes: dict[str, int]  # video renditions: init + segments
    audio_bytes: int
    ssim: float
    frames: int

    @property
    def video_bytes(self) -> int:
        return sum(self.rendition_bytes.values())


def parse_ssim_all(stderr: str) -> float:
    """The "All" SSIM of FFmpeg's ssim filter summary line (the last, when there are more)."""
    found = _SSIM_ALL.findall(stderr)
    if not found:
        raise ValueError("no SSIM summary line in FFmpeg's output")
    return float(found[-1])


def count_ssim_frames(stats: str) -> int:
    """Frames the ssim filter compared: one `n:` line each in its stats_file."""
    return sum(1 for line in stats.splitlines() if line.startswith("n:"))


def with_libaom(command: Sequence[str]) -> list[str]:
    """The worker's libsvtav1 command with libaom-av1 instead; rates, GOP, muxing unchanged."""
    args = list(command)
    try:
        at = args.index("libsvtav1")
    except ValueError:
        raise ValueError("not a libsvtav1 command") from None
    if not args[at - 1].startswith("-c:v"):
        raise ValueError(f"libsvtav1 follows {args[at - 1]!r}, not -c:v")
    out = args[:at]
    out += [LIBAOM, *LIBAOM_OPTIONS]
    rest = args[at + 1 :]
    skip = False
    for arg in rest:
        if skip:
            skip = False
        elif arg.split(":", 1)[0] in SVT_ONLY_OPTIONS:
            skip = True
        else:
            out.append(arg)
    return out


def encoder_versions_from(output: str) -> str:
    """What one-frame encodes printed, as "x264 core 165, x265 4.3+49, SVT-AV1 v4.2.0"."""
    found = []
    for name, pattern in _ENCODER_VERSIONS:
        match = pattern.search(output)
        if match:
            found.append(f"{name} {match.group(1)}")
    return ", ".join(found)


def encoder_versions(ffmpeg: str) -> str:
    """The encoder libraries a build carries: each encodes one tiny frame and says."""
    printed = []
    for encoder in (*ENCODERS.values(), LIBAOM):
        result = subprocess.run(
            [
                ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "verbose",
                "-f", "lavfi", "-i", "testsrc2=size=128x128:rate=30:duration=0.1",
                "-frames:v", "1", "-c:v", encoder, "-f", "matroska", "pipe:1",
            ],
            capture_output=True,
            check=False,
        )  # fmt: skip
        # x264 writes its version into the stream (an SEI), the others say it on stderr (a
        # one-frame libaom encode may fail after saying it: only what it printed counts).
        printed += [result.stdout.decode("latin-1"), result.stderr.decode(errors="replace")]
    return encoder_versions_from("\n".join(printed))


def ssim_filter(width: int, height: int, stats_file: str) -> str:
    """Rendition (input 0) against the source (input 1) scaled to the rendition's size with
    FFmpeg's default scaler (bicubic, as the encode's scale filter): SSIM at the rung's size.
    Both timelines start at zero (HLS output is shifted); the shorter one ends the compare."""
    return (
        "[0:v]setpts=PTS-STARTPTS,setsar=1,format=yuv420p[dist];"
        f"[1:v]setpts=PTS-STARTPTS,scale=w={width}:h={height},setsar=1,format=yuv420p[ref];"
        f"[dist][ref]ssim=stats_file={stats_file}:shortest=1"
    )


def rendition_files(rendition_dir: Path) -> list[Path]:
    """The files a player reads, in order: the init segment (fMP4), then the segments."""
    playlist = parse_media_playlist((rendition_dir / MEDIA_PLAYLIST_NAME).read_text())
    uris = ([playlist.init_uri] if playlist.init_uri else []) + [
        segment.uri for segment in playlist.segments
    ]
    return [rendition_dir / uri for uri in uris]


def rendition_bytes(rendition_dir: Path) -> int:
    return sum(path.stat().st_size for path in rendition_files(rendition_dir))


def top_rung_ssim(
    rendition_dir: Path, source: Path, width: int, height: int, work: Path
) -> tuple[float, int]:
    """(SSIM All, frames compared) of a rendition as played: its init and segments joined."""
    fresh(work)
    files = rendition_files(rendition_dir)
    joined = work / f"rendition{files[0].suffix}"  # .mp4 (the init first) or .ts
    with joined.open("wb") as out:
        for path in files:
            out.write(path.read_bytes())
    result = subprocess.run(
        [
            media.FFMPEG, "-hide_banner", "-nostdin", "-nostats",
            "-i", str(joined), "-i", str(source.resolve()),
            "-filter_complex", ssim_filter(width, height, "ssim.log"),
            "-an", "-f", "null", "-",
        ],
        cwd=work,  # the stats file by a relative name: no escaping of a path in the graph
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"ssim of {rendition_dir} failed: {result.stderr[-2000:]}")
    return parse_ssim_all(result.stderr), count_ssim_frames((work / "ssim.log").read_text())


class CodecsBenchmark:
    name = "codecs"
    summary = "H.264 vs HEVC vs AV1 on the default ladder: encode time, bytes, top-rung SSIM"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--codecs-duration",
            type=int,
            default=20,
            metavar="SECONDS",
            help="length of the generated 1080p30 source of the ladders (default 20)",
        )
        group.add_argument(
            "--codecs-choice-duration",
            type=int,
            default=10,
            metavar="SECONDS",
            help="length of the source of the encoder and build choice, top rung (default 10)",
        )

    def unavailable(self, context: Context) -> str | None:
        for ffmpeg in (media.FFMPEG, DEBIAN_FFMPEG):
            if shutil.which(ffmpeg) is None:
                return f"no {ffmpeg}"
            listed = subprocess.run(
                [ffmpeg, "-hide_banner", "-encoders"], capture_output=True, text=True, check=False
            ).stdout
            lacking = [e for e in (*ENCODERS.values(), LIBAOM) if f" {e} " not in listed]
            if lacking:
                return f"{ffmpeg} has no {', '.join(lacking)}"
        return None

    def run(self, context: Context) -> Report:
        options = context.options
        sources = {
            ladder: media.test_pattern(context.cache_dir, seconds)
            for ladder, seconds in ((True, options.codecs_duration),
                                    (False, options.codecs_choice_duration))
        }  # fmt: skip
        infos = {ladder: probe_source(path) for ladder, path in sources.items()}
        info = infos[True]
        encodes = variants()
        report = Report(
            benchmark=self.name,
            title=f"Codecs: {options.codecs_duration} s {info.width}x{info.height} "
            f"{float(info.fps):g} fps source, default ladder, fMP4, preset {options.preset}; "
            f"encoder and build on the top rung of a {options.codecs_choice_duration} s one",
            variants=[Variant(e.key, e.label) for e in encodes],
            environment={
                **machine(),
                "encoders (bundled)": encoder_versions(media.FFMPEG),
                "debian ffmpeg": ffmpeg_version(DEBIAN_FFMPEG),
                "encoders (debian)": encoder_versions(DEBIAN_FFMPEG),
            },
        )
        outcomes: dict[str, list[Outcome]] = {e.key: [] for e in encodes}
        with tempfile.TemporaryDirectory(prefix="bench-codecs-") as tmp:
            work = Path(tmp)
            for round_ in range(options.repeat):
                shift = round_ % len(encodes)
                for encode in encodes[shift:] + encodes[:shift]:
                    print(f"  round {round_ + 1}/{options.repeat}: ({encode.key}) ...", flush=True)
                    plan = codec_plan(infos[encode.ladder], encode.codec, ladder=encode.ladder)
                    source = sources[encode.ladder]
                    sample, outcome = run_variant(encode, plan, source, work, options.preset)
                    report.variant(encode.key).samples.append(sample)
                    outcomes[encode.key].append(outcome)
                    print(
                        f"  ({encode.key}) {sample.wall_seconds:.1f} s, "
                        f"{outcome.video_bytes / MIB:.2f} MiB, SSIM {outcome.ssim:.4f}",
                        flush=True,
                    )
        report.environment["load average after"] = load_average()
        summarize(report, encodes, outcomes, info)
        return report


BENCHMARK = CodecsBenchmark()


def variants() -> list[Encode]:
    bundled, debian = media.FFMPEG, DEBIAN_FFMPEG
    ladder = [
        Encode(key, f"{codec} ladder ({ENCODERS[codec]}), bundled FFmpeg", codec, bundled, True)
        for key, codec in zip("abc", CODECS, strict=True)
    ]
    top = [
        Encode(key, f"{codec} top rung ({ENCODERS[codec]}), bundled FFmpeg", codec, bundled, False)
        for key, codec in zip("def", CODECS, strict=True)
    ]
    aom = Encode("g", f"av1 top rung ({LIBAOM}), bundled FFmpeg", "av1", bundled, False, True)
    on_debian = [
        Encode(key, f"{codec} top rung ({ENCODERS[codec]}), Debian FFmpeg", codec, debian, False)
        for key, codec in zip("hij", CODECS, strict=True)
    ]
    return [*ladder, *top, aom, *on_debian]


def codec_plan(info: SourceInfo, codec: VideoCodec, *, ladder: bool) -> LadderPlan:
    """The default ladder in one codec, fMP4; or its top rung alone without audio."""
    plan = plan_ladder(
        info, hls=HlsOptions(segment_format="fmp4"), video=VideoOptions(codecs=(codec,))
    )
    if ladder:
        return plan
    return plan.model_copy(update={"renditions": plan.renditions[:1], "audio": None})


def run_variant(
    encode: Encode, plan: LadderPlan, source: Path, work: Path, preset: X264Preset
) -> tuple[Sample, Outcome]:
    out = work / encode.key
    fresh(out)
    command = ffmpeg_command(plan, source, out, preset=preset, ffmpeg=encode.ffmpeg)
    if encode.libaom:
        command = with_libaom(command)
    sample = run_measured(command, log=work / f"{encode.key}.log")
    check_renditions(plan, out)
    top = plan.renditions[0]
    ssim, frames = top_rung_ssim(out / top.name, source, top.width, top.height, work / "ssim")
    expected = plan.source.duration_seconds * float(plan.source.fps)
    if frames < expected * MIN_FRAMES_COMPARED:
        raise RuntimeError(f"({encode.key}) SSIM over {frames} frames of {expected:.0f}")
    audio_dir = out / AUDIO_RENDITION_NAME
    outcome = Outcome(
        rendition_bytes={r.name: rendition_bytes(out / r.name) for r in plan.renditions},
        audio_bytes=rendition_bytes(audio_dir) if plan.audio else 0,
        ssim=ssim,
        frames=frames,
    )
    shutil.rmtree(out)
    return sample, outcome


@dataclass(frozen=True)
class Figures:
    """Medians over the rounds of one variant."""

    wall: float
    cpu: float
    bytes: float
    ssim: float
    rendition_bytes: dict[str, float]
    audio_bytes: float


def figures(variant: Variant, runs: list[Outcome]) -> Figures:
    return Figures(
        wall=variant.wall,
        cpu=variant.cpu,
        bytes=statistics.median(run.video_bytes for run in runs),
        ssim=statistics.median(run.ssim for run in runs),
        rendition_bytes={
            name: statistics.median(run.rendition_bytes[name] for run in runs)
            for name in runs[0].rendition_bytes
        },
        audio_bytes=statistics.median(run.audio_bytes for run in runs),
    )


def relative(fig: Figures, base: Figures) -> str:
    """E.g. "0.68x the bytes, SSIM 0.9710 vs 0.9680" against H.264's figures."""
    return f"{fig.bytes / base.bytes:.2f}x the bytes, SSIM {fig.ssim:.4f} vs {base.ssim:.4f}"


def summarize(
    report: Report, encodes: list[Encode], outcomes: dict[str, list[Outcome]], info: SourceInfo
) -> None:
    fig = {e.key: figures(report.variant(e.key), outcomes[e.key]) for e in encodes}
    for key in ("b", "c"):
        report.ratio(f"{key}/a", explanation="ladder encode vs H.264's")
        report.ratio(f"{key}/a", measure="cpu")
    report.ratio("g/f", explanation="AV1 top rung: libaom-av1 vs libsvtav1")
    report.ratio("g/f", measure="cpu")
    for debian, bundled in (("h", "d"), ("i", "e"), ("j", "f")):
        report.ratio(f"{debian}/{bundled}", explanation="top rung: Debian's FFmpeg vs bundled")
        report.ratio(f"{debian}/{bundled}", measure="cpu")
    h264 = fig["a"]
    report.notes += [
        f"{codec}: {relative(fig[key], h264)}, encode {fig[key].wall / h264.wall:.2f}x the "
        f"wall time ({fig[key].cpu / h264.cpu:.2f}x the CPU)"
        for key, codec in (("b", "hevc"), ("c", "av1"))
    ]
    svt, aom = fig["f"], fig["g"]
    report.notes.append(
        f"AV1 top rung: {LIBAOM} {aom.wall / svt.wall:.2f}x libsvtav1's wall time, "
        f"{aom.bytes / svt.bytes:.2f}x its bytes, SSIM {aom.ssim:.4f} vs {svt.ssim:.4f}"
    )
    report.notes += [
        f"{codec} top rung on Debian's FFmpeg: {fig[debian].wall / fig[bundled].wall:.2f}x the "
        f"bundled one's wall time, SSIM {fig[debian].ssim:.4f} vs {fig[bundled].ssim:.4f}"
        for codec, debian, bundled in (("h264", "h", "d"), ("hevc", "i", "e"), ("av1", "j", "f"))
    ]
    report.notes.append(
        "bytes: video renditions only, each its init segment plus segments as its playlist lists "
        f"them (the AAC audio rendition, the same for every codec, {h264.audio_bytes / MIB:.2f} "
        "MiB, left out); SSIM: the top rung's init and segments joined and decoded, against the "
        "source scaled to the rung's size with FFmpeg's default (bicubic) scaler, computed at "
        "the rung's size, FFmpeg's ssim filter 'All' (bundled FFmpeg); figures are medians over "
        "the rounds"
    )
    report.sections += [
        ladder_table(report, fig),
        renditions_table(fig),
        choice_table(report, fig),
    ]
    report.details = {
        "source": {
            "width": info.width,
            "height": info.height,
            "fps": float(info.fps),
            "seconds": info.duration_seconds,
        },
        "runs": {
            key: [
                {
                    "rendition_bytes": run.rendition_bytes,
                    "audio_bytes": run.audio_bytes,
                    "ssim": run.ssim,
                    "frames_compared": run.frames,
                }
                for run in runs
            ]
            for key, runs in outcomes.items()
        },
    }


def ladder_table(report: Report, fig: dict[str, Figures]) -> str:
    h264 = fig["a"]
    lines = [
        "### The default ladder per codec (bundled FFmpeg)",
        "",
        "| codec (encoder) | encode wall s | CPU s | video MiB | bytes vs H.264 | "
        "top rung SSIM | vs H.264 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for key, codec in zip("abc", CODECS, strict=True):
        f = fig[key]
        low, high = report.variant(key).spread()
        lines.append(
            f"| {codec} ({ENCODERS[codec]}) | {f.wall:.1f} ({low:.1f}-{high:.1f}) | {f.cpu:.1f} | "
            f"{f.bytes / MIB:.2f} | {f.bytes / h264.bytes:.2f}x | {f.ssim:.4f} | "
            f"{f.ssim - h264.ssim:+.4f} |"
        )
    return "\n".join(lines) + "\n"


def renditions_table(fig: dict[str, Figures]) -> str:
    names = list(fig["a"].rendition_bytes)  # H.264's: the rungs' own names
    lines = [
        "### Bytes per rendition (init + segments, KiB)",
        "",
        "| rung | h264 | hevc | vs h264 | av1 | vs h264 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for index, name in enumerate(names):
        base = fig["a"].rendition_bytes[name]
        hevc = list(fig["b"].rendition_bytes.values())[index]
        av1 = list(fig["c"].rendition_bytes.values())[index]
        lines.append(
            f"| {name} | {base / 1024:.0f} | {hevc / 1024:.0f} | {hevc / base:.2f}x | "
            f"{av1 / 1024:.0f} | {av1 / base:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def choice_table(report: Report, fig: dict[str, Figures]) -> str:
    lines = [
        "### Encoder and build: the top rung alone, no audio",
        "",
        "| variant | wall s | CPU s | MiB | SSIM |",
        "|---|---:|---:|---:|---:|",
    ]
    for key in "defghij":
        f = fig[key]
        lines.append(
            f"| ({key}) {report.variant(key).label} | {f.wall:.1f} | {f.cpu:.1f} | "
            f"{f.bytes / MIB:.2f} | {f.ssim:.4f} |"
        )
    return "\n".join(lines) + "\n"
