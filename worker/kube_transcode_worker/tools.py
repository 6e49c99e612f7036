"""What every task of a job uses: the worker's tools, and the steps whole runs and parts share."""

from __future__ import annotations

from dataclasses import dataclass

from kube_transcode.ladder import AUDIO_RENDITION_NAME, LadderPlan, SourceInfo, plan_ladder
from kube_transcode.messages import JobMessage, JobOutputs, RenditionOutput
from kube_transcode_worker.errors import CancelRequestedError, PermanentJobError
from kube_transcode_worker.fetch import Fetcher
from kube_transcode_worker.hls import MASTER_PLAYLIST_NAME, parse_master_playlist
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.settings import WorkerSettings
from kube_transcode_worker.store import LadderStore


@dataclass(frozen=True)
class JobTools:
    """What every job uses, built once per worker."""

    settings: WorkerSettings
    fetcher: Fetcher
    store: LadderStore
    metrics: WorkerMetrics


def check_not_cancelled(message: JobMessage, store: LadderStore) -> None:
    """Raises CancelRequestedError when the operator's marker covers this message's job."""
    marker = store.cancel_marker(message.output.bucket, message.job.uid)
    if marker is not None and marker.covers(message.job):
        raise CancelRequestedError(marker.describe())


def plan_for(message: JobMessage, source: SourceInfo) -> LadderPlan:
    try:
        return plan_ladder(source, message.ladder.resolve(), hls=message.hls)
    except ValueError as exc:
        raise PermanentJobError("InvalidLadder", str(exc)) from None


def outputs(message: JobMessage, plan: LadderPlan, master_text: str) -> JobOutputs:
    """What the job produced, as the master playlist tells a player."""
    renditions = []
    for variant in parse_master_playlist(master_text).variants:
        attributes = variant.attributes
        width, _, height = attributes["RESOLUTION"].partition("x")
        renditions.append(
            RenditionOutput(
                name=variant.uri.split("/", 1)[0],
                width=int(width),
                height=int(height),
                bandwidth=int(attributes["BANDWIDTH"]),
                average_bandwidth=int(attributes.get("AVERAGE-BANDWIDTH", 0)),
                codecs=attributes.get("CODECS", ""),
                playlist_uri=message.output.uri(variant.uri),
            )
        )
    return JobOutputs(
        master_uri=message.output.uri(MASTER_PLAYLIST_NAME),
        renditions=tuple(renditions),
        has_audio=plan.audio is not None and AUDIO_RENDITION_NAME in master_text,
    )
