"""A TranscodeJob's ladder (a preset or explicit rungs) as the job message's LadderRequest."""

from __future__ import annotations

from pydantic import ValidationError

from kube_transcode.ladder import Rung, rung_by_name
from kube_transcode.messages import LadderRequest
from kube_transcode_operator.jobspec import LadderSpec, Preset, RungSpec
from kube_transcode_operator.validation import JobRejectedError

PRESETS: dict[Preset, tuple[str, ...]] = {
    "standard": ("240p", "360p", "480p", "720p", "1080p", "1440p", "2160p"),
    "mobile": ("240p", "360p", "480p"),
    "hd": ("360p", "480p", "720p", "1080p"),
}


def ladder_request(ladder: LadderSpec) -> LadderRequest:
    """Named rungs travel by name, changed or custom ones in full."""
    try:
        if ladder.rungs is not None:
            return LadderRequest(rungs=tuple(_rung(rung) for rung in ladder.rungs))
        if ladder.preset is None:
            raise JobRejectedError("InvalidLadder", "the ladder needs a preset or rungs")
        return LadderRequest(rungs=PRESETS[ladder.preset])
    except ValidationError as error:
        problems = "; ".join(str(e["msg"]) for e in error.errors(include_url=False))
        raise JobRejectedError("InvalidLadder", problems) from error


def _rung(spec: RungSpec) -> str | Rung:
    if spec.height is not None and spec.video_bitrate_kbps is not None:
        return Rung(name=spec.name, height=spec.height, video_kbps=spec.video_bitrate_kbps)
    try:
        named = rung_by_name(spec.name)
    except ValueError as error:
        raise JobRejectedError("InvalidLadder", str(error)) from error
    if spec.height is None and spec.video_bitrate_kbps is None:
        return spec.name
    # A changed height or bitrate makes the named rung's peak limits meaningless: rederive.
    return Rung(
        name=spec.name,
        height=spec.height or named.height,
        video_kbps=spec.video_bitrate_kbps or named.video_kbps,
        profile=named.profile,
    )
