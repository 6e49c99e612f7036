"""Command line of the node agent.

    python -m kube_transcode_devstack.nodeagent [run] --kubeconfig PATH --state DIR \\
        --node spot-1:spot --node ondemand-1:ondemand [--pod-cidr-prefix 127.77] \\
        [--tls-cert-dir DIR --client-ca-file CA --kubelet-port 20250]
    python -m kube_transcode_devstack.nodeagent interrupt --kubeconfig PATH --node spot-1
    python -m kube_transcode_devstack.nodeagent cleanup --state DIR
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import urllib3

from .kube import KubeClient, load_kubeconfig
from .logserver import ServingTLS
from .nodes import DEFAULT_SPOT_TAINTS, host_info, parse_node_arg, parse_taint
from .process import kill_leftovers, pid_files_under
from .util import setup_logging

LOG = logging.getLogger("nodeagent")
COMMANDS = ("run", "interrupt", "cleanup")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m kube_transcode_devstack.nodeagent",
        description="A kubelet stand-in that runs Pods as local processes.",
    )
    p.add_argument("--log-level", default=os.environ.get("KT_NODEAGENT_LOG", "INFO"))
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="register nodes and run their pods (the default)")
    run.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    run.add_argument("--state", required=True, type=Path, help="pod dirs, logs and pid files")
    run.add_argument(
        "--node",
        action="append",
        required=True,
        metavar="NAME:TYPE[:INSTANCE-TYPE]",
        help="a node to serve; TYPE is spot or ondemand (repeatable)",
    )
    run.add_argument(
        "--pod-cidr-prefix",
        default="127.77",
        help="pods get IPs PREFIX.X.Y on the loopback interface (default 127.77)",
    )
    run.add_argument(
        "--spot-taint",
        action="append",
        metavar="KEY[=VALUE]:EFFECT",
        help=f"taint of spot nodes (repeatable; default {', '.join(DEFAULT_SPOT_TAINTS)})",
    )
    run.add_argument(
        "--taint",
        action="append",
        default=[],
        metavar="KEY[=VALUE]:EFFECT",
        help="an extra taint for every node (repeatable)",
    )
    run.add_argument(
        "--tls-cert-dir",
        type=Path,
        help="serve container logs with kubelet-<node>.crt/.key from this folder",
    )
    run.add_argument(
        "--client-ca-file",
        type=Path,
        help="the CA that signs the certificates of clients of the logs endpoint (the apiserver)",
    )
    run.add_argument(
        "--kubelet-port",
        type=int,
        default=0,
        help="the n-th --node serves its logs on this port + n (default: ports the kernel picks)",
    )
    run.add_argument("--cpu", help="cpu capacity per node (default: the host's cpu count)")
    run.add_argument("--memory", help="memory capacity per node (default: the host's memory)")
    run.add_argument("--max-pods", type=int, default=110)
    run.add_argument("--backoff-base", type=float, default=10.0, help="crash back-off start (s)")
    run.add_argument("--backoff-max", type=float, default=300.0, help="crash back-off cap (s)")
    run.add_argument("--tick", type=float, default=0.5, help="supervisor period (s)")
    run.add_argument("--lease-seconds", type=float, default=10.0, help="lease renewal period")
    run.add_argument(
        "--shutdown-grace",
        type=float,
        default=30.0,
        help="on agent shutdown, wait at most this long for containers to stop (s)",
    )

    it = sub.add_parser("interrupt", help="simulate a spot interruption of a node")
    it.add_argument("--kubeconfig", default=os.environ.get("KUBECONFIG"))
    it.add_argument("--node", required=True)
    it.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="delete the node after this long even if pods remain (s)",
    )

    cl = sub.add_parser("cleanup", help="kill container processes left by a dead agent")
    cl.add_argument("--state", required=True, type=Path)
    return p


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    args = list(sys.argv[1:] if argv is None else argv)
    first = next((a for a in args if not a.startswith("-")), None)
    if first not in COMMANDS and not any(a in ("-h", "--help") for a in args[:1]):
        # `run` is the default: `nodeagent --kubeconfig ... --node ...`
        idx = 0
        while idx < len(args) and args[idx].startswith("--log-level"):
            idx += 1 if "=" in args[idx] else 2
        args.insert(idx, "run")
    return _parser().parse_args(args)


def _run(ns: argparse.Namespace) -> int:
    from .agent import NodeAgent

    spot_taints = tuple(ns.spot_taint) if ns.spot_taint else DEFAULT_SPOT_TAINTS
    for t in (*spot_taints, *ns.taint):
        parse_taint(t)
    nodes = [parse_node_arg(n, spot_taints, tuple(ns.taint)) for n in ns.node]
    names = [n.name for n in nodes]
    if len(set(names)) != len(names):
        raise SystemExit(f"duplicate --node names: {names}")
    if (ns.tls_cert_dir is None) != (ns.client_ca_file is None):
        raise SystemExit("--tls-cert-dir and --client-ca-file go together")
    serving = (
        ServingTLS(ns.tls_cert_dir.resolve(), ns.client_ca_file.resolve())
        if ns.tls_cert_dir is not None and ns.client_ca_file is not None
        else None
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        LOG.info("received signal %d, shutting down", signum)
        stop.set()

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)  # probes skip TLS checks
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    client = KubeClient(load_kubeconfig(ns.kubeconfig), stop=stop)
    agent = NodeAgent(
        client,
        nodes,
        ns.state.resolve(),
        host=host_info(ns.cpu, ns.memory, ns.max_pods),
        ip_prefix=ns.pod_cidr_prefix,
        backoff_base=ns.backoff_base,
        backoff_cap=ns.backoff_max,
        tick=ns.tick,
        lease_every=ns.lease_seconds,
        shutdown_grace=ns.shutdown_grace,
        agent_id=socket.gethostname()[:63],
        serving=serving,
        kubelet_port=ns.kubelet_port,
    )
    # SIGHUP: new capacity arrived after a spot interruption; register the missing nodes again.
    signal.signal(signal.SIGHUP, lambda *_: agent.restore_requested.set())
    agent.run_forever()
    return 0


def _interrupt(ns: argparse.Namespace) -> int:
    from .interrupt import interrupt

    client = KubeClient(load_kubeconfig(ns.kubeconfig))
    return interrupt(client, ns.node, timeout=ns.timeout)


def main(argv: Sequence[str] | None = None) -> int:
    ns = parse_args(argv)
    setup_logging(ns.log_level)
    if ns.command == "run":
        return _run(ns)
    if ns.command == "interrupt":
        return _interrupt(ns)
    n = kill_leftovers(pid_files_under(ns.state.resolve()))
    LOG.info("killed %d leftover process(es)", n)
    return 0
