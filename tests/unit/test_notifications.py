"""Webhook notifications, the pure parts: who is told, the event, its id, the signature, the
retry decision, the Notified condition, and the address guard both sides share."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime
from ipaddress import ip_address, ip_network
from typing import Any

import pytest

from kube_transcode.addresses import first_forbidden, forbidden_reason
from kube_transcode_operator import notifications, webhook
from kube_transcode_operator.notifications import (
    SIGNATURE_HEADER,
    DefaultReceiver,
    Delivery,
    Outcome,
    Receiver,
)
from kube_transcode_operator.settings import OperatorSettings

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SECRET = b"s3cr3t"


def job(phase: str, generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubetranscode.io/v1alpha1",
        "kind": "TranscodeJob",
        "metadata": {"name": "clip", "namespace": "media", "uid": "u-1", "generation": generation},
        "spec": {
            "notify": {
                "webhook": {"url": "https://hooks.example.com/tj?token=x",
                            "secretRef": {"name": "hook", "key": "k"}}
            }
        },
        "status": {"phase": phase, "observedGeneration": generation, **status},
    }  # fmt: skip


OUTPUTS = {
    "masterPlaylist": "s3://kube-transcode/media/clip/master.m3u8",
    "masterPlaylistUrl": "http://minio/kube-transcode/media/clip/master.m3u8",
    "renditions": [{"name": "360p", "resolution": "640x360", "bandwidth": 900000}],
}


def test_the_job_webhook_and_the_cluster_default_are_told() -> None:
    body = job("Succeeded")
    default = DefaultReceiver("https://all.example.com/", "kube-transcode", "hooks", "key")
    found = notifications.receivers(body["spec"], "media", default)
    assert found == [
        Receiver("https://hooks.example.com/tj?token=x", "media", "hook", "k"),
        Receiver("https://all.example.com/", "kube-transcode", "hooks", "key"),
    ]
    assert found[0].shown == "https://hooks.example.com/tj"  # no token in conditions
    assert notifications.receivers({}, "media", None) == []


def test_a_succeeded_event_names_the_job_and_carries_the_outputs() -> None:
    event = notifications.build_event(job("Succeeded", outputs=OUTPUTS), Outcome.SUCCEEDED, NOW)
    headers, body = notifications.request_of(event, SECRET)
    sent = json.loads(body)
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert sent["specversion"] == "1.0"
    assert sent["type"] == "io.kubetranscode.job.succeeded"
    assert sent["source"] == "/apis/kubetranscode.io/v1alpha1/namespaces/media/transcodejobs/clip"
    assert sent["subject"] == "clip"
    assert sent["id"] == "u-1.2.succeeded"
    assert sent["data"] == {"generation": 2, "phase": "Succeeded", **OUTPUTS}


def test_failed_and_cancelled_events_carry_reason_and_message() -> None:
    failed = job("Failed", conditions=[
        {"type": "Failed", "status": "True", "reason": "InvalidSource", "message": "no video"}
    ])  # fmt: skip
    data = notifications.build_event(failed, Outcome.FAILED, NOW).get_data()
    assert data == {"generation": 2, "phase": "Failed", "reason": "InvalidSource",
                    "message": "no video"}  # fmt: skip
    cancelled = notifications.build_event(job("Running"), Outcome.CANCELLED, NOW)
    assert cancelled.get_type() == "io.kubetranscode.job.cancelled"
    assert cancelled.get_data() == {"generation": 2, "phase": "Cancelled", "reason": "Deleted",
                                    "message": "the job was deleted"}  # fmt: skip


def test_the_id_is_stable_per_job_generation_and_outcome() -> None:
    first = notifications.build_event(job("Succeeded"), Outcome.SUCCEEDED, NOW)
    again = notifications.build_event(job("Succeeded"), Outcome.SUCCEEDED, datetime.now(UTC))
    assert first.get_id() == again.get_id()
    others = {
        notifications.build_event(job("Succeeded", generation=3), Outcome.SUCCEEDED, NOW).get_id(),
        notifications.build_event(job("Failed"), Outcome.FAILED, NOW).get_id(),
        first.get_id(),
    }
    assert len(others) == 3


def test_the_signature_is_hmac_sha256_over_the_exact_body() -> None:
    event = notifications.build_event(job("Succeeded"), Outcome.SUCCEEDED, NOW)
    headers, body = notifications.request_of(event, SECRET)
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == expected
    assert notifications.verify(SECRET, body, headers[SIGNATURE_HEADER])
    assert not notifications.verify(b"other", body, headers[SIGNATURE_HEADER])
    assert not notifications.verify(SECRET, body + b" ", headers[SIGNATURE_HEADER])


@pytest.mark.parametrize(
    ("status", "retried"),
    [(500, True), (502, True), (503, True), (408, True), (429, True),
     (400, False), (401, False), (403, False), (404, False), (410, False), (301, False)],
)  # fmt: skip
def test_retried_on_5xx_408_and_429_only(status: int, retried: bool) -> None:
    assert notifications.is_retryable_status(status) is retried


def test_due_once_finished_until_notified_for_this_generation() -> None:
    assert not notifications.is_due(job("Running")["status"], 2)
    assert notifications.is_due(job("Succeeded")["status"], 2)
    assert notifications.outcome_of(job("Failed")["status"]) is Outcome.FAILED
    assert notifications.outcome_of(job("Queued")["status"]) is Outcome.CANCELLED
    status = job("Succeeded")["status"]
    status["conditions"] = notifications.pending(status, generation=2, now=NOW)
    assert notifications.is_due(status, 2)  # Pending: a restart delivers again
    receiver = Receiver("https://h.example.com/", "media", "hook", "k")
    status["conditions"] = notifications.notified(
        status, [Delivery(receiver, True, 4, "Delivered")], generation=2, now=NOW
    )
    notified = status["conditions"][0]
    assert (notified["status"], notified["reason"]) == ("True", "Delivered")
    assert notified["message"] == "delivered to https://h.example.com/ in 4 attempts"
    assert not notifications.is_due(status, 2)
    assert notifications.is_due({**status, "observedGeneration": 3}, 3)  # a new run: told again


def test_one_failed_receiver_makes_notified_false_with_its_reason() -> None:
    ok = Delivery(Receiver("https://a.example.com/", "m", "s", "k"), True, 1, "Delivered")
    gave_up = Delivery(
        Receiver("https://b.example.com/", "m", "s", "k"), False, 7, "GaveUp", "no answer in time"
    )
    [condition] = notifications.notified({}, [ok, gave_up], generation=1, now=NOW)
    assert (condition["status"], condition["reason"]) == ("False", "GaveUp")
    assert (
        "not delivered to https://b.example.com/ after 7 attempts: no answer in time"
        in (condition["message"])
    )


@pytest.mark.parametrize(
    ("address", "reason"),
    [("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("169.254.1.1", "link-local"),
     ("169.254.169.254", "cloud metadata service"),
     ("::ffff:192.168.0.1", "private (as 192.168.0.1)")],
)  # fmt: skip
def test_the_shared_guard_refuses_internal_addresses(address: str, reason: str) -> None:
    assert forbidden_reason(ip_address(address)) == reason


def test_the_shared_guard_allows_configured_networks_and_reports_the_first_refusal() -> None:
    allowed = [ip_network("127.0.0.0/8")]
    assert first_forbidden([ip_address("127.0.0.1"), ip_address("8.8.8.8")], allowed) is None
    assert first_forbidden([ip_address("8.8.8.8"), ip_address("10.0.0.1")], allowed) == (
        ip_address("10.0.0.1"), "private"
    )  # fmt: skip


def test_a_webhook_on_a_forbidden_literal_address_is_refused_before_any_attempt() -> None:
    policy = webhook.Policy(give_up_seconds=1, timeout_seconds=1, backoff_seconds=0.1,
                            max_backoff_seconds=0.1)  # fmt: skip

    async def run() -> webhook.Attempts:
        async with webhook.session([]) as client:
            return await webhook.deliver(client, "http://169.254.169.254/", {}, b"{}", policy, [])

    attempts = asyncio.run(run())
    assert attempts.count == 0
    assert attempts.error is not None and webhook.is_forbidden(attempts.error)
    assert "a cloud metadata service address" in webhook.describe(attempts.error)


def test_the_resolver_refuses_a_name_that_resolves_to_loopback() -> None:
    async def run() -> None:
        resolver = webhook.GuardedResolver([])
        with pytest.raises(webhook.ForbiddenAddressError, match="localhost resolves to"):
            await resolver.resolve("localhost", 80)
        allowed = webhook.GuardedResolver([ip_network("127.0.0.0/8"), ip_network("::1/128")])
        assert await allowed.resolve("localhost", 80)

    asyncio.run(run())


def test_settings_read_the_notify_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KT_RABBITMQ_URL", "amqp://x")
    monkeypatch.setenv("KT_NOTIFY_ALLOWED_NETWORKS", "127.0.0.0/8, 10.0.0.0/8")
    monkeypatch.setenv("KT_NOTIFY_GIVE_UP_SECONDS", "5")
    settings = OperatorSettings()  # type: ignore[call-arg]
    assert settings.notify_allowed_networks == (ip_network("127.0.0.0/8"), ip_network("10.0.0.0/8"))
    assert settings.notify_give_up_seconds == 5
