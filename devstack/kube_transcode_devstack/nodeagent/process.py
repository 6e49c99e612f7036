"""Container processes: exec'd argv (never a shell) in a session of their own, with pid files.

Each container process is started with ``start_new_session=True``: its pid is also its process
group and session id, so signals reach everything it spawned. A pid file
(``<pod dir>/<container>.pid``: "pid starttime") lets a later agent run, or ``nodeagent
cleanup``, kill what an agent that died left behind, without hitting a recycled pid. Its
stdout and stderr go to one pipe, which a :class:`~.logfile.LogPump` writes to the log file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from .logfile import LogPump

LOG = logging.getLogger("nodeagent.process")
PUMP_DRAIN = 1.0  # after an exit, how long to wait for the last output to reach the log


class StartError(Exception):
    """The process could not be started (exec failed): kubelet's StartError, exit code 128."""


def proc_start_time(pid: int) -> int | None:
    """Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat)."""
    return _proc_stat_field(pid, 22)


def _proc_session(pid: int) -> int | None:
    return _proc_stat_field(pid, 6)  # session id


def _proc_stat_field(pid: int, field: int) -> int | None:
    """A numeric field of /proc/PID/stat (1-based, as proc(5) numbers them); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields 1 and 2 (pid, "(comm)") end at the last ")": a command name may hold spaces.
    rest = stat.rsplit(")", 1)[-1].split()
    try:
        return int(rest[field - 3])
    except (IndexError, ValueError):
        return None


def session_members(sid: int, not_before: int | None = None) -> list[int]:
    """Live processes whose session id is ``sid`` (started no earlier than ``not_before``)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if _proc_session(pid) != sid:
            continue
        start = proc_start_time(pid)
        if not_before is not None and (start is None or start < not_before):
            continue
        out.append(pid)
    return out


def signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


class ManagedProcess:
    def __init__(self, popen: subprocess.Popen[bytes], pid_file: Path, pump: LogPump) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pid_file = pid_file
        self.pump = pump
        self.returncode: int | None = None

    @classmethod
    def start(
        cls,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        log_file: Path,
        pid_file: Path,
    ) -> ManagedProcess:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.touch()  # an instance that fails to start has an (empty) log too
        try:
            popen = subprocess.Popen(
                argv,
                env=dict(env),
                cwd=str(cwd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise StartError(
                f'exec: "{argv[0]}": executable file not found in $PATH ({exc.strerror})'
            ) from exc
        except PermissionError as exc:
            raise StartError(f'exec: "{argv[0]}": permission denied') from exc
        except OSError as exc:
            raise StartError(f'exec: "{argv[0]}": {exc}') from exc
        assert popen.stdout is not None  # stdout=PIPE
        pump = LogPump(popen.stdout, log_file)
        pump.start()
        start = proc_start_time(popen.pid)
        pid_file.write_text(f"{popen.pid} {start if start is not None else ''}\n")
        return cls(popen, pid_file, pump)

    def poll(self) -> int | None:
        """Exit code once exited (a signal N reads 128+N, as in containers), else None.

        When the main process exits, the rest of its process group is killed: in a container
        everything dies with PID 1. The exit counts once its last output is in the log.
        """
        if self.returncode is not None:
            return self.returncode
        rc = self.popen.poll()
        if rc is None:
            return None
        self.returncode = 128 - rc if rc < 0 else rc
        signal_group(self.pid, signal.SIGKILL)
        self.pump.join(PUMP_DRAIN)  # the pipe closed with the group: this takes milliseconds
        self.pid_file.unlink(missing_ok=True)
        return self.returncode

    def terminate(self) -> None:
        """SIGTERM to the main process only, as a container runtime signals PID 1; its children
        (an FFmpeg under a worker, say) are the main process's to stop."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def kill(self) -> None:
        if self.returncode is None:
            signal_group(self.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            rc = self.poll()
            if rc is not None:
                return rc
            time.sleep(0.05)
        return self.poll()


def read_pid_file(path: Path) -> tuple[int, int | None] | None:
    try:
        parts = path.read_text().split()
        return int(parts[0]), (int(parts[1]) if len(parts) > 1 else None)
    except (OSError, ValueError, IndexError):
        return None


def kill_leftovers(pid_files: Iterable[Path], grace: float = 5.0) -> int:
    """SIGTERM then SIGKILL the sessions recorded in pid files; remove the files.

    Returns how many processes were found alive.
    """
    targets: list[int] = []
    for pf in pid_files:
        rec = read_pid_file(pf)
        pf.unlink(missing_ok=True)
        if rec is None:
            continue
        sid, start = rec
        members = session_members(sid, not_before=start)
        if members:
            LOG.info("killing %d leftover process(es) of %s", len(members), pf)
            targets.extend(members)
    if not targets:
        return 0
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(proc_start_time(p) is not None for p in targets):
        time.sleep(0.1)
    for pid in targets:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(targets)


def pid_files_under(state: Path) -> list[Path]:
    return sorted((state / "pods").glob("*/*.pid"))
