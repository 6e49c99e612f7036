"""A TranscodeJob over its TranscodeTemplate: the merge, what the job took, and its record.

The rules: a template supplies `ladder`, `video`, `hls`, `retry`, `chunking`, `thumbnails` and
`notify`; the job's own fields override it field by field. Objects merge key by key
(recursively), lists (`video.codecs` among them) and scalars replace, and the ladder replaces
as a whole (its `preset` and `rungs` are alternatives). Defaults are the model's (jobspec.py),
applied after the merge, so a template's value always beats them.

What the job took is recorded in its status (`status.template`), for the job's generation: the
record, not the template as it is now, resolves that generation again (after a failed publish,
an operator restart), so a later change of the template never alters a queued or finished job.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from kube_transcode_operator.jobspec import TranscodeJobSpec
from kube_transcode_operator.validation import JobRejectedError

TEMPLATED_FIELDS: Final = ("ladder", "video", "hls", "retry", "chunking", "thumbnails", "notify")
# Replaced as a whole: merging a template's preset with a job's rungs would set both.
WHOLE_FIELDS: Final = frozenset({"ladder"})

Spec = dict[str, Any]


@dataclass(frozen=True)
class TemplateRecord:
    """Which template (and which generation of it) resolved which job generation, and the
    template's settings the job took (those it did not override)."""

    name: str
    uid: str
    generation: int
    job_generation: int
    inherited: Spec

    def to_status(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "uid": self.uid,
            "generation": self.generation,
            "jobGeneration": self.job_generation,
            "inherited": deepcopy(self.inherited),
        }

    @classmethod
    def from_status(cls, found: Mapping[str, Any]) -> TemplateRecord:
        return cls(
            name=str(found["name"]),
            uid=str(found.get("uid") or ""),
            generation=int(found.get("generation") or 0),
            job_generation=int(found["jobGeneration"]),
            inherited=dict(found.get("inherited") or {}),
        )


def merge(template: Mapping[str, Any], job: Mapping[str, Any]) -> Spec:
    """The job's spec over the template's settings (the rules are in the module's docstring)."""
    merged: Spec = deepcopy(dict(job))
    for field in TEMPLATED_FIELDS:
        if field not in template:
            continue
        if field not in job:
            merged[field] = deepcopy(template[field])
        elif field not in WHOLE_FIELDS:
            merged[field] = _merge_objects(template[field], job[field])
    return merged


def _merge_objects(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge_objects(merged[key], value)
        else:
            merged[key] = deepcopy(value)
    return merged


def inherited(template: Mapping[str, Any], job: Mapping[str, Any]) -> Spec:
    """The part of the template's settings that survives the merge: merge(inherited(t, j), j)
    equals merge(t, j)."""
    taken: Spec = {}
    for field in TEMPLATED_FIELDS:
        if field not in template:
            continue
        if field not in job:
            taken[field] = deepcopy(template[field])
        elif field not in WHOLE_FIELDS and (left := _left_over(template[field], job[field])):
            taken[field] = left
    return taken


def _left_over(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    left: dict[str, Any] = {}
    for key, value in base.items():
        if key not in over:
            left[key] = deepcopy(value)
        elif (
            isinstance(value, Mapping)
            and isinstance(over[key], Mapping)
            and (nested := _left_over(value, over[key]))
        ):
            left[key] = nested
    return left


def record(
    template: Mapping[str, Any], job: Mapping[str, Any], job_generation: int
) -> TemplateRecord:
    """What to keep in status about resolving `job` (its spec) with `template` (the object)."""
    meta = template.get("metadata") or {}
    return TemplateRecord(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
        job_generation=job_generation,
        inherited=inherited(template.get("spec") or {}, job),
    )


def recorded(status: Mapping[str, Any], name: str, job_generation: int) -> TemplateRecord | None:
    """The record resolving this job generation with template `name`, if there is one."""
    found = status.get("template")
    if not isinstance(found, Mapping) or found.get("name") != name:
        return None
    if found.get("jobGeneration") != job_generation:
        return None
    return TemplateRecord.from_status(found)


def effective_spec(spec: Mapping[str, Any], status: Mapping[str, Any], job_generation: int) -> Spec:
    """The spec a job generation runs with, from its record (before defaults): what code that
    acts on a job later (at its end, say) should read instead of the template."""
    name = spec.get("template")
    found = recorded(status, name, job_generation) if isinstance(name, str) else None
    return merge(found.inherited, spec) if found is not None else dict(spec)


def status_patch(
    old: Mapping[str, Any] | None, new: TemplateRecord | None
) -> dict[str, Any] | None:
    """A merge patch for status.template that replaces the old record: keys it no longer has
    are deleted (set to None), not merged into the new one."""
    if new is None:
        return None
    return _replacing(old or {}, new.to_status())


def _replacing(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    patch: dict[str, Any] = {key: None for key in old if key not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = _replacing(before, value)
        else:
            patch[key] = value
    return patch


def job_spec(merged: Mapping[str, Any], template: str | None) -> TranscodeJobSpec:
    """The merged spec with defaults applied. Raises JobRejectedError when the merge produced
    what the schema would refuse in one object (the job's and the template's parts passed it
    separately)."""
    origin = f" (with TranscodeTemplate {template})" if template else ""
    retry = merged.get("retry") or {}
    backoff, most = retry.get("backoffSeconds"), retry.get("maxBackoffSeconds")
    if backoff is not None and most is not None and most < backoff:
        raise JobRejectedError(
            "InvalidSpec",
            f"retry.maxBackoffSeconds ({most}) must be at least retry.backoffSeconds "
            f"({backoff}){origin}",
        )
    try:
        return TranscodeJobSpec.from_body(merged)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise JobRejectedError("InvalidSpec", f"invalid spec{origin}: {problems}") from error
