"""The operator's Event poster against the real API server: every Event it writes is there,
one after another on the same connection, and a refused one harms nothing."""

from __future__ import annotations

import json
from typing import Any

import kubernetes
import pytest

from kube_transcode_devstack.stack import Stack
from kube_transcode_operator.kube_events import EventPoster
from kube_transcode_operator.status import KubeEvent
from tests.harness.kube import Kubectl

pytestmark = pytest.mark.integration


def poster_for(kube: Stack) -> EventPoster:
    client = kubernetes.config.new_client_from_config(  # type: ignore[no-untyped-call]
        str(kube.layout.kubeconfig)
    )
    return EventPoster(api=kubernetes.client.CoreV1Api(client), instance="test-operator")


def subject(namespace: Kubectl) -> dict[str, Any]:
    namespace("create", "configmap", "subject")
    found: dict[str, Any] = json.loads(namespace("get", "configmap", "subject", "-o", "json"))
    return found


def events_of(namespace: Kubectl, name: str) -> list[dict[str, Any]]:
    out = namespace(
        "get", "events", "--field-selector", f"involvedObject.name={name}", "-o", "json"
    )
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def test_every_event_posted_in_a_row_is_written(kube: Stack, namespace: Kubectl) -> None:
    poster = poster_for(kube)
    body = subject(namespace)

    for number in range(50):
        poster.post(body, KubeEvent("Normal", "Step", f"step {number}"))

    events = events_of(namespace, "subject")
    assert sorted(e["message"] for e in events) == sorted(f"step {n}" for n in range(50))
    first = events[0]
    assert first["involvedObject"]["uid"] == body["metadata"]["uid"]
    assert first["source"]["component"] == "kube-transcode-operator"
    assert first["reportingInstance"] == "test-operator"


def test_a_refused_event_is_logged_and_the_next_one_is_written(
    kube: Stack, namespace: Kubectl, caplog: pytest.LogCaptureFixture
) -> None:
    poster = poster_for(kube)
    body = subject(namespace)
    elsewhere = {**body, "metadata": {**body["metadata"], "namespace": "no-such-namespace"}}

    poster.post(elsewhere, KubeEvent("Warning", "Lost", "refused: the namespace does not exist"))
    poster.post(body, KubeEvent("Normal", "Written", "after the refused one"))

    assert "cannot post event Lost" in caplog.text
    assert [e["reason"] for e in events_of(namespace, "subject")] == ["Written"]
