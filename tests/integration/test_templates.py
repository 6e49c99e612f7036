"""TranscodeTemplates with the operator in-process against the real API server and RabbitMQ:
a job takes its template's settings and overrides its own, records which template generation
it used, and keeps it; a missing template waits, an invalid one is refused."""

from __future__ import annotations

from typing import Any

import pytest

from kube_transcode.messages import Phase
from kube_transcode_devstack.waiting import wait_until
from tests.harness.broker import Vhost
from tests.harness.kube import Kubectl
from tests.harness.operator import (
    apply_job,
    apply_template,
    condition,
    event_reasons,
    get_job,
    ready_messages,
    running_operator,
    send_event,
    take_job,
    wait_phase,
)

pytestmark = pytest.mark.integration

LADDER = {"rungs": [{"name": "360p"}, {"name": "720p"}]}
MOBILE = {
    "ladder": LADDER,
    "hls": {"segmentSeconds": 4},
    "retry": {"attempts": 5, "backoffSeconds": 20},
}


def template_uid(kubectl: Kubectl, name: str) -> str:
    return kubectl("get", "tt", name, "-o", "jsonpath={.metadata.uid}")


@pytest.mark.usefixtures("crd", "operator_env")
def test_a_job_takes_its_templates_settings_and_overrides_one_field(
    namespace: Kubectl, vhost: Vhost
) -> None:
    assert apply_template(namespace, "mobile", **MOBILE).returncode == 0
    with running_operator(namespace.namespace):
        apply_job(namespace, "clip", template="mobile", retry={"attempts": 2})
        job = wait_phase(namespace, "clip", "Queued")
        message, _ = take_job(vhost)
        apply_job(namespace, "plain")
        wait_phase(namespace, "plain", "Queued")
        plain, _ = take_job(vhost)
    assert message.ladder.rungs == ("360p", "720p")
    assert message.hls.segment_seconds == 4
    assert (message.max_attempts, message.backoff_seconds, message.max_backoff_seconds) == (
        2,
        20,
        300,
    )
    assert job["status"]["template"] == {
        "name": "mobile",
        "uid": template_uid(namespace, "mobile"),
        "generation": 1,
        "jobGeneration": job["metadata"]["generation"],
        "inherited": {
            "ladder": LADDER,
            "hls": {"segmentSeconds": 4},
            "retry": {"backoffSeconds": 20},
        },
    }
    # Without a template, the defaults the CRD used to fill in.
    assert plain.ladder.rungs == ("240p", "360p", "480p", "720p", "1080p", "1440p", "2160p")
    assert (plain.hls.segment_seconds, plain.max_attempts, plain.backoff_seconds) == (6, 3, 10)
    assert "template" not in get_job(namespace, "plain")["status"]


@pytest.mark.usefixtures("crd", "operator_env")
def test_changing_the_template_later_changes_nothing_of_a_queued_job(
    namespace: Kubectl, vhost: Vhost
) -> None:
    apply_template(namespace, "mobile", **MOBILE)
    with running_operator(namespace.namespace):
        apply_job(namespace, "clip", template="mobile")
        queued = wait_phase(namespace, "clip", "Queued")
        message, _ = take_job(vhost)
        assert apply_template(namespace, "mobile", hls={"segmentSeconds": 8}).returncode == 0
        send_event(vhost, message, Phase.fetching)
        wait_phase(namespace, "clip", "Running")
        send_event(vhost, message, Phase.requeued, reason="WorkerLost", message="gone",
                   next_attempt=2)  # fmt: skip
        retrying = wait_phase(namespace, "clip", "Retrying")
    # A restart resumes the job from its status: nothing is published again.
    with running_operator(namespace.namespace):
        # A job created after the restart is handled after the resume of the first one.
        apply_job(namespace, "after")
        wait_phase(namespace, "after", "Queued")
        resumed = get_job(namespace, "clip")
    assert ready_messages(vhost) == 1
    assert take_job(vhost)[0].job.name == "after"
    assert namespace("get", "tt", "mobile", "-o", "jsonpath={.metadata.generation}") == "2"
    for job in (retrying, resumed):
        assert job["status"]["template"] == queued["status"]["template"]
        assert job["status"]["template"]["generation"] == 1
    assert message.hls.segment_seconds == 4


@pytest.mark.usefixtures("crd", "operator_env")
def test_a_publish_retried_after_a_template_change_uses_the_recorded_settings(
    namespace: Kubectl, monkeypatch: pytest.MonkeyPatch, vhost: Vhost
) -> None:
    apply_template(namespace, "mobile", **MOBILE)
    monkeypatch.setenv("KT_RABBITMQ_URL", "amqp://nobody:nothing@127.0.0.1:1/%2F")
    with running_operator(namespace.namespace):
        apply_job(namespace, "patient", template="mobile")
        wait_until(
            "the template recorded while the broker is down",
            lambda: get_job(namespace, "patient").get("status", {}).get("template"),
            30,
        )
    apply_template(namespace, "mobile", ladder={"preset": "hd"}, hls={"segmentSeconds": 8})
    monkeypatch.setenv("KT_RABBITMQ_URL", vhost.url)
    with running_operator(namespace.namespace):
        job = wait_phase(namespace, "patient", "Queued")
        message, _ = take_job(vhost)
    assert (message.ladder.rungs, message.hls.segment_seconds) == (("360p", "720p"), 4)
    assert job["status"]["template"]["generation"] == 1


@pytest.mark.usefixtures("crd", "operator_env")
def test_an_unknown_template_waits_with_a_condition_until_it_exists(
    namespace: Kubectl, vhost: Vhost
) -> None:
    with running_operator(namespace.namespace):
        apply_job(namespace, "early", template="later")

        def missing() -> dict[str, Any] | None:
            job = get_job(namespace, "early")
            conditions = job.get("status", {}).get("conditions") or []
            return job if any(c["reason"] == "TemplateNotFound" for c in conditions) else None

        pending = wait_until("the TemplateNotFound condition", missing, 30)
        assert wait_until(
            "a TemplateNotFound event",
            lambda: "TemplateNotFound" in event_reasons(namespace, "early"),
            30,
        )
        apply_template(namespace, "later", hls={"segmentSeconds": 2})
        queued = wait_phase(namespace, "early", "Queued", timeout=60)
        message, _ = take_job(vhost)
    assert pending["status"]["phase"] == "Pending"
    assert "published" not in pending["status"]
    found = condition(pending, "Queued")
    assert (found["status"], found["reason"]) == ("False", "TemplateNotFound")
    assert found["message"].startswith(
        f"TranscodeTemplate later not found in namespace {namespace.namespace}"
    )
    assert condition(queued, "Queued")["reason"] == "Published"
    assert message.hls.segment_seconds == 2
    assert event_reasons(namespace, "early").count("TemplateNotFound") == 1


@pytest.mark.usefixtures("crd", "operator_env")
def test_a_merged_spec_the_operator_refuses_fails_the_job_with_the_reason(
    namespace: Kubectl,
) -> None:
    apply_template(namespace, "slow", retry={"backoffSeconds": 600})
    with running_operator(namespace.namespace):
        apply_job(namespace, "impatient", template="slow", retry={"maxBackoffSeconds": 60})
        failed = wait_phase(namespace, "impatient", "Failed")
    found = condition(failed, "Failed")
    assert found["reason"] == "InvalidSpec"
    assert found["message"] == (
        "retry.maxBackoffSeconds (60) must be at least retry.backoffSeconds (600)"
        " (with TranscodeTemplate slow)"
    )


@pytest.mark.usefixtures("crd", "installed_operator_paused")
def test_an_invalid_template_is_refused_and_kubectl_get_tt_shows_settings(
    namespace: Kubectl,
) -> None:
    refused = apply_template(namespace, "bad", hls={"segmentSeconds": 30})
    assert refused.returncode != 0
    assert "spec.hls.segmentSeconds" in refused.stderr
    assert "should be less than or equal to 10" in refused.stderr
    neither = apply_template(namespace, "bad", ladder={})
    assert "exactly one of ladder.preset or ladder.rungs must be set" in neither.stderr
    phones = {
        "ladder": {"preset": "mobile"},
        "hls": {"segmentSeconds": 4},
        "retry": {"attempts": 5},
    }
    assert apply_template(namespace, "phones", **phones).returncode == 0
    printed = namespace("get", "tt").splitlines()
    assert printed[0].split() == ["NAME", "PRESET", "SEGMENT", "ATTEMPTS", "WEBHOOK", "AGE"]
    assert printed[1].split()[:4] == ["phones", "mobile", "4", "5"]


@pytest.mark.usefixtures("crd", "operator_env")
def test_av1_takes_the_template_s_fmp4_and_fails_with_the_reason_over_a_ts_template(
    namespace: Kubectl, vhost: Vhost
) -> None:
    cmaf = apply_template(namespace, "cmaf", hls={"segmentFormat": "fmp4"})
    assert cmaf.returncode == 0, cmaf.stderr
    assert apply_template(namespace, "classic", hls={"segmentFormat": "ts"}).returncode == 0
    with running_operator(namespace.namespace):
        apply_job(namespace, "modern", template="cmaf", video={"codecs": ["av1"]})
        wait_phase(namespace, "modern", "Queued")
        message, _ = take_job(vhost)
        apply_job(namespace, "misfit", template="classic", video={"codecs": ["av1"]})
        failed = wait_phase(namespace, "misfit", "Failed")
    assert (message.video.codecs, message.hls.segment_format) == (("av1",), "fmp4")
    found = condition(failed, "Failed")
    assert found["reason"] == "InvalidSpec"
    assert failed["status"]["message"] == found["message"]
    assert found["message"] == (
        "video codec av1 needs hls.segmentFormat fmp4: HLS carries HEVC and AV1 in fragmented "
        "MP4 only, not MPEG-TS (with TranscodeTemplate classic)"
    )
    assert ready_messages(vhost) == 0
