"""Node agent pure logic: env resolution, $(VAR) expansion, back-off, IPs, probes, status."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from kube_transcode_devstack.nodeagent.backoff import Backoff
from kube_transcode_devstack.nodeagent.envresolve import (
    ConfigError,
    NoCommandError,
    PodContext,
    container_argv,
    decode_secret,
    expand,
    mapping_lookup,
    parse_quantity,
    process_env,
    resolve_env,
)
from kube_transcode_devstack.nodeagent.ipalloc import IPAllocator, IPExhaustedError
from kube_transcode_devstack.nodeagent.probes import (
    ProbeConfig,
    ProbeConfigError,
    ProbeTracker,
    parse_probe,
    run_action,
)

pytestmark = pytest.mark.unit


class FakeSources:
    def __init__(
        self,
        secrets: dict[str, dict[str, str]] | None = None,
        config_maps: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.secrets = secrets or {}
        self.config_maps = config_maps or {}

    def secret(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.secrets.get(f"{namespace}/{name}")

    def config_map(self, namespace: str, name: str) -> Mapping[str, str] | None:
        return self.config_maps.get(f"{namespace}/{name}")


POD: dict[str, Any] = {
    "metadata": {
        "name": "w-1",
        "namespace": "jobs",
        "uid": "u-1",
        "labels": {"app": "worker"},
        "annotations": {"a/b": "c"},
    },
    "spec": {"nodeName": "spot-1", "serviceAccountName": "worker"},
}


def ctx(**kw: Any) -> PodContext:
    return PodContext(pod=POD, pod_ip="127.77.0.5", **kw)


# -- $(VAR) expansion --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),
        ("x$(A)y$(B)z", "xaybz"),
        ("$$(A)", "$(A)"),
        ("$$$(A)", "$a"),
        ("$(MISSING)", "$(MISSING)"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("trailing$", "trailing$"),
        ("$$", "$"),
        ("$()", "$()"),
        ("no vars", "no vars"),
        ("$(A)$(A)", "aa"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, expected: str) -> None:
    assert expand(text, mapping_lookup({"A": "a", "B": "b"})) == expected


def test_env_order_sources_refs_and_expansion() -> None:
    sources = FakeSources(
        secrets={"jobs/creds": {"password": "pw", "user": "u"}},
        config_maps={"jobs/cfg": {"QUEUE": "q1", "LEVEL": "info"}},
    )
    container = {
        "name": "c",
        "envFrom": [
            {"configMapRef": {"name": "cfg"}},
            {"secretRef": {"name": "creds"}, "prefix": "S_"},
            {"configMapRef": {"name": "absent", "optional": True}},
        ],
        "env": [
            {"name": "LEVEL", "value": "debug"},  # env wins over envFrom
            {"name": "URL", "value": "amqp://$(S_user):$(PASS)@host/$(QUEUE)"},
            {"name": "PASS", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "URL2", "value": "amqp://$(S_user):$(PASS)@host"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "SA", "valueFrom": {"fieldRef": {"fieldPath": "spec.serviceAccountName"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "x", "key": "k", "optional": True}},
            },
            {"name": "HOSTPORT", "value": "$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
            {"name": "ESC", "value": "$$(QUEUE)"},
            {"name": "EMPTY"},
        ],
    }
    service = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}
    env = resolve_env(container, ctx(service_env=service), sources)
    assert env["LEVEL"] == "debug"
    assert env["QUEUE"] == "q1"
    assert env["S_password"] == "pw"
    # PASS is defined after URL: not expanded there, expanded in URL2.
    assert env["URL"] == "amqp://u:$(PASS)@host/q1"
    assert env["URL2"] == "amqp://u:pw@host"
    assert (env["POD"], env["NS"], env["UID"], env["NODE"]) == ("w-1", "jobs", "u-1", "spot-1")
    assert env["IP"] == "127.77.0.5"
    assert env["SA"] == "worker"
    assert env["APP"] == "worker"
    assert "OPT" not in env
    assert env["HOSTPORT"] == "127.0.0.1:6443"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    assert env["ESC"] == "$(QUEUE)"
    assert env["EMPTY"] == ""


def test_missing_sources_are_config_errors_unless_optional() -> None:
    src = FakeSources(secrets={"jobs/s": {"a": "1"}})
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        resolve_env(
            {
                "name": "c",
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}],
            },
            ctx(),
            src,
        )
    with pytest.raises(ConfigError, match="couldn't find key k in Secret jobs/s"):
        resolve_env(
            {
                "name": "c",
                "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
            },
            ctx(),
            src,
        )
    with pytest.raises(ConfigError, match='configMap "cm" not found'):
        resolve_env({"name": "c", "envFrom": [{"configMapRef": {"name": "cm"}}]}, ctx(), src)


def test_resource_field_ref_uses_limits_or_node_allocatable() -> None:
    container = {
        "name": "c",
        "resources": {"limits": {"memory": "1Gi"}, "requests": {"cpu": "250m"}},
        "env": [
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "CPU_REQ",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
            {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
    }
    env = resolve_env(container, ctx(node_allocatable={"cpu": "4"}), FakeSources())
    assert env == {"MEM": "1024", "CPU_REQ": "250", "CPU_LIM": "4"}
    assert parse_quantity("1.5Gi") == 1.5 * 2**30
    assert parse_quantity("100m") * 10 == 1


def test_argv_expansion_and_no_command() -> None:
    c = {"name": "c", "command": ["worker", "--queue=$(Q)"], "args": ["$(MISSING)", "$$(Q)"]}
    assert container_argv(c, {"Q": "hi"}) == ["worker", "--queue=hi", "$(MISSING)", "$(Q)"]
    with pytest.raises(NoCommandError, match="no command") as info:
        container_argv({"name": "c", "args": ["x"]}, {})
    assert info.value.reason == "NoCommand"


def test_process_env_appends_agent_path_and_leaks_nothing_else() -> None:
    env = process_env({"PATH": "/opt/bin", "A": "1"}, "/venv/bin:/usr/bin", {"HOME": "/root"})
    assert env == {"PATH": "/opt/bin:/venv/bin:/usr/bin", "A": "1", "HOME": "/root"}
    assert process_env({}, "/venv/bin", {})["PATH"] == "/venv/bin"
    assert "VIRTUAL_ENV" not in process_env({}, "/venv/bin", {})


def test_decode_secret() -> None:
    assert decode_secret({"data": {"k": "czNjcmV0"}}) == {"k": "s3cret"}


# -- back-off ----------------------------------------------------------------------------------


def test_backoff_is_kubelets_first_immediate_then_doubling_to_cap() -> None:
    b = Backoff(base=10, cap=300)
    t = 1000.0
    delays = []
    for _ in range(8):
        d = b.next_delay(t)
        delays.append(d)
        t += d + 1  # the container ran for a second and crashed again
    assert delays == [0, 10, 20, 40, 80, 160, 300, 300]


def test_backoff_resets_after_twice_the_cap_without_crash() -> None:
    b = Backoff(base=1, cap=5)
    assert [b.next_delay(t) for t in (0, 1, 2)] == [0, 1, 2]
    assert b.next_delay(2 + 11) == 0
    assert b.next_delay(14) == 1


# -- IPs ---------------------------------------------------------------------------------------


def test_ip_allocation_unique_reserve_release_round_robin() -> None:
    a = IPAllocator("127.77")
    ips = [a.allocate() for _ in range(300)]
    assert len(set(ips)) == 300
    assert ips[0] == "127.77.0.1"
    assert ips[253] == "127.77.0.254"
    assert ips[254] == "127.77.1.1"
    a.release("127.77.0.1")
    assert a.allocate() != "127.77.0.1"  # round robin: not reused at once
    assert a.reserve("127.77.200.7")
    assert not a.reserve("127.77.200.7")
    assert not a.reserve("10.0.0.1")
    assert not a.reserve("127.78.0.1")


def test_ip_allocator_exhaustion_and_bad_prefix() -> None:
    a = IPAllocator("127.9")
    a._size = 3
    assert [a.allocate() for _ in range(3)] == ["127.9.0.1", "127.9.0.2", "127.9.0.3"]
    with pytest.raises(IPExhaustedError):
        a.allocate()
    for bad in ("10.1", "127", "127.300", "127.a"):
        with pytest.raises(ValueError):
            IPAllocator(bad)


# -- probes ------------------------------------------------------------------------------------


def test_probe_parsing_named_ports_and_defaults() -> None:
    container = {"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}
    cfg = parse_probe({"httpGet": {"path": "/healthz", "port": "http"}}, container)
    assert cfg is not None
    assert (cfg.action.kind, cfg.action.port, cfg.action.path) == ("http", 8080, "/healthz")
    assert (cfg.period, cfg.timeout, cfg.failure_threshold, cfg.success_threshold) == (10, 1, 3, 1)
    tcp = parse_probe({"tcpSocket": {"port": 9000}, "initialDelaySeconds": 5}, container)
    assert tcp is not None and tcp.action.port == 9000 and tcp.initial_delay == 5
    assert parse_probe(None, container) is None
    with pytest.raises(ProbeConfigError):
        parse_probe({"httpGet": {"port": "nope"}}, container)


def _cfg(success: int = 1, failure: int = 3, period: float = 10, delay: float = 0) -> ProbeConfig:
    cfg = parse_probe(
        {
            "exec": {"command": ["true"]},
            "successThreshold": success,
            "failureThreshold": failure,
            "periodSeconds": period,
            "initialDelaySeconds": delay,
        },
        {"name": "c"},
    )
    assert cfg is not None
    return cfg


def test_readiness_needs_success_threshold_and_failure_threshold() -> None:
    t = ProbeTracker.for_run("readiness", _cfg(success=2, failure=3), started=100)
    assert t.result is False
    assert not t.record(True, 100)
    assert t.record(True, 110)  # second success: ready
    assert t.result is True
    assert not t.record(False, 120)
    assert not t.record(False, 130)
    assert not t.record(True, 135)  # a success resets the failure count
    assert not t.record(False, 140)
    assert not t.record(False, 150)
    assert t.record(False, 160)  # third consecutive failure: unready
    assert t.result is False


def test_liveness_starts_successful_and_is_scheduled_after_initial_delay() -> None:
    t = ProbeTracker.for_run("liveness", _cfg(failure=2, period=5, delay=30), started=100)
    assert t.result is True
    assert not t.due(129)
    assert t.due(130)
    t.record(False, 130)
    assert t.next_due == 135 and t.result is True
    t.record(False, 135)
    assert t.result is False


def test_run_action_exec_and_tcp() -> None:
    cfg = parse_probe({"exec": {"command": ["sh", "-c", 'test "$X" = 1']}}, {"name": "c"})
    assert cfg is not None
    assert run_action(cfg.action, "127.0.0.1", {"X": "1", "PATH": "/usr/bin:/bin"}, 5)[0]
    assert not run_action(cfg.action, "127.0.0.1", {"X": "2", "PATH": "/usr/bin:/bin"}, 5)[0]
    tcp = parse_probe({"tcpSocket": {"port": 1}}, {"name": "c"})
    assert tcp is not None
    ok, msg = run_action(tcp.action, "127.0.0.1", {}, 1)
    assert not ok and "tcp" in msg
