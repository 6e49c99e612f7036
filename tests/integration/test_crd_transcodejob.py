"""The TranscodeJob CRD at the real API server: bad specs refused with readable messages,
good ones stored with their defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kube_transcode_devstack.stack import Stack
from tests.harness.kube import Kubectl, install_crd

# Re-exported (`as`) only for test_operator_flow, until it imports it from tests.harness.kube.

# No operator may act on these jobs: they check what the API server alone does.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("installed_operator_paused")]


def job(name: str, spec: dict[str, object]) -> str:
    return json.dumps(
        {
            "apiVersion": "kubetranscode.io/v1alpha1",
            "kind": "TranscodeJob",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def refused(kubectl: Kubectl, spec: dict[str, object]) -> str:
    out = kubectl("apply", "-f", "-", input=job("bad", spec), check=False)
    assert "is invalid" in out, f"the API server accepted {spec}: {out}"
    return out


SOURCE = {"url": "s3://media/in/video.mp4"}


@pytest.mark.usefixtures("crd")
def test_defaults_are_filled_in(namespace: Kubectl) -> None:
    namespace("apply", "-f", "-", input=job("defaults", {"source": SOURCE}))
    spec = json.loads(namespace("get", "tj", "defaults", "-o", "json"))["spec"]
    assert spec["priority"] == "normal"
    assert spec["pool"] == "default"
    assert spec["output"] == {}
    # Left to a TranscodeTemplate: the operator applies their defaults (standard preset, 6 s
    # segments, 3 attempts, 10 s / 300 s backoff) after the merge (test_templates.py).
    assert not {"ladder", "hls", "retry"} & spec.keys()


@pytest.mark.usefixtures("crd")
def test_explicit_rungs_may_name_standard_rungs(namespace: Kubectl) -> None:
    spec = {
        "source": {"url": "https://videos.example.com/a.mp4"},
        "ladder": {"rungs": [{"name": "720p"}, {"name": "small", "height": 200,
                                               "videoBitrateKbps": 300}]},
        "priority": "high",
        "output": {"bucket": "media", "prefix": "shows/ep-1"},
    }  # fmt: skip
    namespace("apply", "-f", "-", input=job("explicit", spec))
    printed = namespace("get", "tj", "explicit")
    assert printed.split("\n")[0].split() == [
        "NAME", "PHASE", "PROGRESS", "CHUNKS", "PRIORITY", "POOL", "ATTEMPTS", "AGE",
    ]  # fmt: skip
    assert "high" in printed and "default" in printed


@pytest.mark.usefixtures("crd")
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({}, 'spec.source: Required value'),
        ({"source": {"url": "ftp://host/a.mp4"}}, "source.url must start with s3:// or https://"),
        ({"source": {"url": "s3://bucket"}}, "source.url must name a host or bucket and an object"),
        ({"source": SOURCE, "priority": "urgent"},
         'spec.priority: Unsupported value: "urgent": supported values: "low", "normal", "high"'),
        ({"source": SOURCE, "ladder": {"preset": "mobile", "rungs": [{"name": "240p"}]}},
         "exactly one of ladder.preset or ladder.rungs must be set"),
        ({"source": SOURCE, "ladder": {}}, "exactly one of ladder.preset or ladder.rungs"),
        ({"source": SOURCE, "ladder": {"rungs": [{"name": "720p"}, {"name": "720p"}]}},
         "ladder.rungs names must be unique"),
        ({"source": SOURCE, "ladder": {"rungs": [{"name": "tiny"}]}},
         "rung tiny: height and videoBitrateKbps are required unless the name is a standard"),
        ({"source": SOURCE, "ladder": {"rungs": [
            {"name": "odd", "height": 241, "videoBitrateKbps": 300}]}},
         "rung odd: height must be even"),
        ({"source": SOURCE, "ladder": {"preset": "cinema"}},
         "spec.ladder.preset: Unsupported value"),
        ({"source": SOURCE, "hls": {"segmentSeconds": 30}},
         "spec.hls.segmentSeconds in body should be less than or equal to 10"),
        ({"source": SOURCE, "retry": {"attempts": 0}},
         "spec.retry.attempts in body should be greater than or equal to 1"),
        ({"source": SOURCE, "retry": {"backoffSeconds": 60, "maxBackoffSeconds": 30}},
         "retry.maxBackoffSeconds must be at least retry.backoffSeconds"),
        ({"source": SOURCE, "output": {"prefix": "a/../b"}},
         "output.prefix must not contain '.' or '..' segments"),
        ({"source": SOURCE, "output": {"prefix": "/abs"}},
         "output.prefix must be path segments"),
        ({"source": SOURCE, "pool": "GPU_pool"}, "spec.pool in body should match"),
        ({"source": SOURCE, "chunking": {"chunkSeconds": 6}},
         "spec.chunking.chunkSeconds: Invalid value: 6: spec.chunking.chunkSeconds in body "
         "should be greater than or equal to 12"),
        ({"source": SOURCE, "chunking": {"chunkSeconds": 90}},
         "spec.chunking.chunkSeconds in body should be less than or equal to 60"),
        ({"source": SOURCE, "chunking": {"chunkSeconds": 20}},
         "spec.chunking.chunkSeconds: Invalid value: chunking.chunkSeconds must "
         "be a whole number of hls.segmentSeconds (default 6)"),
        ({"source": SOURCE, "hls": {"segmentSeconds": 4}, "chunking": {"chunkSeconds": 30}},
         "spec.chunking.chunkSeconds: Invalid value: chunking.chunkSeconds must "
         "be a whole number of hls.segmentSeconds"),
        ({"source": SOURCE, "template": "web", "hls": {"segmentSeconds": 8},
          "chunking": {"chunkSeconds": 36}},
         "chunking.chunkSeconds must be a whole number of hls.segmentSeconds"),
        ({"source": SOURCE, "chunking": {"mode": "Sometimes"}},
         'spec.chunking.mode: Unsupported value: "Sometimes": supported values: "Auto", "Off"'),
        ({"source": SOURCE, "thumbnails": {"storyboard": {"intervalSeconds": 0}}},
         "spec.thumbnails.storyboard.intervalSeconds: Invalid value: 0: "
         "spec.thumbnails.storyboard.intervalSeconds in body should be greater than or equal to 1"),
        ({"source": SOURCE, "thumbnails": {"poster": {"width": 8}}},
         "spec.thumbnails.poster.width in body should be greater than or equal to 16"),
        ({"source": SOURCE, "video": {"codecs": ["hevc"]}},
         "spec.video.codecs: Invalid value: video.codecs hevc and av1 need hls.segmentFormat: "
         "fmp4 (the default is ts; HLS carries them in fragmented MP4 only)"),
        ({"source": SOURCE, "video": {"codecs": ["h264", "av1"]}, "hls": {"segmentFormat": "ts"}},
         "spec.video.codecs: Invalid value: video.codecs hevc and av1 need hls.segmentFormat: "
         "fmp4 (HLS carries them in fragmented MP4 only)"),
        ({"source": SOURCE, "template": "web", "video": {"codecs": ["hevc"]},
          "hls": {"segmentFormat": "ts"}},
         "video.codecs hevc and av1 need hls.segmentFormat: fmp4"),
        ({"source": SOURCE, "video": {"codecs": ["vp9"]}},
         'spec.video.codecs[0]: Unsupported value: "vp9": supported values: "h264", "hevc", '
         '"av1"'),
        ({"source": SOURCE, "video": {"codecs": ["h264", "h264"]}},
         'spec.video.codecs[1]: Duplicate value: "h264"'),
        ({"source": SOURCE, "video": {"codecs": []}},
         "spec.video.codecs in body should have at least 1 items"),
        ({"source": SOURCE, "hls": {"segmentFormat": "cmaf"}},
         'spec.hls.segmentFormat: Unsupported value: "cmaf": supported values: "ts", "fmp4"'),
    ],
    ids=[
        "no-source", "ftp-source", "no-object", "bad-priority", "preset-and-rungs",
        "neither", "duplicate-rungs", "custom-rung-incomplete", "odd-height", "unknown-preset",
        "long-segments", "zero-attempts", "backoff-order", "dotdot-prefix", "absolute-prefix",
        "bad-pool", "short-chunks", "long-chunks", "chunks-not-whole-default-segments",
        "chunks-not-whole-segments", "chunks-not-whole-segments-with-template",
        "unknown-chunking-mode", "storyboard-interval-zero", "tiny-poster",
        "hevc-in-default-ts", "av1-in-ts", "hevc-in-ts-with-template", "unknown-codec",
        "duplicate-codecs", "no-codecs", "unknown-segment-format",
    ],
)  # fmt: skip
def test_bad_specs_are_refused_with_a_readable_message(
    namespace: Kubectl, spec: dict[str, object], message: str
) -> None:
    assert message in refused(namespace, spec)


@pytest.mark.usefixtures("crd")
def test_only_the_operator_writes_status(namespace: Kubectl) -> None:
    """A user's apply cannot set status: it goes through the status subresource."""
    body = json.loads(job("status", {"source": SOURCE}))
    body["status"] = {"phase": "Succeeded"}
    namespace("apply", "-f", "-", input=json.dumps(body))
    stored = json.loads(namespace("get", "tj", "status", "-o", "json"))
    assert "status" not in stored or stored["status"].get("phase") is None


@pytest.mark.usefixtures("crd")
def test_chunking_of_whole_segments_is_stored_and_a_template_s_segments_left_to_the_operator(
    namespace: Kubectl,
) -> None:
    whole = {"source": SOURCE, "hls": {"segmentSeconds": 4},
             "chunking": {"mode": "Auto", "chunkSeconds": 48}}  # fmt: skip
    namespace("apply", "-f", "-", input=job("whole", whole))
    # 20 s is not whole 6 s segments, but the template may set 4 s or 10 s ones: the operator
    # checks the merged spec (test_operator_chunks.py).
    templated: dict[str, object] = {
        "source": SOURCE, "template": "web", "chunking": {"chunkSeconds": 20},
    }  # fmt: skip
    namespace("apply", "-f", "-", input=job("templated", templated))
    off: dict[str, object] = {"source": SOURCE, "chunking": {"mode": "Off"}}
    namespace("apply", "-f", "-", input=job("off", off))
    stored = json.loads(namespace("get", "tj", "whole", "templated", "off", "-o", "json"))
    assert [item["spec"].get("chunking") for item in stored["items"]] == [
        {"mode": "Auto", "chunkSeconds": 48}, {"chunkSeconds": 20}, {"mode": "Off"},
    ]  # fmt: skip


@pytest.mark.usefixtures("crd")
def test_a_template_s_chunks_must_be_whole_segments_of_its_own_segment_length(
    namespace: Kubectl,
) -> None:
    def template(name: str, spec: dict[str, object]) -> str:
        return json.dumps({"apiVersion": "kubetranscode.io/v1alpha1",
                           "kind": "TranscodeTemplate", "metadata": {"name": name},
                           "spec": spec})  # fmt: skip

    bad: dict[str, object] = {"hls": {"segmentSeconds": 4}, "chunking": {"chunkSeconds": 30}}
    out = namespace("apply", "-f", "-", input=template("bad", bad), check=False)
    assert "spec.chunking.chunkSeconds: Invalid value" in out
    assert "chunking.chunkSeconds must be a whole number of hls.segmentSeconds" in out
    out = namespace("apply", "-f", "-", input=template("short", {"chunking": {"chunkSeconds": 8}}),
                    check=False)  # fmt: skip
    assert "spec.chunking.chunkSeconds in body should be greater than or equal to 12" in out
    namespace("apply", "-f", "-", input=template("good", {"chunking": {"chunkSeconds": 20}}))


@pytest.mark.usefixtures("crd")
def test_every_codec_in_fmp4_is_stored_and_a_template_s_format_left_to_the_operator(
    namespace: Kubectl,
) -> None:
    every: dict[str, object] = {
        "source": SOURCE, "video": {"codecs": ["h264", "hevc", "av1"]},
        "hls": {"segmentFormat": "fmp4"},
    }  # fmt: skip
    namespace("apply", "-f", "-", input=job("every", every))
    # Without a segmentFormat of its own the job may take the template's fmp4: the operator
    # checks the merged spec (test_operator_templates.py).
    templated: dict[str, object] = {
        "source": SOURCE, "template": "cmaf", "video": {"codecs": ["av1"]},
    }  # fmt: skip
    namespace("apply", "-f", "-", input=job("templated", templated))
    stored = json.loads(namespace("get", "tj", "every", "templated", "-o", "json"))
    assert [(item["spec"]["video"], item["spec"].get("hls")) for item in stored["items"]] == [
        ({"codecs": ["h264", "hevc", "av1"]}, {"segmentFormat": "fmp4"}),
        ({"codecs": ["av1"]}, None),
    ]


@pytest.mark.usefixtures("crd")
def test_a_template_s_codecs_must_fit_its_own_segment_format(namespace: Kubectl) -> None:
    def template(name: str, spec: dict[str, object]) -> str:
        return json.dumps({"apiVersion": "kubetranscode.io/v1alpha1",
                           "kind": "TranscodeTemplate", "metadata": {"name": name},
                           "spec": spec})  # fmt: skip

    bad = {"video": {"codecs": ["hevc"]}, "hls": {"segmentFormat": "ts"}}
    out = namespace("apply", "-f", "-", input=template("bad", bad), check=False)
    assert (
        "spec.video.codecs: Invalid value: video.codecs hevc and av1 need "
        "hls.segmentFormat: fmp4 (HLS carries them in fragmented MP4 only)"
    ) in out
    out = namespace("apply", "-f", "-", input=template("vp9", {"video": {"codecs": ["vp9"]}}),
                    check=False)  # fmt: skip
    assert 'spec.video.codecs[0]: Unsupported value: "vp9"' in out
    # A job naming it may set fmp4 itself.
    namespace("apply", "-f", "-", input=template("hevc", {"video": {"codecs": ["hevc"]}}))
    cmaf = {"video": {"codecs": ["h264", "av1"]}, "hls": {"segmentFormat": "fmp4"}}
    namespace("apply", "-f", "-", input=template("cmaf", cmaf))


EXAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "examples"


@pytest.mark.usefixtures("crd")
@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_every_example_manifest_is_accepted_by_the_api_server(
    namespace: Kubectl, kube: Stack, example: str
) -> None:
    """What the README points users at must apply as it is (a server-side dry run), in this
    test's namespace rather than the one an example may name."""
    install_crd(kube.layout.kubeconfig, "workerpools.yaml")
    documents = [d for d in yaml.safe_load_all((EXAMPLES / example).read_text()) if d]
    for document in documents:
        document["metadata"].pop("namespace", None)
    manifest = yaml.safe_dump_all(documents)
    out = namespace("apply", "--dry-run=server", "-f", "-", input=manifest, check=False)
    assert "created (server dry run)" in out and "error" not in out.lower(), out
