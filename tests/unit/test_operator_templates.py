"""A job over its TranscodeTemplate: field-by-field override, lists replace, defaults after the
merge, what status records, and a merged spec the operator refuses."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kube_transcode_operator import status, templates
from kube_transcode_operator.validation import (
    JobRejectedError,
    chunking_options,
    video_and_hls_options,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
SOURCE = {"url": "s3://in/video.mp4"}
TEMPLATE_SPEC: dict[str, Any] = {
    "ladder": {"rungs": [{"name": "360p"}, {"name": "720p"}]},
    "video": {"codecs": ["h264", "hevc"]},
    "hls": {"segmentSeconds": 4, "segmentFormat": "fmp4"},
    "retry": {"attempts": 5, "backoffSeconds": 20},
    "chunking": {"chunkSeconds": 24},
    "thumbnails": {"storyboard": {"intervalSeconds": 5}},
    "notify": {
        "webhook": {"url": "https://hooks.example.com/a", "secretRef": {"name": "s", "key": "k"}}
    },
}


def template(spec: dict[str, Any] = TEMPLATE_SPEC, generation: int = 2) -> dict[str, Any]:
    return {"metadata": {"name": "mobile", "uid": "t-1", "generation": generation}, "spec": spec}


def test_a_job_without_those_fields_takes_the_templates() -> None:
    merged = templates.merge(TEMPLATE_SPEC, {"source": SOURCE, "template": "mobile"})
    assert {k: merged[k] for k in templates.TEMPLATED_FIELDS} == TEMPLATE_SPEC
    assert merged["source"] == SOURCE


def test_the_jobs_fields_override_key_by_key() -> None:
    job = {
        "source": SOURCE,
        "retry": {"attempts": 2},
        "notify": {"webhook": {"url": "https://hooks.example.com/mine"}},
    }
    merged = templates.merge(TEMPLATE_SPEC, job)
    assert merged["retry"] == {"attempts": 2, "backoffSeconds": 20}
    assert merged["notify"]["webhook"] == {
        "url": "https://hooks.example.com/mine",
        "secretRef": {"name": "s", "key": "k"},
    }
    assert merged["hls"] == {"segmentSeconds": 4, "segmentFormat": "fmp4"}


def test_lists_and_the_ladder_replace_as_a_whole() -> None:
    merged = templates.merge(TEMPLATE_SPEC, {"source": SOURCE, "ladder": {"preset": "hd"}})
    assert merged["ladder"] == {"preset": "hd"}
    rungs = {"rungs": [{"name": "1080p"}]}
    assert templates.merge(TEMPLATE_SPEC, {"source": SOURCE, "ladder": rungs})["ladder"] == rungs


def test_the_merge_changes_neither_input() -> None:
    job = {"source": SOURCE, "retry": {"attempts": 2}}
    templates.merge(TEMPLATE_SPEC, job)["retry"]["attempts"] = 9
    assert job == {"source": SOURCE, "retry": {"attempts": 2}}
    assert TEMPLATE_SPEC["retry"] == {"attempts": 5, "backoffSeconds": 20}


def test_defaults_apply_after_the_merge_so_the_template_wins() -> None:
    spec = templates.job_spec(
        templates.merge({"hls": {"segmentSeconds": 4}}, {"source": SOURCE}), "t"
    )
    assert spec.hls.segment_seconds == 4
    assert spec.ladder.preset == "standard"
    assert (spec.retry.attempts, spec.retry.backoff_seconds, spec.retry.max_backoff_seconds) == (
        3, 10, 300,
    )  # fmt: skip
    plain = templates.job_spec({"source": SOURCE}, None)
    assert (plain.hls.segment_seconds, plain.ladder.preset, plain.retry.attempts) == (
        6,
        "standard",
        3,
    )


def test_what_the_job_took_resolves_to_the_same_spec() -> None:
    job = {"source": SOURCE, "ladder": {"preset": "hd"}, "retry": {"attempts": 2},
           "notify": {"webhook": {"url": "https://hooks.example.com/mine"}}}  # fmt: skip
    found = templates.record(template(), job, job_generation=7)
    assert found.inherited == {
        "video": {"codecs": ["h264", "hevc"]},
        "hls": {"segmentSeconds": 4, "segmentFormat": "fmp4"},
        "retry": {"backoffSeconds": 20},
        "chunking": {"chunkSeconds": 24},
        "thumbnails": {"storyboard": {"intervalSeconds": 5}},
        "notify": {"webhook": {"secretRef": {"name": "s", "key": "k"}}},
    }
    assert templates.merge(found.inherited, job) == templates.merge(TEMPLATE_SPEC, job)
    assert found.to_status() == {
        "name": "mobile", "uid": "t-1", "generation": 2, "jobGeneration": 7,
        "inherited": found.inherited,
    }  # fmt: skip


def test_the_record_not_the_template_resolves_the_same_job_generation_again() -> None:
    job = {"source": SOURCE, "template": "mobile"}
    recorded_status = {"template": templates.record(template(), job, 3).to_status()}
    found = templates.recorded(recorded_status, "mobile", 3)
    assert found is not None and found.inherited["hls"]["segmentSeconds"] == 4
    assert templates.recorded(recorded_status, "mobile", 4) is None  # a new job generation
    assert templates.recorded(recorded_status, "other", 3) is None  # another template named
    assert templates.effective_spec(job, recorded_status, 3)["hls"]["segmentSeconds"] == 4
    assert "hls" not in templates.effective_spec(job, recorded_status, 4)


def test_a_new_record_replaces_the_old_one_in_a_merge_patch() -> None:
    old = templates.record(template(), {"source": SOURCE}, 1).to_status()
    new = templates.record(template({"hls": {"segmentSeconds": 8}}, 3), {"source": SOURCE}, 2)
    patch = templates.status_patch(old, new)
    assert patch is not None
    assert patch["inherited"] == {
        "hls": {"segmentSeconds": 8, "segmentFormat": None}, "ladder": None, "video": None,
        "retry": None, "chunking": None, "thumbnails": None, "notify": None,
    }  # fmt: skip
    assert (patch["generation"], patch["jobGeneration"]) == (3, 2)


def test_a_merged_spec_the_schema_would_refuse_is_rejected_with_a_reason() -> None:
    merged = templates.merge({"retry": {"backoffSeconds": 600}}, {"source": SOURCE,
                             "retry": {"maxBackoffSeconds": 60}})  # fmt: skip
    with pytest.raises(JobRejectedError) as raised:
        templates.job_spec(merged, "slow")
    assert raised.value.reason == "InvalidSpec"
    assert raised.value.message == (
        "retry.maxBackoffSeconds (60) must be at least retry.backoffSeconds (600)"
        " (with TranscodeTemplate slow)"
    )


def test_a_missing_template_is_a_condition_and_one_event() -> None:
    patch, event = status.template_missing(
        {}, template="mobile", namespace="team", generation=1, now=NOW
    )
    queued = patch["conditions"][0]
    assert (patch["phase"], queued["type"], queued["status"], queued["reason"]) == (
        "Pending", "Queued", "False", "TemplateNotFound",
    )  # fmt: skip
    assert queued["message"].startswith("TranscodeTemplate mobile not found in namespace team")
    assert event is not None and (event.type, event.reason) == ("Warning", "TemplateNotFound")
    again, repeated = status.template_missing(
        patch, template="mobile", namespace="team", generation=1, now=NOW
    )
    assert repeated is None
    assert again["conditions"] == patch["conditions"]


def test_chunking_merges_key_by_key_and_a_merge_of_not_whole_segments_is_refused() -> None:
    merged = templates.merge(TEMPLATE_SPEC, {"source": SOURCE, "chunking": {"mode": "Off"}})
    assert merged["chunking"] == {"chunkSeconds": 24, "mode": "Off"}
    spec = templates.job_spec(merged, "mobile")
    assert (spec.chunking.mode, spec.chunking.chunk_seconds) == ("Off", 24)
    assert templates.job_spec({"source": SOURCE}, None).chunking.mode == "Auto"
    # The template's 24 s chunks are whole 4 s segments, not whole 10 s ones: the API server
    # could not tell (each object alone is fine), the operator refuses the merge.
    job = {"source": SOURCE, "template": "mobile", "hls": {"segmentSeconds": 10}}
    spec = templates.job_spec(templates.merge(TEMPLATE_SPEC, job), "mobile")
    with pytest.raises(JobRejectedError) as refused:
        chunking_options(spec, "mobile")
    assert refused.value.reason == "InvalidSpec"
    assert refused.value.message == (
        "chunking.chunkSeconds must be a whole number of hls.segmentSeconds (10) (with "
        "TranscodeTemplate mobile): chunkSeconds 24 is not a whole number of 10 s segments"
    )


def test_codecs_replace_the_template_s_and_the_segment_format_merges_key_by_key() -> None:
    cmaf = {"video": {"codecs": ["h264", "hevc"]}, "hls": {"segmentFormat": "fmp4"}}
    job = {"source": SOURCE, "template": "cmaf", "video": {"codecs": ["av1"]},
           "hls": {"segmentSeconds": 4}}  # fmt: skip
    merged = templates.merge(cmaf, job)
    assert merged["video"] == {"codecs": ["av1"]}
    assert merged["hls"] == {"segmentFormat": "fmp4", "segmentSeconds": 4}
    video, hls = video_and_hls_options(templates.job_spec(merged, "cmaf"), "cmaf")
    assert video.codecs == ("av1",)
    assert (hls.segment_format, hls.segment_seconds) == ("fmp4", 4)
    # What the job took of the template, so a retry resolves the same fMP4 ladder.
    assert templates.inherited(cmaf, job) == {"hls": {"segmentFormat": "fmp4"}}
    took = templates.inherited(cmaf, {"source": SOURCE, "template": "cmaf"})
    assert took == cmaf


@pytest.mark.parametrize(
    ("template_spec", "job_fields"),
    [
        ({"hls": {"segmentFormat": "ts"}}, {"video": {"codecs": ["av1"]}}),
        ({"hls": {"segmentSeconds": 4}}, {"video": {"codecs": ["av1"]}}),
        ({"video": {"codecs": ["av1"]}}, {"hls": {"segmentFormat": "ts"}}),
    ],
    ids=["template-ts", "template-default-ts", "template-av1-job-ts"],
)
def test_a_merge_of_av1_and_mpeg_ts_is_refused_with_the_reason(
    template_spec: dict[str, Any], job_fields: dict[str, Any]
) -> None:
    # Each object alone passes the API server (the job leaves the other half to the template).
    merged = templates.merge(template_spec, {"source": SOURCE, "template": "web", **job_fields})
    with pytest.raises(JobRejectedError) as refused:
        video_and_hls_options(templates.job_spec(merged, "web"), "web")
    assert refused.value.reason == "InvalidSpec"
    assert refused.value.message == (
        "video codec av1 needs hls.segmentFormat fmp4: HLS carries HEVC and AV1 in fragmented "
        "MP4 only, not MPEG-TS (with TranscodeTemplate web)"
    )
