"""FFmpeg builds compared on the worker's ladder command: Debian's against others given.

    python -m benchmarks ffmpeg --ffmpeg-alt /path/to/ffmpeg [--ffmpeg-alt ...]

Each build first has to show it supports everything `encode.ffmpeg_command` uses, then they
run the same command in alternation (so drifting load on a shared machine hits all alike).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from benchmarks import media
from benchmarks.registry import Context
from benchmarks.report import Report, Variant
from benchmarks.worker import RUNGS, SEGMENT_SECONDS, ffmpeg_version, machine, single_ladder
from kube_transcode.ladder import NAMED_RUNGS, HlsOptions, plan_ladder
from kube_transcode_worker.probe import probe_source

# (what to ask the binary, what its answer must contain) for every feature the ladder uses.
REQUIRED: tuple[tuple[tuple[str, ...], str], ...] = (
    (("-encoders",), " libx264 "),
    (("-encoders",), " aac "),
    (("-muxers",), " hls "),
    (("-h", "muxer=hls"), "-var_stream_map"),
    (("-h", "muxer=hls"), "independent_segments"),
    (("-filters",), " split "),
    (("-filters",), " scale "),
    (("-filters",), " setsar "),
    (("-h", "full"), "-force_key_frames"),
    (("-h", "full"), "-format_whitelist"),
    (("-h", "full"), "-stats_period"),
)


def missing_features(ffmpeg: str) -> list[str]:
    answers: dict[tuple[str, ...], str] = {}
    missing = []
    for question, needle in REQUIRED:
        if question not in answers:
            answers[question] = subprocess.run(
                [ffmpeg, "-hide_banner", *question], capture_output=True, text=True, check=False
            ).stdout
        if needle not in answers[question]:
            missing.append(f"{' '.join(question)}: {needle.strip()}")
    return missing


class FfmpegBuildsBenchmark:
    name = "ffmpeg"
    summary = "Debian's FFmpeg vs other builds (--ffmpeg-alt) on the ladder command"

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        group.add_argument(
            "--ffmpeg-alt",
            action="append",
            default=[],
            metavar="PATH",
            help="another ffmpeg binary to compare (e.g. imageio-ffmpeg's); repeatable",
        )
        group.add_argument(
            "--builds-duration",
            type=int,
            default=20,
            metavar="SECONDS",
            help="source length for the builds comparison (default 20)",
        )

    def unavailable(self, context: Context) -> str | None:
        if not context.options.ffmpeg_alt:
            return "no --ffmpeg-alt binary to compare with"
        return None

    def run(self, context: Context) -> Report:
        options = context.options
        builds = {"debian": media.FFMPEG}
        builds.update({f"alt{i + 1}": path for i, path in enumerate(options.ffmpeg_alt)})
        report = Report(
            benchmark=self.name,
            title=f"FFmpeg builds: {options.builds_duration} s 1080p30 source, {len(RUNGS)}-rung "
            f"ladder, x264 {options.preset}",
            variants=[
                Variant(key, f"{ffmpeg_version(path)} ({path})") for key, path in builds.items()
            ],
            environment=machine(),
        )
        for path in builds.values():
            missing = missing_features(path)
            if missing:
                raise RuntimeError(f"{path} lacks what the ladder needs: {'; '.join(missing)}")
        report.notes.append("every build supports all the ladder command uses (checked first)")
        source = media.test_pattern(context.cache_dir, options.builds_duration)
        plan = plan_ladder(
            probe_source(source),
            [NAMED_RUNGS[name] for name in RUNGS],
            hls=HlsOptions(segment_seconds=SEGMENT_SECONDS),
        )
        with tempfile.TemporaryDirectory(prefix="bench-ffmpeg-") as tmp:
            for round_ in range(options.repeat):
                for key, path in builds.items():
                    print(f"  round {round_ + 1}/{options.repeat}: {key} ...", flush=True)
                    out = Path(tmp) / key
                    sample = single_ladder(plan, source, out, options.preset, ffmpeg=path)
                    report.variant(key).samples.append(sample)
        for key in builds:
            if key != "debian":
                report.ratio(f"{key}/debian")
                report.ratio(f"{key}/debian", measure="cpu")
        return report


BENCHMARK = FfmpegBuildsBenchmark()
