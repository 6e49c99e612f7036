"""What tests stand on, apart from the tests: imported by test modules, never the reverse.

- broker.py: a RabbitMQ vhost of a test's own and the test's own AMQP connection (jobs in,
  events and dead letters out).
- worker.py: worker processes started the way a Pod runs them, against that vhost and MinIO.
- storage.py: objects in S3 (MinIO): upload, list, delete, download, and a ladder checked as a
  player would.
- media.py: sources made with FFmpeg at test time, and ladders checked on disk.
- http_stub.py: the one loopback HTTP server tests point workers and fetchers at.
- processes.py: the FFmpeg processes running on this machine.
- kube.py: kubectl bound to a namespace, and the CRDs installed.

Fixtures built on these are in the conftest.py files; what only end-to-end tests do (jobs
through kubectl, a watch) is in tests/e2e/helpers.py. Waiting is
kube_transcode_devstack.waiting.wait_until, which the dev stack and the benchmarks use too.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
