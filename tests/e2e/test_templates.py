"""A TranscodeTemplate through the installed chart, as a user sees it: kubectl apply of the
template and of a job that names it and overrides one field, then the ladder in S3."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kube_transcode_devstack import release as chart
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME
from kube_transcode_worker.playlists import parse_master_playlist
from tests.e2e.helpers import API_VERSION, Jobs, Sources
from tests.harness.media import check_media_playlist
from tests.harness.storage import download_folder

pytestmark = pytest.mark.e2e

BUCKET = chart.DEFAULT_BUCKET
JOB_SECONDS = 90


def test_a_job_runs_with_its_templates_settings_and_its_own_override(
    jobs: Jobs, sources: Sources, output_s3: Any, tmp_path: Path
) -> None:
    template = {
        "apiVersion": API_VERSION,
        "kind": "TranscodeTemplate",
        "metadata": {"name": "short-segments"},
        "spec": {
            "ladder": {"rungs": [{"name": "360p"}, {"name": "240p"}]},
            "hls": {"segmentSeconds": 2},
            "retry": {"attempts": 2},
        },
    }
    jobs.k("apply", "-f", "-", input=yaml.safe_dump(template))
    job = {
        "apiVersion": API_VERSION,
        "kind": "TranscodeJob",
        "metadata": {"name": "templated"},
        "spec": {
            "source": {"url": sources.medium.url},
            "template": "short-segments",
            "ladder": {"rungs": [{"name": "240p"}]},  # the one field overridden
        },
    }
    jobs.apply(job)
    jobs.k(
        "wait", "transcodejob/templated", "--for=condition=Succeeded", f"--timeout={JOB_SECONDS}s"
    )
    status = jobs.require("templated")["status"]
    assert [r["name"] for r in status["outputs"]["renditions"]] == ["240p"]
    assert status["template"]["name"] == "short-segments"
    assert status["template"]["generation"] == 1
    assert status["template"]["inherited"] == {
        "hls": {"segmentSeconds": 2},
        "retry": {"attempts": 2},
    }

    prefix = f"{jobs.namespace}/templated"
    master = parse_master_playlist(
        output_s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{MASTER_PLAYLIST_NAME}")["Body"]
        .read()
        .decode()
    )
    assert [v.uri for v in master.variants] == ["240p/index.m3u8"]
    download_folder(output_s3, BUCKET, prefix, tmp_path)
    check_media_playlist(tmp_path / "240p" / "index.m3u8", 2, 0.1)  # the template's 2 s
    assert "short-segments" in jobs.k("get", "tt")
