"""A CMAF TranscodeJob through the installed chart: the example manifest, kubectl and S3 only.

manifests/examples/cmaf-codecs.yaml as a user would apply it, with this session's source and a
two-rung ladder so it stays quick: fMP4 segments, every rung in H.264, HEVC and AV1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_transcode.ladder import NAMED_RUNGS, HlsOptions, VideoOptions, plan_ladder
from kube_transcode_devstack import release as chart
from kube_transcode_worker.probe import probe_source
from tests.e2e.helpers import Jobs, Sources
from tests.harness.media import check_ladder
from tests.harness.storage import download_folder

pytestmark = pytest.mark.e2e

EXAMPLE = Path(__file__).parents[2] / "manifests" / "examples" / "cmaf-codecs.yaml"
RUNGS = ("360p", "240p")
JOB_SECONDS = 180  # three codecs of two rungs for 12 s on a loaded two-core machine


def test_the_cmaf_example_makes_every_rung_in_every_codec_with_truthful_codecs(
    jobs: Jobs, sources: Sources, output_s3: Any, tmp_path: Path
) -> None:
    manifest = yaml.safe_load(EXAMPLE.read_text())
    manifest["spec"]["source"]["url"] = sources.medium.url
    manifest["spec"]["ladder"] = {"rungs": [{"name": rung} for rung in RUNGS]}
    name = manifest["metadata"]["name"]
    jobs.apply(manifest)
    jobs.k("wait", f"transcodejob/{name}", "--for=condition=Succeeded", f"--timeout={JOB_SECONDS}s")
    outputs = jobs.require(name)["status"]["outputs"]

    # status lists every variant with its CODECS, as a player reads them in the master.
    codecs = {r["name"]: r["codecs"].split(",")[0].split(".")[0] for r in outputs["renditions"]}
    assert codecs == {
        "360p": "avc1",
        "240p": "avc1",
        "360p-hevc": "hvc1",
        "240p-hevc": "hvc1",
        "360p-av1": "av01",
        "240p-av1": "av01",
    }
    prefix = f"{jobs.namespace}/{name}"
    download_folder(output_s3, chart.DEFAULT_BUCKET, prefix, tmp_path)
    spec = manifest["spec"]
    plan = plan_ladder(
        probe_source(sources.medium.path),
        [NAMED_RUNGS[r] for r in RUNGS],
        hls=HlsOptions(
            segment_seconds=spec["hls"]["segmentSeconds"],
            segment_format=spec["hls"]["segmentFormat"],
        ),
        video=VideoOptions(codecs=tuple(spec["video"]["codecs"])),
    )
    # Apple's authoring rules on the fMP4 ladder, and each CODECS against ffprobe.
    check_ladder(tmp_path, plan)
    assert (tmp_path / "360p-av1" / "init_360p-av1.mp4").is_file()
