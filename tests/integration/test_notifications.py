"""Webhook notifications with the operator in-process and a receiver on a loopback port: the
test plays the worker (take the job message, report its end) and reads what the receiver got."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kube_transcode.messages import JobOutputs, Phase, RenditionOutput
from kube_transcode_devstack.waiting import wait_until
from kube_transcode_operator.notifications import SIGNATURE_HEADER, verify
from tests.harness.broker import Vhost
from tests.harness.http_stub import Reply, Request, StubServer
from tests.harness.kube import Kubectl
from tests.harness.operator import (
    apply_job,
    condition,
    event_reasons,
    get_job,
    running_operator,
    send_event,
    take_job,
    wait_phase,
)

pytestmark = pytest.mark.integration

SECRET = b"a-shared-signing-key"
OK = Reply(200, b"thanks")


@pytest.fixture
def notify_env(monkeypatch: pytest.MonkeyPatch, operator_env: None) -> None:
    """Receivers on loopback allowed, retries quick and short."""
    monkeypatch.setenv("KT_NOTIFY_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    monkeypatch.setenv("KT_NOTIFY_BACKOFF_SECONDS", "0.1")
    monkeypatch.setenv("KT_NOTIFY_MAX_BACKOFF_SECONDS", "0.5")
    monkeypatch.setenv("KT_NOTIFY_TIMEOUT_SECONDS", "1")
    monkeypatch.setenv("KT_NOTIFY_GIVE_UP_SECONDS", "4")


@pytest.fixture
def signing_secret(namespace: Kubectl) -> str:
    namespace("create", "secret", "generic", "hook", f"--from-literal=key={SECRET.decode()}")
    return "hook"


@pytest.fixture
def receiver() -> Iterator[Callable[[Callable[[Request], Reply]], StubServer]]:
    servers: list[StubServer] = []

    def start(respond: Callable[[Request], Reply]) -> StubServer:
        servers.append(StubServer(respond=respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def notify(url: str) -> dict[str, Any]:
    return {"webhook": {"url": url, "secretRef": {"name": "hook", "key": "key"}}}


def succeed(namespace: Kubectl, vhost: Vhost, name: str, url: str) -> None:
    """Apply a job with a webhook and play the worker until it succeeded."""
    apply_job(namespace, name, notify=notify(url))
    wait_phase(namespace, name, "Queued")
    message, _ = take_job(vhost)
    outputs = JobOutputs(
        master_uri=message.output.uri("master.m3u8"),
        renditions=(
            RenditionOutput(name="240p", width=426, height=240, bandwidth=400_000,
                            average_bandwidth=300_000, codecs="avc1.64001e",
                            playlist_uri=message.output.uri("240p/index.m3u8")),
        ),
        has_audio=False,
    )  # fmt: skip
    send_event(vhost, message, Phase.succeeded, progress_percent=100.0, outputs=outputs)
    wait_phase(namespace, name, "Succeeded")


def notified(namespace: Kubectl, name: str, timeout: float = 30) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        job = get_job(namespace, name)
        found = [c for c in job["status"].get("conditions", []) if c["type"] == "Notified"]
        return job if found and found[0]["status"] in ("True", "False") else None

    return wait_until(f"{name} to be Notified", probe, timeout)


def events(server: StubServer) -> list[dict[str, Any]]:
    return [json.loads(r.body) for r in server.requests]


@pytest.mark.usefixtures("crd", "notify_env", "signing_secret")
def test_a_succeeded_job_sends_one_signed_cloudevent(
    namespace: Kubectl, vhost: Vhost, receiver: Callable[..., StubServer]
) -> None:
    server = receiver(lambda request: OK)
    with running_operator(namespace.namespace):
        succeed(namespace, vhost, "movie", server.url("/hooks/tj?token=abc"))
        job = notified(namespace, "movie")
        assert wait_until(
            "a Notified event", lambda: "Notified" in event_reasons(namespace, "movie"), 30
        )
    done = condition(job, "Notified")
    assert (done["status"], done["reason"]) == ("True", "Delivered")
    assert done["message"] == f"delivered to {server.url('/hooks/tj')} in 1 attempt"
    assert job["status"]["phase"] == "Succeeded"
    [request] = server.requests
    assert request.method == "POST"
    assert request.path == "/hooks/tj?token=abc"
    assert request.headers["Content-Type"] == "application/cloudevents+json"
    assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    [event] = events(server)
    uid, ns = job["metadata"]["uid"], namespace.namespace
    assert event["specversion"] == "1.0"
    assert event["type"] == "io.kubetranscode.job.succeeded"
    assert event["source"] == f"/apis/kubetranscode.io/v1alpha1/namespaces/{ns}/transcodejobs/movie"
    assert event["subject"] == "movie"
    assert event["id"] == f"{uid}.1.succeeded"
    assert event["data"]["masterPlaylist"] == job["status"]["outputs"]["masterPlaylist"]
    assert event["data"]["masterPlaylistUrl"] == job["status"]["outputs"]["masterPlaylistUrl"]
    assert [r["name"] for r in event["data"]["renditions"]] == ["240p"]


@pytest.mark.usefixtures("crd", "notify_env", "signing_secret")
def test_a_receiver_failing_three_times_gets_it_on_the_fourth_attempt(
    namespace: Kubectl, vhost: Vhost, receiver: Callable[..., StubServer]
) -> None:
    answers = iter([Reply(500), Reply(503), Reply(500)])
    server = receiver(lambda request: next(answers, OK))
    with running_operator(namespace.namespace):
        succeed(namespace, vhost, "retried", server.url("/"))
        job = notified(namespace, "retried")
    done = condition(job, "Notified")
    assert (done["status"], done["reason"]) == ("True", "Delivered")
    assert done["message"].endswith("in 4 attempts")
    assert len(server.requests) == 4
    assert len({e["id"] for e in events(server)}) == 1  # one event, delivered again
    assert all(verify(SECRET, r.body, r.headers[SIGNATURE_HEADER]) for r in server.requests)


@pytest.mark.usefixtures("crd", "notify_env", "signing_secret")
def test_a_receiver_that_never_answers_leaves_the_job_succeeded_and_notified_gave_up(
    namespace: Kubectl, vhost: Vhost, receiver: Callable[..., StubServer]
) -> None:
    released = threading.Event()

    def hang(request: Request) -> Reply:
        released.wait(30)
        return OK

    server = receiver(hang)
    try:
        with running_operator(namespace.namespace):
            succeed(namespace, vhost, "unheard", server.url("/"))
            job = notified(namespace, "unheard")
            assert wait_until(
                "a NotificationFailed event",
                lambda: "NotificationFailed" in event_reasons(namespace, "unheard"),
                30,
            )
    finally:
        released.set()
    assert job["status"]["phase"] == "Succeeded"
    gave_up = condition(job, "Notified")
    assert (gave_up["status"], gave_up["reason"]) == ("False", "GaveUp")
    assert "no answer in time" in gave_up["message"]
    assert len(server.requests) >= 2  # retried, within the give-up time


@pytest.mark.usefixtures("crd", "operator_env", "signing_secret")
def test_a_receiver_on_a_forbidden_address_is_refused_and_never_sent(
    namespace: Kubectl, vhost: Vhost, receiver: Callable[..., StubServer]
) -> None:
    server = receiver(lambda request: OK)  # on loopback, which this operator does not allow
    with running_operator(namespace.namespace):
        succeed(namespace, vhost, "nosy", server.url("/", host="localhost"))
        job = notified(namespace, "nosy")
    refused = condition(job, "Notified")
    assert (refused["status"], refused["reason"]) == ("False", "Refused")
    assert "localhost resolves to" in refused["message"]
    assert "a loopback address" in refused["message"]
    assert refused["message"].startswith("not sent to")
    assert server.requests == []


@pytest.mark.usefixtures("crd", "notify_env", "signing_secret")
def test_an_operator_restart_mid_retry_delivers_after_the_restart_with_the_same_id(
    namespace: Kubectl, vhost: Vhost, monkeypatch: pytest.MonkeyPatch,
    receiver: Callable[..., StubServer],
) -> None:  # fmt: skip
    monkeypatch.setenv("KT_NOTIFY_GIVE_UP_SECONDS", "120")
    healthy = threading.Event()
    server = receiver(lambda request: OK if healthy.is_set() else Reply(503))
    with running_operator(namespace.namespace):
        succeed(namespace, vhost, "resumed", server.url("/"))
        wait_until("a failed attempt", lambda: len(server.requests) >= 1, 30)
        pending = wait_until(
            "Notified to be Pending",
            lambda: next(
                (c for c in get_job(namespace, "resumed")["status"].get("conditions", [])
                 if c["type"] == "Notified"),
                None,
            ),
            30,
        )  # fmt: skip
        assert (pending["status"], pending["reason"]) == ("Unknown", "Pending")
    healthy.set()
    failed_before = len(server.requests)
    with running_operator(namespace.namespace):
        job = notified(namespace, "resumed")
    assert condition(job, "Notified")["status"] == "True"
    assert len(server.requests) == failed_before + 1
    assert len({e["id"] for e in events(server)}) == 1


@pytest.mark.usefixtures("crd", "notify_env", "signing_secret")
def test_deleting_an_unfinished_job_sends_cancelled_before_it_goes(
    namespace: Kubectl, receiver: Callable[..., StubServer]
) -> None:
    server = receiver(lambda request: OK)
    with running_operator(namespace.namespace):
        apply_job(namespace, "dropped", notify=notify(server.url("/")))
        wait_phase(namespace, "dropped", "Queued")
        namespace("delete", "tj", "dropped", "--wait=true", "--timeout=30s")
    [event] = events(server)
    assert event["type"] == "io.kubetranscode.job.cancelled"
    assert event["data"]["phase"] == "Cancelled"
    assert verify(SECRET, server.requests[0].body, server.requests[0].headers[SIGNATURE_HEADER])


@pytest.mark.usefixtures("crd", "notify_env", "signing_secret")
def test_the_cluster_default_receiver_gets_every_job_besides_the_jobs_own(
    namespace: Kubectl, vhost: Vhost, monkeypatch: pytest.MonkeyPatch,
    receiver: Callable[..., StubServer],
) -> None:  # fmt: skip
    own, cluster = receiver(lambda request: OK), receiver(lambda request: OK)
    monkeypatch.setenv("KT_NOTIFY_DEFAULT_WEBHOOK_URL", cluster.url("/all"))
    monkeypatch.setenv("KT_NOTIFY_DEFAULT_SECRET_NAME", "hook")
    monkeypatch.setenv("KT_NOTIFY_DEFAULT_SECRET_KEY", "key")
    monkeypatch.setenv("KT_NOTIFY_DEFAULT_SECRET_NAMESPACE", namespace.namespace)
    with running_operator(namespace.namespace):
        succeed(namespace, vhost, "both", own.url("/mine"))
        job = notified(namespace, "both")
    done = condition(job, "Notified")
    assert done["status"] == "True"
    assert done["message"] == (
        f"delivered to {own.url('/mine')} in 1 attempt; "
        f"delivered to {cluster.url('/all')} in 1 attempt"
    )
    [mine], [everyone] = events(own), events(cluster)
    assert mine["id"] == everyone["id"]
    assert verify(SECRET, cluster.requests[0].body, cluster.requests[0].headers[SIGNATURE_HEADER])
