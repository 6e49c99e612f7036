"""The Events the operator writes name their object the way kubectl describe finds them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from kube_transcode_operator.kube_events import MAX_MESSAGE_CHARS, EventPoster
from kube_transcode_operator.status import KubeEvent

pytestmark = pytest.mark.unit

JOB = {
    "apiVersion": "kubetranscode.io/v1alpha1",
    "kind": "TranscodeJob",
    "metadata": {"name": "movie", "namespace": "media", "uid": "u-1", "resourceVersion": "42"},
}


def test_an_event_refers_to_its_job() -> None:
    poster = EventPoster(api=object(), instance="operator-0")
    at = datetime(2026, 11, 22, 18, 30, 5, 700000, tzinfo=UTC)

    manifest = poster.manifest(JOB, KubeEvent("Normal", "Queued", "in transcode.default"), at)

    assert manifest["metadata"] == {"generateName": "movie.", "namespace": "media"}
    assert manifest["involvedObject"] == {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "TranscodeJob",
        "name": "movie",
        "namespace": "media",
        "uid": "u-1",
        "resourceVersion": "42",
    }
    assert (manifest["type"], manifest["reason"]) == ("Normal", "Queued")
    assert manifest["message"] == "in transcode.default"
    assert manifest["firstTimestamp"] == manifest["lastTimestamp"] == "2026-11-22T18:30:05Z"
    assert manifest["reportingInstance"] == "operator-0"
    assert manifest["count"] == 1


def test_a_long_message_is_cut_to_what_the_api_keeps() -> None:
    poster = EventPoster(api=object(), instance="operator-0")
    event = KubeEvent("Warning", "Failed", "x" * 5000)

    manifest = poster.manifest(JOB, event, datetime.now(UTC))

    assert len(manifest["message"]) == MAX_MESSAGE_CHARS
