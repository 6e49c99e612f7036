"""A job's webhook through the installed chart: the operator Pod tells a receiver that the
job succeeded, with one signed CloudEvent, and says so in the job's Notified condition."""

from __future__ import annotations

import json

import pytest

from kube_transcode_devstack.waiting import wait_until
from kube_transcode_operator.notifications import SIGNATURE_HEADER, verify
from tests.e2e.helpers import Jobs, Sources, condition, transcode_job
from tests.harness.http_stub import Reply, StubServer

pytestmark = pytest.mark.e2e

SECRET = b"e2e-signing-key"
JOB_SECONDS = 90


def test_a_finished_job_fires_its_webhook(jobs: Jobs, sources: Sources) -> None:
    jobs.k("create", "secret", "generic", "hook", f"--from-literal=key={SECRET.decode()}")
    with StubServer(respond=lambda request: Reply(204)) as receiver:
        notify = {"webhook": {"url": receiver.url("/done"),
                              "secretRef": {"name": "hook", "key": "key"}}}  # fmt: skip
        jobs.apply(transcode_job("hooked", sources.tiny.url, notify=notify))
        jobs.k(
            "wait", "transcodejob/hooked", "--for=condition=Notified", f"--timeout={JOB_SECONDS}s"
        )
        job = jobs.require("hooked")
        wait_until("the Notified event", lambda: jobs.events("hooked", "Notified"), 30)
    assert job["status"]["phase"] == "Succeeded"
    notified = condition(job, "Notified")
    assert notified["reason"] == "Delivered"
    [request] = receiver.requests
    assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    event = json.loads(request.body)
    assert event["type"] == "io.kubetranscode.job.succeeded"
    assert event["id"] == f"{job['metadata']['uid']}.1.succeeded"
    assert event["data"]["masterPlaylistUrl"] == job["status"]["outputs"]["masterPlaylistUrl"]
