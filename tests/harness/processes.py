"""The FFmpeg processes running on this machine (workers and the node agent's Pods alike)."""

from __future__ import annotations

from pathlib import Path


def ffmpeg_pids(*, group: int | None = None, argument: str | None = None) -> list[int]:
    """FFmpeg processes in process group `group` and/or with `argument` in their command line.

    Only programs named ffmpeg* count, never ffprobe (which reads the same files): the worker
    may run a build such as imageio-ffmpeg's ffmpeg-linux-x86_64-v9.0.2.
    """
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = proc.joinpath("cmdline").read_bytes().split(b"\0")
            stat = proc.joinpath("stat").read_text()
        except OSError:  # the process is gone
            continue
        if not Path(argv[0].decode(errors="replace")).name.startswith("ffmpeg"):
            continue
        # Fields after the command name (which may hold spaces): state, ppid, pgrp.
        pgrp = int(stat[stat.rindex(")") + 2 :].split()[2])
        if group is not None and pgrp != group:
            continue
        if argument is not None and not any(argument.encode() in arg for arg in argv):
            continue
        pids.append(int(proc.name))
    return pids
