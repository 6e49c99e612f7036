"""The README's troubleshooting commands: `kubectl logs` of the operator and of a worker say what
happened to a job, on the local stack as on a cluster."""

from __future__ import annotations

import time

import pytest

from kube_transcode_devstack.stack import Stack
from kube_transcode_devstack.waiting import wait_until
from tests.e2e.helpers import OPERATOR, WORKER, Jobs, Sources, release_kubectl, transcode_job

pytestmark = pytest.mark.e2e

JOB_SECONDS = 90


def test_the_operator_and_worker_logs_tell_what_happened_to_a_job(
    release: Stack, jobs: Jobs, sources: Sources
) -> None:
    system = release_kubectl(release)  # kubectl -n kube-transcode
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))
    jobs.apply(transcode_job("logged", sources.tiny.url))
    jobs.k("wait", "transcodejob/logged", "--for=condition=Succeeded", f"--timeout={JOB_SECONDS}s")
    uid = jobs.require("logged")["metadata"]["uid"]

    def logged(deployment: str, text: str) -> str | None:
        out = system.run("logs", deployment, f"--since-time={since}")
        return out.stdout if out.returncode == 0 and text in out.stdout else None

    def tail(deployment: str) -> str:
        out = system.run("logs", deployment, "--tail=20")
        return out.stdout + out.stderr

    # Tests run one at a time: what the operator published since is this job.
    wait_until(
        "the operator to log publishing the job",
        lambda: logged(OPERATOR, "published generation 1 to transcode.default"),
        30,
        lambda: tail(OPERATOR),
    )
    wait_until(
        "the worker to log the job's success",
        lambda: logged(WORKER, f"job {uid} succeeded"),
        30,
        lambda: tail(WORKER),
    )
