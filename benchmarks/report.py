"""Results: samples per variant, ratios against targets, and their JSON and Markdown forms."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

MIB = 1024 * 1024


@dataclass(frozen=True)
class Sample:
    """One measured run."""

    wall_seconds: float
    cpu_seconds: float
    peak_rss_bytes: int


@dataclass
class Variant:
    """One way of doing the work, measured `len(samples)` times."""

    key: str  # short, used in ratio names: "a", "b", "c"
    label: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def wall(self) -> float:
        """Median wall time: one outlier run on a shared machine does not move it."""
        return statistics.median(s.wall_seconds for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)

    @property
    def peak_rss_bytes(self) -> int:
        return max(s.peak_rss_bytes for s in self.samples)

    def spread(self) -> tuple[float, float]:
        walls = [s.wall_seconds for s in self.samples]
        return min(walls), max(walls)


@dataclass(frozen=True)
class Ratio:
    name: str  # "a/b"
    value: float
    target: float | None = None  # the ratio must not exceed it
    explanation: str = ""
    measure: Literal["wall", "cpu"] = "wall"

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.value <= self.target


@dataclass
class Report:
    benchmark: str
    title: str
    variants: list[Variant]
    ratios: list[Ratio] = field(default_factory=list)
    environment: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Markdown blocks printed after the notes (tables a benchmark computes).
    sections: list[str] = field(default_factory=list)
    # Machine-readable figures beyond the samples, kept in the JSON only.
    details: dict[str, Any] = field(default_factory=dict)

    def variant(self, key: str) -> Variant:
        return next(v for v in self.variants if v.key == key)

    def ratio(
        self,
        name: str,
        target: float | None = None,
        explanation: str = "",
        measure: Literal["wall", "cpu"] = "wall",
    ) -> Ratio:
        """Median wall (or CPU) time of one variant over another's, e.g. "a/b"."""
        top, bottom = (self.variant(key) for key in name.split("/"))
        value = top.wall / bottom.wall if measure == "wall" else top.cpu / bottom.cpu
        ratio = Ratio(name, value, target, explanation, measure)
        self.ratios.append(ratio)
        return ratio


def to_json(report: Report) -> dict[str, Any]:
    data = asdict(report)
    for variant, raw in zip(report.variants, data["variants"], strict=True):
        raw["median_wall_seconds"] = variant.wall
        raw["median_cpu_seconds"] = variant.cpu
        raw["peak_rss_bytes"] = variant.peak_rss_bytes
    for ratio, raw in zip(report.ratios, data["ratios"], strict=True):
        raw["met"] = ratio.met
    return data


def to_markdown(report: Report) -> str:
    lines = [f"## {report.title}", ""]
    lines += [
        "| variant | wall s (median) | min-max | CPU s | CPU/wall | peak RSS MiB | runs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for v in report.variants:
        low, high = v.spread()
        lines.append(
            f"| ({v.key}) {v.label} | {v.wall:.1f} | {low:.1f}-{high:.1f} | {v.cpu:.1f} | "
            f"{v.cpu / v.wall:.2f} | {v.peak_rss_bytes / MIB:.0f} | {len(v.samples)} |"
        )
    if report.ratios:
        lines += ["", "| ratio (of medians) | value | target | met |", "|---|---:|---:|---|"]
        for r in report.ratios:
            target = f"<= {r.target:.2f}" if r.target is not None else "-"
            met = {True: "yes", False: "**no**", None: "-"}[r.met]
            label = f"{r.name} {r.measure}" + (f" ({r.explanation})" if r.explanation else "")
            lines.append(f"| {label} | {r.value:.3f} | {target} | {met} |")
    if report.environment:
        env = ", ".join(f"{key}: {value}" for key, value in report.environment.items())
        lines += ["", f"Environment: {env}"]
    lines += [f"- {note}" for note in report.notes] if report.notes else []
    for section in report.sections:
        lines += ["", section.rstrip("\n")]
    return "\n".join(lines) + "\n"


def write(report: Report, out_dir: Path, stamp: str) -> list[Path]:
    """<name>-<stamp>.json/.md, plus <name>-latest.* copies that tools can read blindly."""
    out_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps(to_json(report), indent=2, default=str) + "\n"
    markdown = to_markdown(report)
    written = []
    for stem in (f"{report.benchmark}-{stamp}", f"{report.benchmark}-latest"):
        for suffix, content in ((".json", text), (".md", markdown)):
            path = out_dir / f"{stem}{suffix}"
            path.write_text(content)
            written.append(path)
    return written
