"""Folders of Pods that left the node: the newest are kept for their logs, the rest removed.

A kubelet removes a Pod's directories once the Pod is gone; here each folder also holds the
containers' logs, which are what one reads after a failed test. So the agent keeps the
KEEP_FINISHED folders written last among those of Pods no longer on the node and removes the
others each time a Pod leaves, bounding the disk a long-lived local stack uses (tests start
and stop hundreds of Pods).
"""

from __future__ import annotations

import shutil
from collections.abc import Collection
from pathlib import Path
from typing import Final

KEEP_FINISHED: Final = 100


def uid_of(folder: Path) -> str:
    """`<namespace>_<name>_<uid>`: names and namespaces cannot hold `_`, uids neither."""
    return folder.name.rpartition("_")[2]


def last_written(folder: Path) -> float:
    """The folder's or its files' latest mtime (logs are appended to in place)."""
    times = [folder.stat().st_mtime]
    times.extend(f.stat().st_mtime for f in folder.iterdir())
    return max(times)


def stale(folders: Collection[Path], live_uids: Collection[str], keep: int) -> list[Path]:
    """The folders to remove: those of Pods not on the node, except the `keep` written last."""
    finished = [f for f in folders if uid_of(f) not in live_uids]
    finished.sort(key=last_written, reverse=True)
    return finished[keep:]


def prune(pods_dir: Path, live_uids: Collection[str], keep: int = KEEP_FINISHED) -> int:
    """Remove stale folders under pods_dir; returns how many went."""
    folders = [f for f in pods_dir.iterdir() if f.is_dir()] if pods_dir.is_dir() else []
    removed = 0
    for folder in stale(folders, live_uids, keep):
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    return removed
