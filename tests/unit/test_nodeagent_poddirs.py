"""The node agent keeps the folders of running Pods and of the Pods that left last."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kube_transcode_devstack.nodeagent import poddirs

pytestmark = pytest.mark.unit


def make_folder(root: Path, name: str, uid: str, written: float) -> Path:
    folder = root / f"ns_{name}_{uid}"
    folder.mkdir()
    log = folder / "main.log"
    log.write_text("a line\n")
    os.utime(folder, (written, written))
    os.utime(log, (written, written))
    return folder


def test_running_pods_and_the_last_finished_are_kept(tmp_path: Path) -> None:
    running = make_folder(tmp_path, "operator", "u-run", written=100)  # oldest of all
    finished = [make_folder(tmp_path, f"job-{i}", f"u-{i}", written=200 + i) for i in range(5)]

    removed = poddirs.prune(tmp_path, live_uids={"u-run"}, keep=2)

    assert removed == 3
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([running.name, finished[3].name, finished[4].name])


def test_a_log_written_recently_keeps_an_old_folder(tmp_path: Path) -> None:
    old = make_folder(tmp_path, "restarted", "u-old", written=100)
    os.utime(old / "main.log", (500, 500))  # appended to after a restart
    newer = make_folder(tmp_path, "other", "u-new", written=300)

    assert poddirs.stale([old, newer], live_uids=(), keep=1) == [newer]


def test_a_missing_pods_folder_is_nothing_to_do(tmp_path: Path) -> None:
    assert poddirs.prune(tmp_path / "absent", live_uids=()) == 0
