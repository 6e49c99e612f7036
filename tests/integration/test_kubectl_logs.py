"""`kubectl logs` on the local stack: the API server reaches the node agent's kubelet API over
mutual TLS, and -f, --tail, --since, --previous, -c and deploy/NAME behave as on a cluster."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest
import requests
import yaml

from kube_transcode_devstack.nodeagent.logfile import parse_time
from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.harness.kube import Kubectl

pytestmark = pytest.mark.integration

# Prints lines, then waits for files the test creates (argv: a folder) before printing more.
STEPS = """
import os, sys, time
folder = sys.argv[1]
def wait(name):
    while not os.path.exists(os.path.join(folder, name)):
        time.sleep(0.05)
for i in range(1, 6):
    print(f"line {i}")
print("paused")
wait("go")
print("late")
wait("stop")
print("done")
"""
# Its first instance fails; the second stays up.
CRASH_ONCE = """
import os, sys, time
if not os.path.exists("ran"):
    open("ran", "w").close()
    print("first run")
    sys.exit(1)
print("second run")
time.sleep(3600)
"""


def container(name: str, script: str, args: list[str] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "image": "local/none:0",
        "command": [sys.executable, "-u", "-c", script],
        "args": args or [],
    }


def pod(name: str, *containers: dict[str, Any], restart: str = "Always") -> str:
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name},
            "spec": {
                "restartPolicy": restart,
                "terminationGracePeriodSeconds": 1,
                "containers": list(containers),
            },
        }
    )


def logs_showing(k: Kubectl, text: str, *args: str, timeout: float = 60) -> str:
    """`kubectl logs ARGS` once its output holds `text`."""

    def shown() -> str | None:
        out = k.run("logs", *args)
        return out.stdout if out.returncode == 0 and text in out.stdout else None

    return wait_until(
        f"kubectl logs {' '.join(args)} to show {text!r}",
        shown,
        timeout,
        lambda: k("get", "pods", "-o", "wide"),
    )


def stamped(k: Kubectl, *args: str) -> dict[str, int]:
    """Each line of `kubectl logs --timestamps ARGS` -> its time (ns since the epoch)."""
    out = k("logs", "--timestamps", *args)
    return {line.split(" ", 1)[1]: parse_time(line.split(" ", 1)[0]) for line in out.splitlines()}


def test_deploy_name_and_c_pick_the_pod_and_container(namespace: Kubectl) -> None:
    talk = "import sys, time; print(sys.argv[1]); time.sleep(3600)"
    namespace(
        "apply",
        "-f",
        "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "talkers"},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": "talkers"}},
                    "template": {
                        "metadata": {"labels": {"app": "talkers"}},
                        "spec": {
                            "terminationGracePeriodSeconds": 1,
                            "containers": [
                                container("first", talk, ["from first"]),
                                container("second", talk, ["from second"]),
                            ],
                        },
                    },
                },
            }
        ),
    )
    logs_showing(namespace, "from second", "deploy/talkers", "-c", "second")
    assert namespace("logs", "deploy/talkers", "-c", "second") == "from second\n"
    logs_showing(namespace, "from first", "deploy/talkers", "-c", "first")
    assert namespace("logs", "deploy/talkers", "--container=first") == "from first\n"


def test_tail_limit_timestamps_and_since(namespace: Kubectl, tmp_path: Path) -> None:
    namespace("apply", "-f", "-", input=pod("steps", container("main", STEPS, [str(tmp_path)])))
    logs_showing(namespace, "paused", "steps")
    assert namespace("logs", "steps", "--tail=2") == "line 5\npaused\n"
    assert namespace("logs", "steps", "--limit-bytes=4") == "line"
    before = stamped(namespace, "steps")
    assert list(before) == ["line 1", "line 2", "line 3", "line 4", "line 5", "paused"]
    assert abs(before["paused"] / 1e9 - time.time()) < 120, "stamped when written"
    assert list(before.values()) == sorted(before.values())

    # --since counts whole seconds: leave four between the early lines and the late one.
    early = before["paused"] / 1e9
    wait_until("4 s after the early lines", lambda: time.time() >= early + 4, 10)
    (tmp_path / "go").touch()
    logs_showing(namespace, "late", "steps")
    late = stamped(namespace, "steps")["late"] / 1e9
    since = math.ceil(time.time() - late) + 2
    assert namespace("logs", "steps", f"--since={since}s") == "late\n"
    cut = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(math.floor(early) + 2))
    assert namespace("logs", "steps", f"--since-time={cut}") == "late\n"
    assert namespace("logs", "steps", "--since=1h", "--tail=1") == "late\n"


def test_previous_shows_the_instance_before_a_restart(namespace: Kubectl) -> None:
    namespace("apply", "-f", "-", input=pod("crasher", container("main", CRASH_ONCE)))
    logs_showing(namespace, "second run", "crasher")
    assert namespace("logs", "crasher") == "second run\n"
    assert namespace("logs", "crasher", "--previous") == "first run\n"

    steady = "import time; print('up'); time.sleep(3600)"
    namespace("apply", "-f", "-", input=pod("steady", container("main", steady)))
    logs_showing(namespace, "up", "steady")
    out = namespace.run("logs", "steady", "--previous")
    assert out.returncode != 0
    assert 'previous terminated container "main" in pod "steady" not found' in out.stderr


def test_follow_streams_while_the_container_writes_and_ends_with_it(
    namespace: Kubectl, tmp_path: Path
) -> None:
    namespace(
        "apply",
        "-f",
        "-",
        input=pod("follow", container("main", STEPS, [str(tmp_path)]), restart="Never"),
    )
    logs_showing(namespace, "paused", "follow")
    lines: list[str] = []
    proc = subprocess.Popen(
        namespace.argv("logs", "-f", "follow"), stdout=subprocess.PIPE, text=True
    )

    def read(stream: IO[str]) -> None:
        for line in stream:
            lines.append(line)

    assert proc.stdout is not None
    reader = threading.Thread(target=read, args=(proc.stdout,))
    reader.start()
    try:
        wait_until("the lines so far", lambda: "paused\n" in lines, 30, lambda: str(lines))
        (tmp_path / "go").touch()
        wait_until("a line written while following", lambda: "late\n" in lines, 30)
        assert proc.poll() is None, "still following: the container has not ended"
        (tmp_path / "stop").touch()
        assert wait_until("kubectl logs -f to exit", lambda: proc.poll() is not None, 30)
        reader.join(10)
        assert proc.returncode == 0
        assert lines[-3:] == ["paused\n", "late\n", "done\n"]
        assert lines.count("line 1\n") == 1
    finally:
        proc.kill()
        proc.wait(10)


def test_the_node_agent_serves_logs_only_to_the_stacks_clients(
    kube: Stack, namespace: Kubectl
) -> None:
    port = namespace(
        "get", "node", "ondemand-1", "-o", "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}"
    )
    addresses = namespace("get", "node", "ondemand-1", "-o", "jsonpath={.status.addresses}")
    assert '"address":"127.0.0.1","type":"InternalIP"' in addresses
    url = f"https://127.0.0.1:{port}/containerLogs/{namespace.namespace}/no-such-pod/main"
    pki = kube.control_plane.pki
    client = (str(pki.cert("apiserver-kubelet-client")), str(pki.key("apiserver-kubelet-client")))
    resp = requests.get(url, cert=client, verify=str(pki.ca_cert), timeout=10)
    assert resp.status_code == 404
    assert resp.text.strip() == 'pod "no-such-pod" does not exist'
    with pytest.raises(requests.exceptions.ConnectionError):  # TLS refused: no certificate
        requests.get(url, verify=str(pki.ca_cert), timeout=10)


def test_a_finished_pods_logs_outlive_a_node_agent_restart(kube: Stack, namespace: Kubectl) -> None:
    done = pod("finished", container("main", "print('all done')"), restart="Never")
    namespace("apply", "-f", "-", input=done)
    wait_until(
        "the pod to succeed",
        lambda: (
            namespace("get", "pod", "finished", "-o", "jsonpath={.status.phase}") == "Succeeded"
        ),
        60,
    )
    kube.node_agent.stop(grace_seconds=60)
    kube.start_node_agent()
    kube.wait_nodes_ready()
    assert logs_showing(namespace, "all done", "finished") == "all done\n"
