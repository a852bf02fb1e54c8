"""Start-up cost of the installer's quick commands, against a bare interpreter start.

Run from a clean clone, after tests/run.sh has created the test venv (.venv-test, the project
installed -e, so click, requests and distro are importable and no bootstrap happens):

    .venv-test/bin/python bench/startup.py              # 30 interleaved rounds
    .venv-test/bin/python bench/startup.py --runs 60

Every round runs, in a rotating order, with the interpreter running this script:
    python -c pass                          the floor: interpreter + site start-up
    python dk_installer.py --help
    python dk_installer.py --version
    python dk_installer.py status           analytics off (DK_INSTALLER_ANALYTICS=no), not installed
and, as a diagnosis only (not a target):
    python -m dk_installer --help           from cached bytecode (PYTHONPYCACHEPREFIX=<temp>, bytecode
                                            written once)
    dk-installer --help                     the launcher `install` puts on PATH: /bin/sh execs the
                                            runtime's python on the byte-compiled copy (here: this
                                            interpreter, the cached bytecode above)
    python3 dk_installer.py --help          with a python3 on this machine that lacks click etc. (as a
                                            user's would): the bootstrap re-executes the file in the
                                            runtime venv (here a link to this interpreter's venv)
HOME, DK_INSTALLER_HOME and XDG_CONFIG_HOME are temp dirs, deleted at the end. The environment
is otherwise this one (this sandbox sets PYTHONDONTWRITEBYTECODE=1; a script's own source is
never cached anyway). Target: `--help` within 4x the bare start (median vs median). The bench
then shows where --help's time goes: compiling dk_installer.py (measured in-process with
compile()) and the imports beyond the bare start (`python -X importtime dk_installer.py --help`).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import INSTALLER, isolated_env, machine_line, median_ms, require_runtime_deps, run_measured

TARGET_RATIO = 4.0
IMPORTTIME_RUNS = 5


def compile_ms(installer: Path, runs: int = 7) -> float:
    source = installer.read_text()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        compile(source, str(installer), "exec", dont_inherit=True)
        times.append(time.perf_counter() - started)
    return median_ms(times)


def import_costs(cmd: list[str], env: dict[str, str]) -> dict[str, float]:
    """Median cumulative import time (ms) of each top-level import, over IMPORTTIME_RUNS runs."""
    samples: dict[str, list[float]] = {}
    line = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)")
    for _ in range(IMPORTTIME_RUNS):
        err = subprocess.run(
            [cmd[0], "-X", "importtime", *cmd[1:]], env=env, capture_output=True, text=True
        ).stderr
        for match in map(line.match, err.splitlines()):
            if match and match.group(3) == "":
                samples.setdefault(match.group(4), []).append(int(match.group(2)) / 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def python_without_runtime() -> str | None:
    """A Python 3.9+ on this machine that lacks click, requests or distro: how a user's python3 runs
    the file (dk_installer.py then re-executes itself in its runtime venv). None if there is none."""
    probe = (
        "import importlib.util as u, sys; print(sys.executable); "
        "sys.exit(sys.version_info < (3, 9) or all(u.find_spec(m) for m in ('click', 'requests', 'distro')))"
    )
    for candidate in ("python3", "/usr/bin/python3"):
        path = shutil.which(candidate)
        if path:
            out = subprocess.run([path, "-c", probe], capture_output=True, text=True)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()  # the real interpreter, not a pyenv shim
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=30, help="interleaved rounds (default 30)")
    parser.add_argument(
        "--installer", type=Path, default=INSTALLER, help="another copy of dk_installer.py (to try a fix)"
    )
    args = parser.parse_args()
    installer = args.installer.resolve()
    require_runtime_deps(".venv-test/bin/python bench/startup.py")

    root = Path(tempfile.mkdtemp(prefix="dk-bench-startup-"))
    try:
        env = isolated_env(root, DK_INSTALLER_ANALYTICS="no")
        cached_env = {
            **env,
            "PYTHONPYCACHEPREFIX": str(root / "pycache"),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(installer.parent), env.get("PYTHONPATH")])),
        }
        cached_env.pop("PYTHONDONTWRITEBYTECODE", None)
        py = sys.executable
        commands = {
            "python -c pass": ([py, "-c", "pass"], env),
            "dk_installer.py --help": ([py, str(installer), "--help"], env),
            "dk_installer.py --version": ([py, str(installer), "--version"], env),
            "dk_installer.py status": ([py, str(installer), "status"], env),
            "-m dk_installer --help (cached .pyc)": ([py, "-m", installer.stem, "--help"], cached_env),
        }
        launcher = root / "dk-installer"
        launcher.write_text(f'#!/bin/sh\nexec "{py}" -m {installer.stem} "$@"\n')
        launcher.chmod(0o755)
        commands["dk-installer --help (launcher)"] = ([str(launcher), "--help"], cached_env)
        user_python = python_without_runtime()
        if user_python:
            # The runtime venv the bootstrap re-executes into: this interpreter's venv, linked.
            reexec_home = root / "reexec-home"
            reexec_home.mkdir()
            (reexec_home / "runtime").symlink_to(sys.prefix)
            reexec_env = {**env, "DK_INSTALLER_HOME": str(reexec_home)}
            commands["user python3 dk_installer.py --help"] = (
                [user_python, str(installer), "--help"],
                reexec_env,
            )
        for cmd, cmd_env in commands.values():  # warm-up: page cache, logs dir, the .pyc
            run_measured(cmd, cmd_env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        cpu: dict[str, list[float]] = {name: [] for name in commands}
        codes: dict[str, set[int]] = {name: set() for name in commands}
        names = list(commands)
        for i in range(args.runs):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                run = run_measured(*commands[name])
                times[name].append(run.wall)
                cpu[name].append(run.cpu)
                codes[name].add(run.code)

        print(machine_line())
        if installer != INSTALLER:
            print(f"Installer under test: {installer}")
        print(f"{args.runs} interleaved rounds (rotating order), wall time from spawn to exit.")
        print()
        bare = median_ms(times["python -c pass"])
        bare_cpu = median_ms(cpu["python -c pass"])
        print(f"{'command':<38} {'median ms':>9} {'vs bare':>8} {'CPU ms':>7} {'vs bare':>8} {'exit':>5}")
        print("-" * 80)
        for name in names:
            ms, cpu_ms = median_ms(times[name]), median_ms(cpu[name])
            exit_codes = ",".join(map(str, sorted(codes[name])))
            ratios = f"{ms / bare:7.2f}x {cpu_ms:7.0f} {cpu_ms / bare_cpu:7.2f}x"
            print(f"{name:<38} {ms:9.0f} {ratios} {exit_codes:>5}")
        print(
            "(median wall time from spawn to exit; CPU = user+sys time, a cross-check that other load on "
            "the machine disturbs less)"
        )
        if user_python:
            print(
                f"(user python3 = {user_python}, which lacks the runtime packages: the file bootstraps "
                "and re-executes itself in the runtime venv, compiling the script twice; a diagnosis, "
                "not the target)"
            )
        help_ms = median_ms(times["dk_installer.py --help"])
        ratio = help_ms / bare

        print()
        print("Where `dk_installer.py --help` spends its time beyond the bare start (medians):")
        compile_cost = compile_ms(installer)
        size_kb = installer.stat().st_size / 1024
        print(
            f"  compiling dk_installer.py ({size_kb:.0f} KB; a script's own code is never cached): "
            f"{compile_cost:.0f} ms = {compile_cost / bare:.2f}x bare"
        )
        bare_imports = import_costs([py, "-c", "pass"], env)
        help_imports = import_costs([py, str(installer), "--help"], env)
        extra = {k: v for k, v in help_imports.items() if k not in bare_imports}
        total_extra = sum(extra.values())
        print(
            f"  imports beyond the bare start (-X importtime, cumulative): {total_extra:.0f} ms, the largest:"
        )
        for name, ms in sorted(extra.items(), key=lambda kv: -kv[1])[:10]:
            print(f"    {name:<18} {ms:6.1f} ms")
        cached = median_ms(times["-m dk_installer --help (cached .pyc)"])
        print(
            f"  the same --help from cached bytecode: {cached:.0f} ms = {cached / bare:.2f}x bare "
            f"({help_ms - cached:.0f} ms less)"
        )
        through_launcher = median_ms(times["dk-installer --help (launcher)"])
        launcher_ratio = through_launcher / bare
        print(f"  through the dk-installer launcher: {through_launcher:.0f} ms = {launcher_ratio:.2f}x bare")
        print()
        verdict = "MET" if ratio <= TARGET_RATIO else "MISSED"
        print(
            f"SUMMARY: startup target {verdict}: `dk_installer.py --help` is {ratio:.2f}x a bare "
            f"`python -c pass` (target <= {TARGET_RATIO:.0f}x); --version "
            f"{median_ms(times['dk_installer.py --version']) / bare:.2f}x, status "
            f"{median_ms(times['dk_installer.py status']) / bare:.2f}x"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
