"""Node agent: one pod's state machine with real local processes, no API server."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from kube_transcode_devstack.nodeagent.envresolve import ConfigError
from kube_transcode_devstack.nodeagent.logfile import NoLogError, decode_complete
from kube_transcode_devstack.nodeagent.process import (
    kill_leftovers,
    pid_files_under,
    proc_start_time,
    session_members,
)
from kube_transcode_devstack.nodeagent.runtime import PodRuntime, RuntimeConfig
from kube_transcode_devstack.waiting import wait_until

pytestmark = pytest.mark.unit


class FakeHost:
    def __init__(self, pool: ThreadPoolExecutor, automount: bool = False) -> None:
        self.pool = pool
        self.automount = automount
        self.secrets: dict[str, dict[str, str]] = {}

    @property
    def sources(self) -> FakeHost:
        return self

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get(name)

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return None

    def automount_token(self, pod: dict[str, Any]) -> bool:
        return self.automount

    def service_account_token(self, pod: dict[str, Any]) -> tuple[str, float]:
        if pod["metadata"]["name"] == "no-token":
            raise ConfigError("serviceaccount not found")
        return "tok-123", 3600.0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self.pool.submit(fn, *args)


@pytest.fixture
def host() -> Iterator[FakeHost]:
    with ThreadPoolExecutor(4) as pool:
        yield FakeHost(pool)


def make_pod(
    name: str,
    containers: list[dict[str, Any]],
    init: list[dict[str, Any]] | None = None,
    policy: str = "Always",
    **spec: Any,
) -> dict[str, Any]:
    s: dict[str, Any] = {"containers": containers, "restartPolicy": policy, "nodeName": "n1"}
    if init:
        s["initContainers"] = init
    s.update(spec)
    return {"metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}"}, "spec": s}


def runtime(tmp_path: Path, host: FakeHost, pod: dict[str, Any]) -> PodRuntime:
    cfg = RuntimeConfig(
        state_dir=tmp_path,
        agent_path=os.environ.get("PATH", "/usr/bin:/bin"),
        apiserver_port=16443,
        ca_data=b"CA",
        backoff_base=0.3,
        backoff_cap=1.0,
    )
    return PodRuntime(pod, "n1", "127.77.0.9", cfg, host)


def drive(
    rt: PodRuntime, until: Callable[[dict[str, Any]], bool], timeout: float = 10
) -> dict[str, Any]:
    """Tick the pod until its status satisfies `until`; that status."""
    last: dict[str, Any] = {}

    def ticked() -> dict[str, Any] | None:
        rt.tick(time.monotonic())
        last["status"] = status = rt.status()
        return status if until(status) else None

    def shown() -> str:
        return f"last status: {last.get('status')}"

    return wait_until("the pod's status", ticked, timeout, shown, interval=0.05)


def log_text(path: Path) -> str:
    """A container log as the container wrote it (the file stamps every line)."""
    records, _ = decode_complete(path.read_bytes())
    return b"".join(r.output() for r in records).decode()


def sh(name: str, script: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "img", "command": ["sh", "-c", script], **extra}


def test_init_then_main_never_succeeds_with_logs_and_env(tmp_path: Path, host: FakeHost) -> None:
    pod = make_pod(
        "ok",
        [
            sh(
                "main",
                'echo "main $MSG $(POD_IP)"; cat first.txt',
                env=[
                    {"name": "MSG", "value": "hi"},
                    {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                ],
            )
        ],
        init=[sh("first", "echo one > first.txt"), sh("second", "echo two")],
        policy="Never",
    )
    rt = runtime(tmp_path, host, pod)
    status = drive(rt, lambda s: s["phase"] == "Succeeded")
    assert [c["state"]["terminated"]["reason"] for c in status["initContainerStatuses"]] == [
        "Completed",
        "Completed",
    ]
    main = status["containerStatuses"][0]
    assert main["state"]["terminated"]["exitCode"] == 0
    assert main["ready"] is False
    assert log_text(rt.dir / "main.log") == "main hi 127.77.0.9\none\n"
    assert log_text(rt.dir / "second.log") == "two\n"
    assert not list(rt.dir.glob("*.pid"))
    ready = {c["type"]: c for c in status["conditions"]}["Ready"]
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"


def test_failing_init_with_never_fails_the_pod(tmp_path: Path, host: FakeHost) -> None:
    rt = runtime(
        tmp_path,
        host,
        make_pod("bad-init", [sh("m", "true")], init=[sh("i", "exit 4")], policy="Never"),
    )
    status = drive(rt, lambda s: s["phase"] == "Failed")
    assert status["initContainerStatuses"][0]["state"]["terminated"]["exitCode"] == 4
    assert status["containerStatuses"][0]["state"]["waiting"]["reason"] == "PodInitializing"


def test_crash_loop_back_off_and_restart_counts(tmp_path: Path, host: FakeHost) -> None:
    rt = runtime(tmp_path, host, make_pod("crash", [sh("c", "echo boom $$$$; exit 3")]))
    seen_backoff = drive(
        rt,
        lambda s: (
            s["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
            == "CrashLoopBackOff"
        ),
    )
    c = seen_backoff["containerStatuses"][0]
    assert c["lastState"]["terminated"]["exitCode"] == 3
    assert c["lastState"]["terminated"]["reason"] == "Error"
    assert seen_backoff["phase"] == "Running"
    # Between two instances (no tick restarts it while the logs are read).
    status = drive(
        rt,
        lambda s: (
            s["containerStatuses"][0]["restartCount"] >= 3
            and "waiting" in s["containerStatuses"][0]["state"]
        ),
    )
    assert status["phase"] == "Running"
    # Each instance logs afresh; the one before is kept for kubectl logs --previous.
    current = log_text(rt.container_log("c", previous=False).path)
    previous = log_text(rt.container_log("c", previous=True).path)
    assert current.startswith("boom") and previous.startswith("boom") and current != previous
    with pytest.raises(NoLogError, match='container "nope" not found in pod "crash"'):
        rt.container_log("nope", previous=False)


def test_on_failure_restarts_until_success(tmp_path: Path, host: FakeHost) -> None:
    script = "n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; test $n -ge 1"
    rt = runtime(tmp_path, host, make_pod("flaky", [sh("c", script)], policy="OnFailure"))
    status = drive(rt, lambda s: s["phase"] == "Succeeded")
    assert status["containerStatuses"][0]["restartCount"] == 1


def test_no_command_and_missing_secret_wait(tmp_path: Path, host: FakeHost) -> None:
    rt = runtime(tmp_path, host, make_pod("nocmd", [{"name": "c", "image": "nginx"}]))
    status = drive(
        rt, lambda s: s["containerStatuses"][0]["state"]["waiting"]["reason"] == "NoCommand"
    )
    assert status["phase"] == "Pending"
    assert "no command" in status["containerStatuses"][0]["state"]["waiting"]["message"]

    env = [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    rt2 = runtime(tmp_path, host, make_pod("sec", [sh("c", 'echo "$P"; sleep 30', env=env)]))
    drive(
        rt2,
        lambda s: (
            s["containerStatuses"][0]["state"]["waiting"]["reason"] == "CreateContainerConfigError"
        ),
    )
    host.secrets["s"] = {"k": "v"}
    rt2.containers()[0].next_start = 0  # don't wait for the retry timer
    drive(rt2, lambda s: "running" in s["containerStatuses"][0]["state"])
    rt2.terminate(1)


def test_exec_not_found_is_a_start_error(tmp_path: Path, host: FakeHost) -> None:
    pod = make_pod(
        "nf", [{"name": "c", "image": "x", "command": ["no-such-binary-kt"]}], policy="Never"
    )
    rt = runtime(tmp_path, host, pod)
    status = drive(rt, lambda s: s["phase"] == "Failed")
    term = status["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 128 and term["reason"] == "StartError"
    assert "executable file not found" in term["message"]


def test_readiness_probe_and_service_account(tmp_path: Path, host: FakeHost) -> None:
    host.automount = True
    probe = {"exec": {"command": ["test", "-f", "ready"]}, "periodSeconds": 1}
    c = sh(
        "c",
        'echo "$KT_SERVICEACCOUNT_DIR $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; '
        "sleep 1; touch ready; sleep 60",
        readinessProbe=probe,
    )
    rt = runtime(tmp_path, host, make_pod("probe", [c]))
    status = drive(rt, lambda s: "running" in s["containerStatuses"][0]["state"])
    assert status["containerStatuses"][0]["ready"] is False
    status = drive(rt, lambda s: s["containerStatuses"][0]["ready"])
    assert {x["type"]: x for x in status["conditions"]}["Ready"]["status"] == "True"
    sa = rt.dir / "serviceaccount"
    assert (sa / "token").read_text() == "tok-123"
    assert (sa / "ca.crt").read_bytes() == b"CA"
    assert (sa / "namespace").read_text() == "ns"
    assert log_text(rt.dir / "c.log").startswith(f"{sa} 127.0.0.1:16443")
    rt.terminate(1)


def test_sandbox_failure_keeps_containers_creating(tmp_path: Path, host: FakeHost) -> None:
    host.automount = True
    rt = runtime(tmp_path, host, make_pod("no-token", [sh("c", "sleep 10")]))
    rt.tick(time.monotonic())
    st = rt.status()["containerStatuses"][0]["state"]["waiting"]
    assert st["reason"] == "ContainerCreating" and "serviceaccount not found" in st["message"]


def test_liveness_failure_restarts(tmp_path: Path, host: FakeHost) -> None:
    probe = {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 1}
    rt = runtime(
        tmp_path,
        host,
        make_pod(
            "live", [sh("c", "sleep 60", livenessProbe=probe)], terminationGracePeriodSeconds=1
        ),
    )
    status = drive(rt, lambda s: s["containerStatuses"][0]["restartCount"] >= 1)
    last = status["containerStatuses"][0]["lastState"]["terminated"]
    assert "failed liveness probe" in last["message"]
    rt.terminate(1)


def test_terminate_honours_grace_then_kills(tmp_path: Path, host: FakeHost) -> None:
    # Each shell leaves a file once its trap is set: SIGTERM before that would just kill it.
    polite = sh(
        "polite", 'trap "echo term; exit 0" TERM; touch polite.trapped; while :; do sleep 0.1; done'
    )
    stubborn = sh(
        "stubborn",
        'trap "echo ignored" TERM; touch stubborn.trapped; while :; do sleep 0.1; done',
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo pre > prestop.txt"]}}},
    )
    rt = runtime(tmp_path, host, make_pod("term", [polite, stubborn]))
    drive(rt, lambda s: all("running" in c["state"] for c in s["containerStatuses"]))
    pids = [c.proc.pid for c in rt.containers() if c.proc is not None]
    trapped = [rt.dir / "polite.trapped", rt.dir / "stubborn.trapped"]
    wait_until("both shells' traps", lambda: all(f.exists() for f in trapped), 10, interval=0.05)
    t0 = time.monotonic()
    rt.terminate(1.5)
    took = time.monotonic() - t0
    assert 1.4 <= took < 4
    status = rt.status(terminal=True)
    codes = {c["name"]: c["state"]["terminated"]["exitCode"] for c in status["containerStatuses"]}
    assert codes == {"polite": 0, "stubborn": 137}
    assert status["phase"] == "Failed"
    assert (rt.dir / "prestop.txt").read_text() == "pre\n"
    assert all(proc_start_time(p) is None for p in pids)


def test_kill_leftovers_from_pid_files(tmp_path: Path, host: FakeHost) -> None:
    rt = runtime(tmp_path, host, make_pod("left", [sh("c", "sleep 60 & sleep 60")]))
    drive(rt, lambda s: "running" in s["containerStatuses"][0]["state"])
    proc = rt.containers()[0].proc
    assert proc is not None
    files = pid_files_under(tmp_path)
    assert len(files) == 1
    wait_until(
        "the shell to fork its background sleep",
        lambda: len(session_members(proc.pid)) >= 2,
        5,
        interval=0.05,
    )
    assert kill_leftovers(files, grace=2) >= 2  # the shell and its background sleep
    proc.popen.wait(5)
    assert not files[0].exists()
