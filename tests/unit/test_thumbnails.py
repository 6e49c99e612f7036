"""Poster and storyboard: the VTT's cues, each run's share of the thumbnails, the FFmpeg
branches and outputs, the spec's defaults and the status a job shows."""

from __future__ import annotations

import itertools
import json
import re
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from kube_transcode.ladder import HlsOptions, LadderPlan, SourceInfo, plan_ladder
from kube_transcode.messages import (
    ChunkTask,
    JobEvent,
    JobMessage,
    JobOutputs,
    JobRef,
    Phase,
    StagedSource,
    decode_job,
)
from kube_transcode.thumbnails import (
    Size,
    StoryboardOptions,
    ThumbnailOptions,
    scaled_size,
    storyboard_vtt,
    thumbnail_count,
    thumbnail_indices,
    vtt_timestamp,
)
from kube_transcode_operator.jobmessage import build_work
from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.settings import OperatorSettings
from kube_transcode_operator.transitions import apply_event
from kube_transcode_worker.assemble import PartManifest
from kube_transcode_worker.encode import ffmpeg_command
from kube_transcode_worker.store import content_type
from kube_transcode_worker.thumbnails import fill_gaps, plan_thumbnails, tile_command

pytestmark = pytest.mark.unit

CUE = re.compile(
    r"^(\d\d):(\d\d):(\d\d)\.(\d{3}) --> (\d\d):(\d\d):(\d\d)\.(\d{3})\n"
    r"(sheet-\d{4}\.jpg)#xywh=(\d+),(\d+),(\d+),(\d+)$",
    re.MULTILINE,
)
SOURCE = SourceInfo(
    width=1920,
    height=1080,
    duration_seconds=125.0,
    fps=Fraction(30),
    has_audio=True,
    video_codec="h264",
    container="mov,mp4,m4a,3gp,3g2,mj2",
)
OUT = Path("/work/out")
THUMBS = Path("/work/thumbs")


def cues(vtt: str) -> list[tuple[float, float, str, int, int, int, int]]:
    found = []
    for match in CUE.finditer(vtt):
        g = match.groups()
        start = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3]) / 1000
        end = int(g[4]) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7]) / 1000
        found.append((start, end, g[8], int(g[9]), int(g[10]), int(g[11]), int(g[12])))
    return found


def test_vtt_cues_cover_the_whole_duration_tile_by_tile() -> None:
    options = StoryboardOptions(interval_seconds=10, columns=3, rows=2)
    vtt = storyboard_vtt(125.0, options, Size(160, 90))
    assert vtt.startswith("WEBVTT\n\n")
    found = cues(vtt)
    assert len(found) == 13 == thumbnail_count(125.0, 10)
    assert found[0] == (0.0, 10.0, "sheet-0001.jpg", 0, 0, 160, 90)
    assert found[4] == (40.0, 50.0, "sheet-0001.jpg", 160, 90, 160, 90)
    assert found[6] == (60.0, 70.0, "sheet-0002.jpg", 0, 0, 160, 90)
    assert found[-1] == (120.0, 125.0, "sheet-0003.jpg", 0, 0, 160, 90)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(found))
    for _, _, _, x, y, w, h in found:  # inside a 3x2 sheet of 160x90 tiles
        assert x + w <= 480 and y + h <= 180


def test_vtt_timestamps_have_hours_and_milliseconds() -> None:
    assert vtt_timestamp(3725.5) == "01:02:05.500"
    assert vtt_timestamp(0) == "00:00:00.000"


def test_a_source_shorter_than_the_interval_has_one_thumbnail() -> None:
    assert cues(storyboard_vtt(4.2, StoryboardOptions(), Size(160, 90))) == [
        (0.0, 4.2, "sheet-0001.jpg", 0, 0, 160, 90)
    ]


def test_chunks_share_the_thumbnails_without_overlap_or_gap() -> None:
    edges = [0, 30, 60, 90, 125.0]
    shares = [list(thumbnail_indices(a, b, 7)) for a, b in itertools.pairwise(edges)]
    assert [i for share in shares for i in share] == list(range(thumbnail_count(125.0, 7)))
    assert shares[1] == [5, 6, 7, 8]  # 35, 42, 49, 56 s


def test_sizes_are_even_capped_at_the_source_and_keep_the_aspect() -> None:
    assert scaled_size(160, 1920, 1080) == Size(160, 90)
    assert scaled_size(1280, 640, 360) == Size(640, 360)
    assert scaled_size(161, 1000, 750) == Size(160, 120)


def part(kind: str = "video", start: float = 0.0, duration: float = 30.0) -> ChunkTask:
    return ChunkTask(
        kind=kind,  # type: ignore[arg-type]
        index=1,
        chunks=4,
        start_seconds=start,
        duration_seconds=duration,
        first_segment=int(start // 6),
        source=StagedSource(bucket="b", key="k"),
        probed=SOURCE,
        preset="veryfast",
    )


def test_the_chunk_holding_ten_percent_makes_the_poster_and_its_own_thumbnails() -> None:
    holding = plan_thumbnails(ThumbnailOptions(), SOURCE, part(start=0.0, duration=30.0))
    assert holding.poster is not None
    assert holding.poster.start_seconds == pytest.approx(12.5)
    assert holding.poster.size == Size(1280, 720)
    later = plan_thumbnails(ThumbnailOptions(), SOURCE, part(start=30.0, duration=30.0))
    assert later.poster is None
    assert later.storyboard is not None and list(later.storyboard.indices) == [3, 4, 5]
    assert plan_thumbnails(ThumbnailOptions(), SOURCE, part("audio", 0, 125)).empty


def test_turned_off_they_are_not_planned() -> None:
    off = ThumbnailOptions.model_validate(
        {"poster": {"enabled": False}, "storyboard": {"enabled": False}}
    )
    assert plan_thumbnails(off, SOURCE).empty


def plan() -> LadderPlan:
    return plan_ladder(SOURCE, hls=HlsOptions())


def test_thumbnails_are_branches_of_the_one_decode_and_outputs_after_the_hls_one() -> None:
    shots = plan_thumbnails(ThumbnailOptions(), SOURCE)
    args = ffmpeg_command(plan(), Path("/in.mp4"), OUT, thumbnails=shots, thumbs_dir=THUMBS)
    assert args.count("-i") == 1
    graph = args[args.index("-filter_complex") + 1]
    assert graph.startswith("[0:v:0]split=3[ladder][tposter][tboard];[ladder]scale=")
    assert "trim=start=12.500000:duration=1.0" in graph and "thumbnail=n=30[poster]" in graph
    assert "select='if(isnan(prev_selected_t),gte(t+0.000000,0)," in graph
    assert "scale=w=160:h=90,setsar=1,format=yuvj420p[board]" in graph
    hls_output = args.index(str(OUT.resolve() / "%v" / "index.m3u8"))
    poster = args.index(str(THUMBS / "poster.jpg"))
    frames = args.index(str(THUMBS / "frames" / "%06d.jpg"))
    assert hls_output < poster < frames == len(args) - 1
    tail = args[hls_output + 1 :]
    assert tail.count("passthrough") == 2  # image2 would otherwise repeat frames to a rate
    assert tail[tail.index("[board]") :].count("-frames:v") == 1
    assert tail[tail.index("[board]") :][tail[tail.index("[board]") :].index("-frames:v") + 1] == (
        "13"
    )


def test_a_chunk_selects_in_the_sources_time_and_numbers_its_thumbnails_globally() -> None:
    task = part(start=30.0, duration=30.0)
    shots = plan_thumbnails(ThumbnailOptions(), SOURCE, task)
    args = ffmpeg_command(
        plan(), "http://s3/b/k", OUT, part=task, thumbnails=shots, thumbs_dir=THUMBS
    )
    graph = args[args.index("-filter_complex") + 1]
    assert "[tposter]" not in graph
    assert "gte(t+30.000000,30)" in graph and "floor((t+30.000000)/10)" in graph
    start_numbers = [args[i + 1] for i, a in enumerate(args) if a == "-start_number"]
    assert start_numbers == ["5", "3"]  # segments from 5, thumbnails from 3


def test_no_thumbnails_leave_the_ladder_command_as_it_was() -> None:
    off = ThumbnailOptions.model_validate(
        {"poster": {"enabled": False}, "storyboard": {"enabled": False}}
    )
    shots = plan_thumbnails(off, SOURCE)
    with_off = ffmpeg_command(plan(), Path("/in.mp4"), OUT, thumbnails=shots, thumbs_dir=THUMBS)
    assert with_off == ffmpeg_command(plan(), Path("/in.mp4"), OUT)
    assert with_off[with_off.index("-filter_complex") + 1].startswith("[0:v:0]scale=")


def test_sheets_are_tiled_from_the_jpegs_not_the_video() -> None:
    args = tile_command(Path("/t/frames"), Path("/l/storyboard"), StoryboardOptions(columns=4))
    assert args[args.index("-i") + 1] == "/t/frames/%06d.jpg"
    assert args[args.index("-vf") + 1] == "tile=4x5"
    assert args[-1] == "/l/storyboard/sheet-%04d.jpg"


def test_a_missing_thumbnail_is_its_neighbours_copy(tmp_path: Path) -> None:
    for index, body in ((0, b"a"), (1, b"b"), (3, b"d")):
        (tmp_path / f"{index:06d}.jpg").write_bytes(body)
    fill_gaps(tmp_path, 5)
    assert [(tmp_path / f"{i:06d}.jpg").read_bytes() for i in range(5)] == [
        b"a", b"b", b"b", b"d", b"d",
    ]  # fmt: skip


def test_jpeg_and_vtt_are_stored_with_their_types() -> None:
    assert content_type("poster.jpg") == "image/jpeg"
    assert content_type("storyboard/storyboard.vtt") == "text/vtt"


def operator_settings() -> OperatorSettings:
    return OperatorSettings(rabbitmq_url=SecretStr("amqp://x"), default_bucket="media")


REF = JobRef(uid="u1", namespace="team", name="movie", generation=1)


def message_of(spec: dict[str, Any]) -> JobMessage:
    body = {"source": {"url": "s3://in/video.mp4"}, **spec}
    now = datetime(2026, 12, 1, tzinfo=UTC)
    return build_work(
        TranscodeJobSpec.from_body(body), REF, operator_settings(), started=now
    ).message


def test_the_spec_defaults_both_on_and_passes_its_choices_on() -> None:
    assert message_of({}).thumbnails == ThumbnailOptions()
    chosen = message_of(
        {"thumbnails": {"poster": {"width": 640},
                        "storyboard": {"intervalSeconds": 2, "columns": 4, "enabled": False}}}
    ).thumbnails  # fmt: skip
    assert (chosen.poster.enabled, chosen.poster.width) == (True, 640)
    board = chosen.storyboard
    assert (board.enabled, board.interval_seconds, board.columns, board.rows) == (False, 2, 4, 5)
    with pytest.raises(ValidationError):
        TranscodeJobSpec.from_body(
            {
                "source": {"url": "s3://in/v.mp4"},
                "thumbnails": {"storyboard": {"intervalSeconds": 0}},
            }
        )


def test_a_version_2_message_without_thumbnails_reads_with_the_defaults() -> None:
    body = json.loads(message_of({}).model_dump_json())
    del body["thumbnails"]
    body["schema_version"] = 2  # queued by the previous release
    assert decode_job(json.dumps(body).encode()).thumbnails == ThumbnailOptions()


def test_a_manifest_without_thumbnails_reads_as_none() -> None:
    manifest = PartManifest.model_validate({"task": "chunk-0000", "renditions": {}})
    assert (manifest.thumbnails, manifest.poster) == ((), False)


def succeeded(
    poster: str | None, storyboard: str | None, before: dict[str, Any] | None = None
) -> dict[str, Any]:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    outputs = JobOutputs(
        master_uri="s3://media/team/movie/master.m3u8",
        renditions=(),
        has_audio=False,
        poster_uri=poster,
        storyboard_uri=storyboard,
    )
    event = JobEvent(
        job=REF, attempt=1, worker="w", phase=Phase.succeeded, outputs=outputs,
        started_at=at, at=at,
    )  # fmt: skip
    url = "http://cdn.local/media/team/movie/master.m3u8"
    current = {"outputs": before} if before else {}
    patch: dict[str, Any] = apply_event(current, event, master_playlist_url=url, now=at).patch
    return dict(patch["outputs"])


def test_status_lists_poster_and_storyboard_with_uri_and_url() -> None:
    outputs = succeeded(
        "s3://media/team/movie/poster.jpg", "s3://media/team/movie/storyboard/storyboard.vtt"
    )
    assert outputs["poster"] == {
        "uri": "s3://media/team/movie/poster.jpg",
        "url": "http://cdn.local/media/team/movie/poster.jpg",
    }
    assert outputs["storyboard"]["url"] == (
        "http://cdn.local/media/team/movie/storyboard/storyboard.vtt"
    )


def test_turned_off_they_leave_no_status_entry() -> None:
    assert not {"poster", "storyboard"} & succeeded(None, None).keys()
    # A rerun without them removes an earlier generation's entries (None in a merge patch).
    earlier = {"poster": {"uri": "s3://media/team/movie/poster.jpg", "url": None}}
    outputs = succeeded(None, None, before=earlier)
    assert outputs["poster"] is None and "storyboard" not in outputs
