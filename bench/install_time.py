"""A real TestGen install through the installer, against the same work done by hand.

Run from a clean clone, after tests/run.sh has created the test venv (.venv-test, the project
installed -e, so the installer runs without bootstrapping and `uv` sits beside the interpreter):

    .venv-test/bin/python bench/install_time.py              # 1 round (about 8 minutes)
    .venv-test/bin/python bench/install_time.py --rounds 3

It downloads dataops-testgen[standalone] (about 180 packages) from PyPI, and every install takes
1 to 1.5 GB under a temp dir that is deleted at the end. Per round:

  by hand   the documented commands, timed one by one (no bytecode compilation):
              uv venv -p PY V;  VIRTUAL_ENV=V uv pip install "dataops-testgen[standalone]"
              printf 'admin\\nPW\\nPW\\n' | setsid testgen standalone-setup
              testgen run-app   until /_stcore/health and /api/v1/health answer 200
            env: TG_TESTGEN_HOME, TG_UI_PORT, TG_API_PORT, TG_ANALYTICS=no, HOME, and (like the
            installer, so that nothing is written outside the temp dir) TESTGEN_LOG_FILE_PATH and
            XDG_RUNTIME_DIR; SSL_CERT_FILE unset. Stopped with SIGTERM to run-app (it stops its
            PostgreSQL).
  installer `python dk_installer.py install --no-demo --no-browser --port P --api-port Q` with a
            fresh DK_INSTALLER_HOME, analytics off. Its step times come from its own output and
            its uv commands' times from its log. It installs with `uv pip install
            --compile-bytecode`: a slower package step, but every later `testgen` command starts
            faster (this sandbox sets PYTHONDONTWRITEBYTECODE=1, so nothing else caches bytecode).
            Then `install` again on the healthy install (3 times, median), then `stop` and
            `uninstall --yes`.
  pip       the package step with pip instead of uv: `python -m venv` + `pip install
            "dataops-testgen[standalone]"`, against the by-hand uv package step.

Cache state is the same for both sides: one shared UV_CACHE_DIR, pre-warmed by an untimed
`uv pip install` into a throwaway venv; pip's own cache (PIP_CACHE_DIR) is pre-warmed by an untimed
`pip download` of the same requirement. Round order alternates (by hand first in odd rounds).
PY is the interpreter the installer picks (first python3.13/3.12/3.11/python3 on PATH that runs
and is 3.11+), so both sides build TestGen on the same Python.

Peak memory of the installer itself, without its children: a sitecustomize.py (on PYTHONPATH of
the installer only; the installer strips PYTHONPATH from TestGen's environment) registers an
atexit hook in the `dk_installer.py install` process that writes getrusage(RUSAGE_SELF).ru_maxrss,
the high-water mark of that process's own resident memory. The bench also polls the process's
VmHWM in /proc/<pid>/status every 0.1 s (a cross-check), and shows what `/usr/bin/time -v` would
report: the rusage from wait4(), whose ru_maxrss is the maximum over the process AND every
descendant it waited for (uv, testgen standalone-setup), i.e. not the installer's own memory.

Every process started is stopped; the bench checks with /proc that no process mentioning its temp
dir (testgen, streamlit, `postgres -D <temp>/...`, which runs as the `pgserver` user when run as
root) is left. Targets: installer <= 1.15x the by-hand total; re-run <= 3 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    INSTALLER,
    free_port,
    isolated_env,
    kill_pids,
    machine_line,
    processes_matching,
    require_runtime_deps,
)

TARGET_RATIO = 1.15
TARGET_RERUN_S = 3.0
REQUIREMENT = "dataops-testgen[standalone]"
START_TIMEOUT_S = 300.0
PASSWORD = "Bench-Pass-4711"
# --find-links DIR (development only) fills this: install from DIR, never from PyPI.
SOURCES: list[str] = []

SITECUSTOMIZE = '''\
"""Bench only: the installer process writes its own peak RSS (children excluded) at exit."""
import os
import sys

if os.environ.get("BENCH_MAXRSS_FILE") and sys.argv[0].endswith("dk_installer.py") and sys.argv[1:2] == [
    "install"
]:
    import atexit

    def _write_maxrss():
        import resource

        with open(os.environ["BENCH_MAXRSS_FILE"], "a") as out:
            out.write(f"{os.getpid()} {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")

    atexit.register(_write_maxrss)
'''


def log(message: str) -> None:
    sys.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")
    sys.stdout.flush()


def find_uv() -> str:
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        sys.exit("uv not found beside this interpreter or on PATH (the test venv has it).")
    return found


def testgen_python() -> str:
    """The interpreter the installer's preflight picks (find_testgen_python without --python)."""
    probe = "import sys; print(sys.executable); print(sys.version_info[0], sys.version_info[1])"
    for candidate in ("python3.13", "python3.12", "python3.11", "python3"):
        path = shutil.which(candidate)
        if not path:
            continue
        out = subprocess.run([path, "-c", probe], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        lines = out.stdout.split("\n")
        if out.returncode == 0 and len(lines) >= 2 and tuple(map(int, lines[1].split())) >= (3, 11):
            return lines[0]
    sys.exit("no Python 3.11+ on PATH for TestGen")


def run(cmd: list[str], env: dict[str, str], logfile: Path, stdin_text: str | None = None) -> float:
    """Run to completion in a new session (no controlling terminal, like setsid); seconds taken."""
    started = time.perf_counter()
    with open(logfile, "ab") as out:
        out.write(f"$ {' '.join(cmd)}\n".encode())
        out.flush()
        process = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.PIPE if stdin_text is not None else subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        process.communicate(stdin_text.encode() if stdin_text is not None else None)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed (exit {process.returncode}); see {logfile}")
    return seconds


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError, ValueError):
        return False


def healthy(ui_port: int, api_port: int) -> bool:
    return http_ok(f"http://127.0.0.1:{ui_port}/_stcore/health") and http_ok(
        f"http://127.0.0.1:{api_port}/api/v1/health"
    )


def leftovers(marker: Path) -> list[tuple[int, str]]:
    return processes_matching(str(marker))


def sweep(marker: Path) -> list[tuple[int, str]]:
    """Last resort: stop whatever still mentions `marker`; returns what was found."""
    found = leftovers(marker)
    if not found:
        return []
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and leftovers(marker):
        time.sleep(0.5)
    kill_pids([pid for pid, _ in leftovers(marker)])
    return found


# --- by hand ------------------------------------------------------------------------------------


def by_hand(work: Path, python: str, uv: str, base_env: dict[str, str], notes: list[str]) -> dict[str, float]:
    work.mkdir(parents=True)
    venv, tg_home, user_home, run_dir = work / "venv", work / "tg-home", work / "user-home", work / "run"
    user_home.mkdir()
    run_dir.mkdir(mode=0o700)
    ui_port, api_port = free_port(), free_port()
    logfile = work / "commands.log"
    env = {**base_env, "HOME": str(user_home)}
    env.pop("SSL_CERT_FILE", None)
    env.pop("VIRTUAL_ENV", None)
    tg_env = {
        **env,
        "TG_TESTGEN_HOME": str(tg_home),
        "TG_UI_PORT": str(ui_port),
        "TG_API_PORT": str(api_port),
        "TG_ANALYTICS": "no",
        "TESTGEN_LOG_FILE_PATH": str(tg_home / "log"),
        "XDG_RUNTIME_DIR": str(run_dir),
    }
    testgen = str(venv / "bin" / "testgen")
    steps: dict[str, float] = {}
    started = time.perf_counter()
    steps["create venv"] = run([uv, "venv", "-p", python, str(venv)], env, logfile)
    steps["package install"] = run(
        [uv, "pip", "install", *SOURCES, REQUIREMENT], {**env, "VIRTUAL_ENV": str(venv)}, logfile
    )
    steps["standalone-setup"] = run(
        [testgen, "standalone-setup"], tg_env, logfile, stdin_text=f"admin\n{PASSWORD}\n{PASSWORD}\n"
    )
    app_started = time.perf_counter()
    with open(work / "run-app.log", "wb") as app_log:
        app = subprocess.Popen(
            [testgen, "run-app"],
            env=tg_env,
            cwd=tg_home,
            stdin=subprocess.DEVNULL,
            stdout=app_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        while not healthy(ui_port, api_port):
            if app.poll() is not None:
                raise RuntimeError(f"run-app exited with {app.returncode}; see {work / 'run-app.log'}")
            if time.perf_counter() - app_started > START_TIMEOUT_S:
                raise RuntimeError(f"run-app did not answer within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.5)
        steps["run-app until healthy"] = time.perf_counter() - app_started
        steps["total"] = time.perf_counter() - started
    finally:
        stop_started = time.perf_counter()
        if app.poll() is None:
            app.send_signal(signal.SIGTERM)
            try:
                app.wait(90)
            except subprocess.TimeoutExpired:
                notes.append("by hand: run-app did not stop within 90 s of SIGTERM")
        deadline = time.monotonic() + 15  # postgres' "fast" shutdown may lag run-app's exit a little
        while time.monotonic() < deadline and leftovers(work):
            time.sleep(0.5)
        steps["stop (SIGTERM run-app)"] = time.perf_counter() - stop_started
        swept = sweep(work)
        if swept:
            notes.append(f"LEAK: by hand: processes left after the stop (killed): {swept}")
    return steps


# --- installer ----------------------------------------------------------------------------------

STEP_LINE = re.compile(r"^(OK|SKIPPED|FAILED)\s+(.+?) \((\d+\.\d)s\)")
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ (.*)$")


def command_times(logfile: Path) -> dict[str, float]:
    """From the installer's debug log: seconds of each `$ cmd` until its `exit code` line."""
    times: dict[str, float] = {}
    pending: tuple[str, float] | None = None
    for line in logfile.read_text(errors="replace").splitlines():
        match = LOG_LINE.match(line)
        if not match:
            continue
        stamp = time.mktime(time.strptime(match.group(1)[:19], "%Y-%m-%d %H:%M:%S"))
        stamp += int(match.group(1)[20:]) / 1000
        text = match.group(2)
        if text.startswith("$ "):
            words = text[2:].split()
            name = " ".join(Path(words[0]).name.split() + words[1:3])
            pending = (name, stamp)
        elif text.startswith("exit code") and pending:
            times[pending[0]] = stamp - pending[1]
            pending = None
    return times


@dataclass
class InstallerRun:
    seconds: float = 0.0
    code: int | None = None
    output: str = ""
    own_maxrss_kb: int | None = None  # getrusage(RUSAGE_SELF) in the installer at exit
    polled_hwm_kb: int = 0  # VmHWM from /proc, polled from outside
    wait4_maxrss_kb: int = 0  # what /usr/bin/time -v shows: waited-for children included
    steps: dict[str, float] = field(default_factory=dict)
    commands: dict[str, float] = field(default_factory=dict)
    reruns: list[float] = field(default_factory=list)
    stop_s: float = 0.0


def run_installer_measured(
    cmd: list[str], env: dict[str, str], maxrss_file: Path, result: InstallerRun
) -> None:
    """Run the installer; wall time, output, its own peak RSS (two ways) and wait4()'s rusage."""
    out_path = maxrss_file.with_suffix(".out")
    started = time.perf_counter()
    with open(out_path, "wb") as out:
        process = subprocess.Popen(
            cmd, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    hwm_kb = 0
    done = threading.Event()

    def poll() -> None:
        nonlocal hwm_kb
        status = Path(f"/proc/{process.pid}/status")
        while not done.is_set():
            with contextlib.suppress(OSError, ValueError):
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm_kb = max(hwm_kb, int(line.split()[1]))
            done.wait(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    _, wait_status, rusage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(wait_status)
    done.set()
    poller.join()
    own = (
        [int(line.split()[1]) for line in maxrss_file.read_text().splitlines()]
        if maxrss_file.exists()
        else []
    )
    result.seconds, result.code = seconds, process.returncode
    result.output = out_path.read_text(errors="replace")
    result.own_maxrss_kb = own[-1] if own else None
    result.polled_hwm_kb, result.wait4_maxrss_kb = hwm_kb, rusage.ru_maxrss


def with_installer(
    work: Path, base_env: dict[str, str], sitecustomize_dir: Path, notes: list[str]
) -> InstallerRun:
    env = isolated_env(work, DK_INSTALLER_ANALYTICS="no")
    env.update({k: v for k, v in base_env.items() if k.startswith("UV_")})
    maxrss_file = work / "maxrss.txt"
    env_measured = {
        **env,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(sitecustomize_dir), env.get("PYTHONPATH")])),
        "BENCH_MAXRSS_FILE": str(maxrss_file),
    }
    ui_port, api_port = free_port(), free_port()
    py = sys.executable
    install = [
        py, str(INSTALLER), "install", "--no-demo", "--no-browser", "--port", str(ui_port),
        "--api-port", str(api_port), *(["--find-links", SOURCES[-1]] if SOURCES else []),
    ]  # fmt: skip
    result = InstallerRun()
    try:
        run_installer_measured(install, env_measured, maxrss_file, result)
        if result.code != 0:
            raise RuntimeError(f"install failed (exit {result.code}):\n{result.output}")
        lines = result.output.splitlines()
        result.steps = {m.group(2): float(m.group(3)) for m in map(STEP_LINE.match, lines) if m}
        logs = sorted((work / "dk-home" / "logs").glob("dk-installer-*-install.log"))
        result.commands = command_times(logs[0]) if logs else {}
        if not healthy(ui_port, api_port):
            notes.append("installer: TestGen did not answer right after install")
        for _ in range(3):
            started = time.perf_counter()
            again = subprocess.run(install, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
            result.reruns.append(time.perf_counter() - started)
            if again.returncode != 0 or "already installed and running" not in again.stdout:
                notes.append(f"installer re-run: exit {again.returncode}: {again.stdout[-300:]}")
    finally:
        started = time.perf_counter()
        stop = subprocess.run(
            [py, str(INSTALLER), "stop"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True
        )
        result.stop_s = time.perf_counter() - started
        if stop.returncode != 0:
            notes.append(f"installer stop: exit {stop.returncode}: {stop.stdout[-300:]}{stop.stderr[-300:]}")
        uninstall = subprocess.run(
            [py, str(INSTALLER), "uninstall", "--yes"],
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if uninstall.returncode != 0:
            notes.append(f"installer uninstall: exit {uninstall.returncode}: {uninstall.stdout[-300:]}")
        swept = sweep(work)
        if swept:
            notes.append(f"LEAK: installer: processes left after stop + uninstall (killed): {swept}")
    return result


# --- pip vs uv ----------------------------------------------------------------------------------


def pip_package_step(work: Path, python: str, base_env: dict[str, str]) -> dict[str, float]:
    work.mkdir(parents=True)
    env = {**base_env, "HOME": str(work)}
    env.pop("VIRTUAL_ENV", None)
    logfile = work / "commands.log"
    venv = work / "venv"
    steps = {"create venv": run([python, "-m", "venv", str(venv)], env, logfile)}
    steps["package install"] = run(
        [str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", *SOURCES, REQUIREMENT],
        env,
        logfile,
    )
    shutil.rmtree(venv, ignore_errors=True)
    return steps


# --- report -------------------------------------------------------------------------------------


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=1, help="install rounds (default 1; ~8 min each)")
    parser.add_argument(
        "--find-links",
        metavar="DIR",
        help="development only: install the wheels in DIR (e.g. the tests' stand-in TestGen) instead of "
        "PyPI, to check the bench itself in seconds; its numbers then mean nothing",
    )
    args = parser.parse_args()
    if args.find_links:
        SOURCES.extend(["--no-index", "--find-links", str(Path(args.find_links).resolve())])
    require_runtime_deps(".venv-test/bin/python bench/install_time.py")
    uv = find_uv()
    python = testgen_python()
    root = Path(tempfile.mkdtemp(prefix="dk-bench-install-"))
    notes: list[str] = []
    hand_runs: list[dict[str, float]] = []
    inst_runs: list[InstallerRun] = []
    pip_runs: list[dict[str, float]] = []
    sitecustomize_dir = root / "sitecustomize"
    sitecustomize_dir.mkdir()
    (sitecustomize_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    base_env = isolated_env(root / "base")
    base_env.update(UV_CACHE_DIR=str(root / "uv-cache"), PIP_CACHE_DIR=str(root / "pip-cache"))
    try:
        log(f"warm-up (untimed): uv pip install {REQUIREMENT} into a throwaway venv, python {python}")
        warm = root / "warm"
        warm.mkdir()
        run([uv, "venv", "-p", python, str(warm / "venv")], base_env, warm / "log")
        run(
            [uv, "pip", "install", *SOURCES, REQUIREMENT],
            {**base_env, "VIRTUAL_ENV": str(warm / "venv")},
            warm / "log",
        )
        log("warm-up (untimed): pip download of the same requirement into pip's cache")
        run([str(warm / "venv" / "bin" / "python"), "-m", "ensurepip"], base_env, warm / "log")
        pip = [str(warm / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
        run(
            [*pip, "download", "-q", "-d", str(warm / "wheels"), *SOURCES, REQUIREMENT],
            base_env,
            warm / "log",
        )
        shutil.rmtree(warm, ignore_errors=True)
        for r in range(args.rounds):
            order = ["hand", "installer"] if r % 2 == 0 else ["installer", "hand"]
            for side in order:
                if side == "hand":
                    log(f"round {r + 1}: by hand (uv venv, uv pip install, standalone-setup, run-app)")
                    hand_runs.append(by_hand(root / f"hand-{r}", python, uv, base_env, notes))
                    log(f"  by hand: {hand_runs[-1]['total']:.1f} s")
                else:
                    log(
                        f"round {r + 1}: installer (install --no-demo --no-browser, re-runs, stop, uninstall)"
                    )
                    inst_runs.append(
                        with_installer(root / f"installer-{r}", base_env, sitecustomize_dir, notes)
                    )
                    log(f"  installer: {inst_runs[-1].seconds:.1f} s")
            log(f"round {r + 1}: pip package step (python -m venv, pip install)")
            pip_runs.append(pip_package_step(root / f"pip-{r}", python, base_env))
            log(f"  pip: {sum(pip_runs[-1].values()):.1f} s")
    finally:
        left = leftovers(root)
        if left:
            notes.append(f"LEAK: left at the end (killed): {sweep(root)}")
        shutil.rmtree(root, ignore_errors=True)
    final_left = leftovers(root)

    print()
    print(machine_line())
    print(f"{args.rounds} round(s); TestGen built on {python}; uv {uv}; warm shared caches (see docstring).")
    print()
    hand = {k: med([h[k] for h in hand_runs]) for k in hand_runs[0]}
    inst_total = med([i.seconds for i in inst_runs])
    inst_steps = {name: med([i.steps.get(name, 0.0) for i in inst_runs]) for name in inst_runs[0].steps}
    commands = {name: med([i.commands.get(name, 0.0) for i in inst_runs]) for name in inst_runs[0].commands}
    uv_venv = next((v for k, v in commands.items() if k.startswith("uv venv")), None)
    uv_install = next((v for k, v in commands.items() if k.startswith("uv pip")), None)
    package_step = inst_steps.get("Install TestGen", 0.0)

    def row(label: str, hand_s: float | None, inst_s: float | None, note: str = "") -> None:
        h = f"{hand_s:8.1f}" if hand_s is not None else f"{'-':>8}"
        i = f"{inst_s:10.1f}" if inst_s is not None else f"{'-':>10}"
        ratio = f"{inst_s / hand_s:6.2f}x" if hand_s and inst_s is not None else f"{'':>7}"
        print(f"{label:<34} {h} {i} {ratio}  {note}")

    print(f"{'step (seconds, median)':<34} {'by hand':>8} {'installer':>10} {'ratio':>7}")
    print("-" * 64)
    row("create venv (uv venv)", hand["create venv"], uv_venv)
    row(
        "package install (uv pip install)",
        hand["package install"],
        uv_install,
        "installer: --compile-bytecode",
    )
    row(
        "  whole package step",
        hand["create venv"] + hand["package install"],
        package_step,
        "installer: 'Install TestGen' incl. version check",
    )
    row("configure (standalone-setup)", hand["standalone-setup"], inst_steps.get("Configure TestGen"))
    row("start (run-app until both 200)", hand["run-app until healthy"], inst_steps.get("Start TestGen"))
    row("preflight (python, ports, index)", None, inst_steps.get("Check requirements"))
    row("verify the login (OAuth)", None, inst_steps.get("Verify the login"))
    shown = {
        "Install TestGen",
        "Configure TestGen",
        "Start TestGen",
        "Check requirements",
        "Verify the login",
    }
    rest = inst_total - sum(v for k, v in inst_steps.items() if k in shown)
    row("other (engine, state, start-up)", None, rest)
    row("TOTAL, end to end", hand["total"], inst_total)
    print()
    ratio = inst_total / hand["total"]
    pip = {k: med([p[k] for p in pip_runs]) for k in pip_runs[0]}
    uv_step = hand["create venv"] + hand["package install"]
    pip_step = pip["create venv"] + pip["package install"]
    print(
        f"Package step, pip vs uv (by hand, no compile): pip {pip_step:.1f} s "
        f"(venv {pip['create venv']:.1f} + install {pip['package install']:.1f}) vs uv {uv_step:.1f} s: "
        f"uv is {pip_step / uv_step:.1f}x faster"
    )
    if uv_install:
        print(
            f"Bytecode trade-off: the installer's uv install with --compile-bytecode took {uv_install:.1f} s "
            "vs "
            f"{hand['package install']:.1f} s without ({uv_install / hand['package install']:.1f}x); setup + "
            f"start took {inst_steps.get('Configure TestGen', 0) + inst_steps.get('Start TestGen', 0):.1f} s "
            f"vs {hand['standalone-setup'] + hand['run-app until healthy']:.1f} s by hand."
        )
    reruns = [s for i in inst_runs for s in i.reruns]
    rerun = med(reruns) if reruns else float("nan")
    print(
        f"Re-running install on the healthy install: median {rerun:.2f} s of {len(reruns)} "
        f"({rerun / TARGET_RERUN_S:.2f}x the 3 s budget)"
    )
    own = [i.own_maxrss_kb for i in inst_runs if i.own_maxrss_kb]
    own_mb = max(own) / 1024 if own else float("nan")
    polled_mb = max(i.polled_hwm_kb for i in inst_runs) / 1024
    wait4_mb = max(i.wait4_maxrss_kb for i in inst_runs) / 1024
    print(
        f"Installer's own peak memory (getrusage RUSAGE_SELF at exit): {own_mb:.0f} MB; polled VmHWM "
        f"{polled_mb:.0f} MB; for comparison wait4()'s ru_maxrss, which `/usr/bin/time -v` prints and which "
        f"is the max over the installer and every child it waited for (uv, testgen standalone-setup): "
        f"{wait4_mb:.0f} MB"
    )
    stops = [i.stop_s for i in inst_runs]
    print(
        f"Stops: installer `stop` {med(stops):.1f} s, by hand SIGTERM to run-app "
        f"{hand['stop (SIGTERM run-app)']:.1f} s (until no process of its dir is left)."
    )
    for note in notes:
        print(f"NOTE: {note}")
    print(
        "Processes left (testgen, streamlit, postgres -D <temp>): "
        + ("none" if not final_left else str(final_left))
    )
    ok_ratio, ok_rerun = ratio <= TARGET_RATIO, rerun <= TARGET_RERUN_S
    clean = not final_left and not any(n.startswith("LEAK") for n in notes)
    verdict = "MET" if ok_ratio and ok_rerun and clean else "MISSED"
    print(
        f"SUMMARY: install time target {verdict}: installer/by-hand {ratio:.2f}x (target <= {TARGET_RATIO}x: "
        f"{'met' if ok_ratio else 'missed'}), re-run {rerun:.2f} s (target <= {TARGET_RERUN_S:.0f} s: "
        f"{'met' if ok_rerun else 'missed'}), uv {pip_step / uv_step:.1f}x faster than pip, installer peak "
        f"{own_mb:.0f} MB, nothing left running: {'yes' if clean else 'NO'}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (Exception, KeyboardInterrupt) as exc:
        print(f"SUMMARY: install time target NOT MEASURED: the bench failed: {type(exc).__name__}: {exc}")
        sys.exit(1)
