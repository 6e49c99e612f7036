"""JobStore.update_status: the one place a status change meets concurrent writes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import kubernetes
import pytest

from kube_transcode.messages import JobRef
from kube_transcode_operator.jobstore import CONFLICT_RETRIES, ConflictError, JobStore

pytestmark = pytest.mark.unit

JOB = JobRef(uid="u1", namespace="team", name="movie", generation=1)


@dataclass
class Api:
    """A TranscodeJob whose resourceVersion moves `conflicts` times under the writer's feet."""

    uid: str = "u1"
    exists: bool = True
    conflicts: int = 0
    version: int = 1
    patches: list[dict[str, Any]] = field(default_factory=list)

    def get_namespaced_custom_object(self, *args: Any) -> dict[str, Any]:
        if not self.exists:
            raise kubernetes.client.ApiException(status=404)
        return {
            "metadata": {"uid": self.uid, "namespace": "team", "name": "movie",
                         "resourceVersion": str(self.version)},
            "status": {"seen": self.version},
        }  # fmt: skip

    def patch_namespaced_custom_object_status(self, *args: Any) -> None:
        patch = args[-1]
        if self.conflicts:
            self.conflicts -= 1
            self.version += 1  # someone else wrote meanwhile
            raise kubernetes.client.ApiException(status=409, reason="Conflict")
        assert patch["metadata"]["resourceVersion"] == str(self.version)
        self.patches.append(patch["status"])


def test_a_conflict_is_read_and_computed_again_from_the_newer_job() -> None:
    api = Api(conflicts=2)
    body = JobStore(api).update_status(JOB, lambda job: {"from": job["status"]["seen"]})
    assert api.patches == [{"from": 3}]
    assert body is not None
    assert body["metadata"]["resourceVersion"] == "3"


def test_nothing_is_written_for_a_gone_job_a_namesake_or_nothing_to_do() -> None:
    for api in (Api(exists=False), Api(uid="someone-else")):
        assert JobStore(api).update_status(JOB, lambda _: {"x": 1}) is None
        assert api.patches == []
    api = Api()
    assert JobStore(api).update_status(JOB, lambda _: None) is None
    assert api.patches == []


def test_a_job_that_keeps_changing_gives_up_with_a_conflict() -> None:
    api = Api(conflicts=CONFLICT_RETRIES)
    with pytest.raises(ConflictError):
        JobStore(api).update_status(JOB, lambda _: {"x": 1})
    assert api.patches == []
