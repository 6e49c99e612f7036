"""kt-devstack: run the local stack (real control plane, RabbitMQ, MinIO; no containers)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .stack import Stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kt-devstack", description=__doc__)
    parser.add_argument("--state", type=Path, default=Path(".local"), help="state folder")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start every process (harmless when already running)")
    up.add_argument(
        "--no-release",
        action="store_true",
        help="only the stack: skip installing the chart and transcoding the example",
    )
    sub.add_parser("down", help="stop every process")
    sub.add_parser("status", help="list the processes and endpoints")
    interrupt = sub.add_parser(
        "interrupt", help="simulate a spot interruption: drain a node with grace, then remove it"
    )
    interrupt.add_argument("node")
    sub.add_parser("restore-nodes", help="bring back nodes removed by an interruption")
    args = parser.parse_args(argv)
    stack = Stack.at(args.state)

    if args.command == "up":
        start = time.monotonic()
        stack.up()
        print(f"local stack up in {time.monotonic() - start:.0f} s")
        if not args.no_release:
            _release(stack)
        print(f"  use it:  . {stack.layout.env_file}   then   kubectl get nodes")
        return 0
    if args.command == "interrupt":
        return stack.interrupt(args.node)
    if args.command == "restore-nodes":
        stack.restore_nodes()
        return 0
    if args.command == "down":
        stack.down()
        print("local stack stopped")
        return 0
    failed = 0
    for name, pid, log in stack.status():
        state = f"running (pid {pid})" if pid else "stopped"
        failed += pid is None
        print(f"  {name:<24} {state:<22} {log}")
    if stack.layout.env_file.exists():
        for key, value in stack.env().items():
            if key.startswith("KT_") and "SECRET" not in key and "URL" in key:
                print(f"  {key}={value.split('@')[-1]}")
    return 1 if failed else 0


def _release(stack: Stack) -> None:
    from . import release

    start = time.monotonic()
    release.ensure_buckets(stack)
    release.install_chart(stack)
    print(f"chart installed with helm in {time.monotonic() - start:.0f} s")
    start = time.monotonic()
    status = release.transcode_example(stack)
    outputs = status.get("outputs", {})
    print(f"example TranscodeJob succeeded in {time.monotonic() - start:.0f} s")
    print(f"  master playlist: {outputs.get('masterPlaylist')}")
    print(f"  over HTTP:       {outputs.get('masterPlaylistUrl')}")


if __name__ == "__main__":
    sys.exit(main())
