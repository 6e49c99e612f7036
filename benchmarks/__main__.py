"""`python -m benchmarks [NAME ...]`: run the named benchmarks, or every one that can run here.

Writes bench-results/<name>-<time>.{json,md} and <name>-latest.{json,md}, prints each table.
Exit status 1 when a benchmark named or run failed (targets missed are reported, not failed:
a benchmark measures, CI's tests judge).
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

from benchmarks import report as reports
from benchmarks.catalog import BENCHMARKS, by_name
from benchmarks.registry import Context
from kube_transcode.ladder import DEFAULT_X264_PRESET, X264Preset

ROOT = Path(__file__).resolve().parents[1]


def build_parser() -> argparse.ArgumentParser:
    names = ", ".join(f"{b.name} ({b.summary})" for b in BENCHMARKS)
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=f"Benchmarks: {names}."
    )
    parser.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default all)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each variant (default 1)")
    parser.add_argument("--preset", choices=get_args(X264Preset), default=DEFAULT_X264_PRESET)
    parser.add_argument("--out", type=Path, default=ROOT / "bench-results")
    parser.add_argument(
        "--cache", type=Path, default=None, help="generated media (default OUT/cache)"
    )
    for benchmark in BENCHMARKS:
        benchmark.add_arguments(parser.add_argument_group(f"{benchmark.name} benchmark"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    options = parser.parse_args(argv)
    known = by_name()
    if options.list:
        for benchmark in BENCHMARKS:
            print(f"{benchmark.name:<10} {benchmark.summary}")
        return 0
    unknown = [name for name in options.names if name not in known]
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; there are {', '.join(known)}")
    if options.repeat < 1:
        parser.error("--repeat must be at least 1")
    context = Context(
        root=ROOT,
        out_dir=options.out,
        cache_dir=options.cache or options.out / "cache",
        options=options,
    )
    chosen = [known[name] for name in options.names] or list(BENCHMARKS)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    failed = False
    for benchmark in chosen:
        why_not = benchmark.unavailable(context)
        if why_not:
            print(f"{benchmark.name}: skipped: {why_not}")
            # Asked for by name, it must run; "all" means all that can.
            failed = failed or benchmark.name in options.names
            continue
        print(f"{benchmark.name}: {benchmark.summary}", flush=True)
        try:
            result = benchmark.run(context)
        except Exception:
            traceback.print_exc()
            print(f"{benchmark.name}: FAILED", file=sys.stderr)
            failed = True
            continue
        written = reports.write(result, context.out_dir, stamp)
        print()
        print(reports.to_markdown(result))
        print("written: " + ", ".join(str(path) for path in written[:2]))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
