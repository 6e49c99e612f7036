"""A chunked job's ladder from its parts: each part's manifest, and the playlists they make.

A part (a video chunk, or the audio) stores its segments at their ladder keys and then its
manifest: per rendition, the segments it made (name, duration, size), the CODECS its
bitstream shows and (fMP4) its init segment's name and digest: every chunk writes the same
init bytes to the same key, which the assembly checks. The manifests are all it needs: the media
playlists are the parts' segments in order (the numbers and timestamps are already those of
one continuous encode), and the master playlist is measured from their sizes, as a whole run
measures its files. Pure, except `manifest_of_folder`, which reads a part's output folder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from kube_transcode.chunks import AUDIO_TASK, chunk_task_name
from kube_transcode.ladder import AUDIO_RENDITION_NAME, LadderPlan
from kube_transcode_worker.hls import (
    FMP4_PLAYLIST_VERSION,
    IFRAME_PLAYLIST_NAME,
    MASTER_PLAYLIST_NAME,
    MEDIA_PLAYLIST_NAME,
    InitSegment,
    RenditionPart,
    RenditionStats,
    iframe_playlist,
    master_playlist,
    read_rendition,
    rendition_stats,
)
from kube_transcode_worker.playlists import Segment, write_media_playlist

# FFmpeg writes version 6 media playlists for what an MPEG-TS ladder uses; ours say the same.
MEDIA_PLAYLIST_VERSION = 6


class PartManifest(BaseModel):
    """What one part stored: its renditions' segments, in order."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    task: str
    renditions: dict[str, RenditionPart]
    # The storyboard thumbnails (their indices) and whether the poster, stored in the work
    # area; a manifest written before thumbnails existed has none.
    thumbnails: tuple[int, ...] = ()
    poster: bool = False


def manifest_of_folder(task: str, folder: Path, plan: LadderPlan, *, audio: bool) -> PartManifest:
    """The manifest of a part's FFmpeg output folder (one sub-folder per rendition)."""
    names = [AUDIO_RENDITION_NAME] if audio else [r.name for r in plan.renditions]
    return PartManifest(
        task=task,
        renditions={name: read_rendition(folder / name, video=not audio) for name in names},
    )


def part_names(chunks: int, has_audio: bool) -> list[str]:
    """Every part of a job with `chunks` video chunks, in playlist order, audio last."""
    return [chunk_task_name(i) for i in range(chunks)] + ([AUDIO_TASK] if has_audio else [])


def shared_init(name: str, parts: Sequence[RenditionPart]) -> InitSegment | None:
    """The rendition's one init segment (fMP4): every part must have made the same bytes."""
    inits = {part.init for part in parts}
    if len(inits) > 1:
        raise ValueError(f"the chunks of rendition {name} made different init segments")
    return inits.pop() if inits else None


def media_playlist(parts: Sequence[RenditionPart]) -> str:
    """One rendition's VOD playlist: the parts' segments, in order, numbered from 0."""
    segments = [segment for part in parts for segment in part.segments]
    target = max(part.target_duration for part in parts)
    init = parts[0].init
    return write_media_playlist(
        [Segment(s.uri, s.duration) for s in segments],
        target_duration=target,
        version=MEDIA_PLAYLIST_VERSION if init is None else FMP4_PLAYLIST_VERSION,
        init_uri=None if init is None else init.uri,
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
        shared_init(rendition.name, parts)
        playlists[f"{rendition.name}/{MEDIA_PLAYLIST_NAME}"] = media_playlist(parts)
        iframes = iframe_playlist(parts)
        if iframes is not None:
            playlists[f"{rendition.name}/{IFRAME_PLAYLIST_NAME}"] = iframes
        stats[rendition.name] = rendition_stats(parts)
    if plan.audio is not None:
        audio = manifests[AUDIO_TASK].renditions[AUDIO_RENDITION_NAME]
        playlists[f"{AUDIO_RENDITION_NAME}/{MEDIA_PLAYLIST_NAME}"] = media_playlist([audio])
        stats[AUDIO_RENDITION_NAME] = rendition_stats([audio])
    playlists[MASTER_PLAYLIST_NAME] = master_playlist(plan, stats)
    return playlists


def segment_keys(prefix: str, manifests: Mapping[str, PartManifest]) -> list[str]:
    """The ladder keys of every segment (and init segment) the parts stored."""
    keys = {
        f"{prefix}/{rendition}/{uri}"
        for manifest in manifests.values()
        for rendition, part in manifest.renditions.items()
        for uri in [*(s.uri for s in part.segments), *([part.init.uri] if part.init else [])]
    }
    return sorted(keys)
