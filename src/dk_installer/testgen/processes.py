"""Which processes are TestGen's and ours: the app this installer started (its pid file, checked
against the process's start time), the embedded PostgreSQL (its postmaster.pid) and anything that
carries OWNER_VARIABLE for this install. The one place that decides; `stop`, the leak checks and
the check that TestGen itself, not a stranger, holds its ports before the installer trusts what
answers there rely on it."""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Any

from dk_installer.net import receiving_listeners
from dk_installer.testgen.config import OWNER_VARIABLE

if TYPE_CHECKING:
    from dk_installer.paths import Paths


def alive(process: Any) -> bool:
    import psutil

    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def app_process(paths: Paths) -> Any:
    """The run-app process this installer started (a psutil.Process), or None."""
    import psutil

    try:
        pid_text, started_text = paths.app_pid.read_text().split()
        process = psutil.Process(int(pid_text))
        if abs(process.create_time() - float(started_text)) > 1:
            return None  # the pid was reused by another process
    except (OSError, ValueError, psutil.Error):
        return None
    return process if alive(process) else None


def postmaster(paths: Paths) -> Any:
    """The embedded PostgreSQL's postmaster (from pgdata/postmaster.pid), or None."""
    import psutil

    try:
        process = psutil.Process(int((paths.pgdata / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    return process if alive(process) else None


def our_processes(paths: Paths) -> list[Any]:
    """Every process of ours, orphans included: the app's tree, the postmaster's tree, and any
    process that carries OWNER_VARIABLE for this install. Never a `testgen` the user runs."""
    import psutil

    ours: dict[int, Any] = {}
    for root in (app_process(paths), postmaster(paths)):
        if root is not None:
            with contextlib.suppress(psutil.Error):
                for process in [root, *root.children(recursive=True)]:
                    ours[process.pid] = process
    owner = str(paths.testgen)
    for process in psutil.process_iter(["environ"]):
        if (process.info.get("environ") or {}).get(OWNER_VARIABLE) == owner:
            ours.setdefault(process.pid, process)
    ours.pop(os.getpid(), None)
    return [process for process in ours.values() if alive(process)]


def strangers_listening(paths: Paths, host: str, port: int) -> list[int | None] | None:
    """Who other than this TestGen would receive a connection to host:port (net.receiving_listeners):
    [] when processes of ours alone hold the socket, None when nothing listens there. Ours means
    one of our_processes running as this user: TestGen's app serves the ports with the installer's
    uid, while the owner mark is only an environment variable that anyone can set. An owner this
    user may not see (None) is never ours."""
    candidates = {process.pid: process for process in our_processes(paths)}
    listeners = receiving_listeners(host, port, candidates)
    if not listeners:
        return None
    return [pid for pid in listeners if pid is None or not runs_as_us(candidates.get(pid))]


def runs_as_us(process: Any) -> bool:
    import psutil

    try:
        return process is not None and process.uids().real == os.getuid()
    except psutil.Error:
        return False
