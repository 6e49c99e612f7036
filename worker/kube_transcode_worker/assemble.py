"""A chunked job's ladder from its parts: each part's manifest, and the playlists they make.

A part (a video chunk, or the audio) stores its segments at their ladder keys and then its
manifest: per rendition, the segments it made (name, duration, size) and, for video, the
CODECS its first segment shows. The manifests are all the assembly needs: the media
playlists are the parts' segments in order (the numbers and timestamps are already those of
one continuous encode), and the master playlist is measured from their sizes, as a whole run
measures its files. Pure, except `manifest_of_folder`, which reads a part's output folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from kube_transcode.chunks import AUDIO_TASK, chunk_task_name
from kube_transcode.ladder import AUDIO_RENDITION_NAME, LadderPlan
from kube_transcode_worker.hls import (
    AAC_LC_CODECS,
    MASTER_PLAYLIST_NAME,
    MEDIA_PLAYLIST_NAME,
    RenditionStats,
    average_bitrate,
    h264_codecs_from_ts,
    master_playlist,
    parse_media_playlist,
    peak_segment_bitrate,
)

_SPS_SEARCH_BYTES = 256 * 1024
# FFmpeg writes version 6 media playlists for what this ladder uses; ours say the same.
MEDIA_PLAYLIST_VERSION = 6


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SegmentEntry(_Model):
    uri: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    duration: float = Field(gt=0)
    size: int = Field(ge=0)


class RenditionPart(_Model):
    target_duration: int = Field(ge=1)
    segments: tuple[SegmentEntry, ...]
    codecs: str | None = None


class PartManifest(_Model):
    """What one part stored: its renditions' segments, in order."""

    task: str
    renditions: dict[str, RenditionPart]


def manifest_of_folder(task: str, folder: Path, plan: LadderPlan, *, audio: bool) -> PartManifest:
    """The manifest of a part's FFmpeg output folder (one sub-folder per rendition)."""
    names = [AUDIO_RENDITION_NAME] if audio else [r.name for r in plan.renditions]
    renditions: dict[str, RenditionPart] = {}
    for name in names:
        playlist = parse_media_playlist((folder / name / MEDIA_PLAYLIST_NAME).read_text())
        if not playlist.segments:
            raise ValueError(f"rendition {name} of {task} has no segments")
        segments = tuple(
            SegmentEntry(
                uri=segment.uri,
                duration=segment.duration,
                size=(folder / name / segment.uri).stat().st_size,
            )
            for segment in playlist.segments
        )
        if audio:
            codecs: str | None = AAC_LC_CODECS
        else:
            with (folder / name / segments[0].uri).open("rb") as first:
                codecs = h264_codecs_from_ts(first.read(_SPS_SEARCH_BYTES))
        renditions[name] = RenditionPart(
            target_duration=playlist.target_duration, segments=segments, codecs=codecs
        )
    return PartManifest(task=task, renditions=renditions)


def part_names(chunks: int, has_audio: bool) -> list[str]:
    """Every part of a job with `chunks` video chunks, in playlist order, audio last."""
    return [chunk_task_name(i) for i in range(chunks)] + ([AUDIO_TASK] if has_audio else [])


def media_playlist(parts: Sequence[RenditionPart]) -> str:
    """One rendition's VOD playlist: the parts' segments, in order, numbered from 0."""
    segments = [segment for part in parts for segment in part.segments]
    target = max(part.target_duration for part in parts)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{MEDIA_PLAYLIST_VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:VOD",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for segment in segments:
        lines += [f"#EXTINF:{segment.duration:.6f},", segment.uri]
    lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def _stats(parts: Sequence[RenditionPart]) -> RenditionStats:
    sizes = [(s.size, s.duration) for part in parts for s in part.segments]
    target = max(part.target_duration for part in parts)
    return RenditionStats(
        peak_bps=peak_segment_bitrate(sizes, target),
        average_bps=average_bitrate(sizes),
        codecs=parts[0].codecs,
    )


def assemble(
    plan: LadderPlan, manifests: Mapping[str, PartManifest], chunks: int
) -> dict[str, str]:
    """Relative path -> text of every playlist of the ladder, the master included.

    Raises ValueError when a part is missing or does not hold what the plan asks of it.
    """
    names = part_names(chunks, plan.audio is not None)
    missing = [name for name in names if name not in manifests]
    if missing:
        raise ValueError(f"parts not stored yet: {', '.join(missing)}")
    playlists: dict[str, str] = {}
    stats: dict[str, RenditionStats] = {}
    video_parts = [manifests[chunk_task_name(i)] for i in range(chunks)]
    for rendition in plan.renditions:
        try:
            parts = [part.renditions[rendition.name] for part in video_parts]
        except KeyError:
            raise ValueError(f"a chunk lacks rendition {rendition.name}") from None
        playlists[f"{rendition.name}/{MEDIA_PLAYLIST_NAME}"] = media_playlist(parts)
        stats[rendition.name] = _stats(parts)
    if plan.audio is not None:
        audio = manifests[AUDIO_TASK].renditions[AUDIO_RENDITION_NAME]
        playlists[f"{AUDIO_RENDITION_NAME}/{MEDIA_PLAYLIST_NAME}"] = media_playlist([audio])
        stats[AUDIO_RENDITION_NAME] = _stats([audio])
    playlists[MASTER_PLAYLIST_NAME] = master_playlist(plan, stats)
    return playlists


def segment_keys(prefix: str, manifests: Mapping[str, PartManifest]) -> list[str]:
    """The ladder keys of every segment the parts stored."""
    return [
        f"{prefix}/{rendition}/{segment.uri}"
        for manifest in manifests.values()
        for rendition, part in manifest.renditions.items()
        for segment in part.segments
    ]
