"""`kube-transcode-worker`: read settings, serve probes and metrics, consume until SIGTERM.

Exit status: 0 after a clean stop (SIGTERM or SIGINT: the running job is requeued), 2 when the
configuration is invalid.
"""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

from kube_transcode_worker.consumer import Consumer
from kube_transcode_worker.health import HealthState, serve
from kube_transcode_worker.metrics import WorkerMetrics
from kube_transcode_worker.settings import SettingsError, load_settings
from kube_transcode_worker.wiring import build_tools

log = logging.getLogger("kube_transcode_worker")


def main() -> None:
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(f"kube-transcode-worker: {exc}", file=sys.stderr)
        sys.exit(2)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s",
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
    metrics = WorkerMetrics()
    health = HealthState(stall_seconds=max(60.0, 3.0 * settings.heartbeat_seconds))
    server = serve(health, metrics.registry, settings.metrics_bind_address, settings.metrics_port)
    consumer = Consumer(settings, build_tools(settings, metrics), health)

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        consumer.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        consumer.run()
    finally:
        server.shutdown()
    log.info("stopped")


if __name__ == "__main__":
    main()
