"""Helpers shared by the bench scripts (stdlib only): isolation, process checks, statistics."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLER = ROOT / "dk_installer.py"
RUNTIME_MODULES = ("click", "requests", "distro")


def require_runtime_deps(command: str) -> None:
    """The installer must run in this interpreter without bootstrapping (which would download)."""
    missing = [name for name in RUNTIME_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        sys.exit(
            f"{sys.executable} lacks the installer's runtime packages ({', '.join(missing)}).\n"
            f"Create the test venv with tests/run.sh, then run: {command}"
        )


def isolated_env(root: Path, **extra: str) -> dict[str, str]:
    """This environment minus anything that changes the installer's behaviour, plus a temp
    HOME, DK_INSTALLER_HOME and XDG_CONFIG_HOME under `root` (never the real ~/.config)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DK_INSTALLER")}
    for name in ("DO_NOT_TRACK", "NO_COLOR", "VIRTUAL_ENV", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "CI"):
        env.pop(name, None)
    user_home = root / "user-home"
    user_home.mkdir(parents=True, exist_ok=True)
    env.update(
        HOME=str(user_home),
        DK_INSTALLER_HOME=str(root / "dk-home"),
        XDG_CONFIG_HOME=str(root / "config"),
    )
    env.update(extra)
    return env


@dataclass
class Measured:
    wall: float  # seconds from spawn to exit
    cpu: float  # user + system seconds of the process and of the children it waited for
    code: int
    out: str
    err: str


def run_measured(cmd: list[str], env: dict[str, str], timeout: float = 120) -> Measured:
    """Run `cmd` (stdin closed, output to temp files, so nothing it leaves behind can hold a
    pipe open) and reap it with wait4() to get its CPU time as well as its wall time."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        watchdog = threading.Timer(timeout, process.kill)
        watchdog.start()
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - started
        watchdog.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(
            wall,
            usage.ru_utime + usage.ru_stime,
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def median_ms(values: list[float]) -> float:
    return statistics.median(values) * 1000


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile (p90 of 15 values is the 14th smallest)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-int(fraction * 100) * len(ordered) // 100)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def proc_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def processes_matching(cmd_part: str, env_part: str | None = None) -> list[tuple[int, str]]:
    """Live (non-zombie) processes whose command line contains `cmd_part` and, if given, whose
    environment contains `env_part` (how we tell our own detached senders from anyone else's)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmd_part not in cmdline or proc_state(int(entry.name)) in (None, "Z"):
                continue
            if env_part is not None and env_part.encode() not in (entry / "environ").read_bytes():
                continue
            found.append((int(entry.name), cmdline.strip()))
    return found


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.2)


def machine_line() -> str:
    model = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"Machine: {os.cpu_count()} CPUs ({model}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()} ({sys.executable}), load average {load}"
    )
