"""Poster and storyboard on real workers, RabbitMQ, MinIO and FFmpeg, single run and chunked.

What a user checks: the poster is a JPEG of the asked width and not black; the storyboard's
WebVTT track has cues from 0 to the end without a gap, each naming a tile inside its sprite
sheet; turned off, neither exists nor is listed in the outputs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from kube_transcode.chunks import ChunkingOptions
from kube_transcode.messages import JobMessage, Phase
from kube_transcode.thumbnails import ThumbnailOptions
from kube_transcode_worker.probe import ProbeLimits, probe_source
from tests.harness.broker import Broker
from tests.harness.media import make_source
from tests.harness.storage import check_stored_ladder, download_folder, upload_source
from tests.harness.thumbnails import check_poster, check_storyboard
from tests.harness.worker import Workers, job_message

pytestmark = pytest.mark.integration

CHOSEN = ThumbnailOptions.model_validate(
    {
        "poster": {"width": 256},
        "storyboard": {"interval_seconds": 2, "width": 96, "columns": 3, "rows": 2},
    }
)
OFF = ThumbnailOptions.model_validate(
    {"poster": {"enabled": False}, "storyboard": {"enabled": False}}
)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    return {
        "short": make_source(folder / "short.mp4", width=320, height=180, seconds=18),
        "long": make_source(folder / "long.mp4", width=320, height=180, seconds=50),
    }


def _run(broker: Broker, message: JobMessage) -> Any:
    broker.publish(message)
    done = broker.event(message.job.uid, Phase.succeeded, timeout=300)
    assert done.outputs is not None
    return done.outputs


def _check(s3: Any, bucket: str, message: JobMessage, source: Path, dest: Path) -> None:
    """The stored poster and storyboard: one cue every 2 s, sheets of 3x2 tiles."""
    check_stored_ladder(s3, bucket, message.output.prefix)
    download_folder(s3, bucket, message.output.prefix, dest)
    check_poster(dest / "poster.jpg", width=256)
    duration = probe_source(source, ProbeLimits()).duration_seconds
    cues = check_storyboard(dest / "storyboard", duration, thumb_width=96)
    assert [cue.start for cue in cues] == [2.0 * n for n in range(math.ceil(duration / 2))]
    sheets = sorted(p.name for p in (dest / "storyboard").glob("sheet-*.jpg"))
    assert sheets == [f"sheet-{n:04d}.jpg" for n in range(1, math.ceil(len(cues) / 6) + 1)]
    assert {cue.sheet for cue in cues} == set(sheets)


def test_a_single_run_makes_poster_and_storyboard_beside_the_ladder(
    workers: Workers, broker: Broker, s3: Any, bucket: str, sources: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    source = sources["short"]
    message = job_message(bucket, upload_source(s3, bucket, source), thumbnails=CHOSEN)
    workers.start()
    outputs = _run(broker, message)
    assert outputs.poster_uri == message.output.uri("poster.jpg")
    assert outputs.storyboard_uri == message.output.uri("storyboard/storyboard.vtt")
    _check(s3, bucket, message, source, tmp_path / "whole")

    off = job_message(bucket, upload_source(s3, bucket, source), thumbnails=OFF)
    outputs = _run(broker, off)
    assert (outputs.poster_uri, outputs.storyboard_uri) == (None, None)
    stored = download_folder(s3, bucket, off.output.prefix, tmp_path / "off")
    assert not [key for key in stored if key.endswith((".jpg", ".vtt"))], stored


def test_chunks_make_their_own_thumbnails_and_the_assembly_tiles_them(
    workers: Workers, broker: Broker, s3: Any, bucket: str, sources: dict[str, Path],
    tmp_path: Path,
) -> None:  # fmt: skip
    source = sources["long"]
    message = job_message(
        bucket,
        upload_source(s3, bucket, source),
        chunking=ChunkingOptions(chunk_seconds=12),
        thumbnails=CHOSEN,
    )
    workers.start("w-one")
    workers.start("w-two")
    outputs = _run(broker, message)
    assert outputs.poster_uri == message.output.uri("poster.jpg")
    _check(s3, bucket, message, source, tmp_path / "chunked")
