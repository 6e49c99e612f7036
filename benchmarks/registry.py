"""What a benchmark is to the runner: a name, its options, whether it can run here, and a run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from benchmarks.report import Report


@dataclass(frozen=True)
class Context:
    """What the runner gives every benchmark."""

    root: Path  # the checkout
    out_dir: Path  # bench-results/
    cache_dir: Path  # generated media, kept between runs
    options: argparse.Namespace


class Benchmark(Protocol):
    name: str
    summary: str

    def add_arguments(self, group: argparse._ArgumentGroup) -> None:
        """Options of this benchmark; names must not clash with other benchmarks' options."""

    def unavailable(self, context: Context) -> str | None:
        """Why it cannot run here (then it is skipped), or None."""

    def run(self, context: Context) -> Report: ...
