"""Start-up cost of the installer's quick commands, side by side with a bare interpreter start.

    .venv-test/bin/python bench/startup.py              # 30 interleaved rounds
    .venv-test/bin/python bench/startup.py --runs 60

It first builds a real runtime the way a user's first run does (the generated dk_installer.py run by
a Python that lacks the runtime's packages, from the package index; about 10-60 s), in a temporary
DK_INSTALLER_HOME, then runs in a rotating order, each round:

    python3 -c pass                           the floor: the user's interpreter starting
    python3 dk_installer.py --help            the download, runtime present
    python3 dk_installer.py --version
    dk-installer --help                       the launcher install puts on PATH (/bin/sh execs the
                                              runtime's python on the byte-compiled package)
    python3 dk_installer.py status            the download handing over to the runtime (exec)
    python3 dk_installer.py --help (no runtime)   a machine that never built the runtime: answered
                                              by the file itself, nothing written
    python3 dk_installer.py --version (no runtime)
    runtime python -I -c pass                 the runtime interpreter's own floor, for reference

Targets (issue 14): --help through the download and through the launcher <= 2.5x the bare start
(median vs median); --help and --version without a runtime <= 0.3 s, and they write nothing.
HOME, DK_INSTALLER_HOME and XDG_CONFIG_HOME are temporary folders, deleted at the end.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import INSTALLER, isolated_env, machine_line, median_ms, run_measured

TARGET_RATIO = 2.5
TARGET_NO_RUNTIME_S = 0.3


def python_without_runtime() -> str | None:
    """A Python 3.9+ on this machine that lacks click, requests or distro: how a user's python3
    runs the file. None if there is none."""
    probe = (
        "import importlib.util as u, sys; print(sys.executable); "
        "sys.exit(sys.version_info < (3, 9) or all(u.find_spec(m) for m in ('click', 'requests', 'distro')))"
    )
    candidates = [
        "python3",
        "/usr/bin/python3",
        "python3.9",
        *map(str, Path("/root/.pyenv/versions").glob("3.9*/bin/python3.9")),
    ]
    for candidate in candidates:
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
        "--python", help="the user's python3 (default: one here without the runtime's packages)"
    )
    args = parser.parse_args()
    python = args.python or python_without_runtime()
    if not python:
        sys.exit("no Python 3.9+ without click/requests/distro here; pass --python")

    root = Path(tempfile.mkdtemp(prefix="dk-bench-startup-"))
    try:
        env = isolated_env(root, DK_INSTALLER_ANALYTICS="no")
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # a user's machine writes bytecode
        fresh_env = {
            **env,
            "DK_INSTALLER_HOME": str(root / "never-built"),
            "HTTPS_PROXY": "http://127.0.0.1:9",
        }
        print("Building a runtime the way a first run does (from the package index) ...", flush=True)
        built = subprocess.run(
            [python, str(INSTALLER), "status"], env=env, capture_output=True, text=True, timeout=900
        )
        if built.returncode != 0:
            sys.exit(f"the runtime could not be built:\n{built.stderr}")
        runtime_python = str(root / "dk-home" / "runtime" / "bin" / "python")
        launcher = root / "dk-installer"
        launcher.write_text(
            "#!/bin/sh\nexport DK_INSTALLER_LAUNCHED_BY=launcher\n"
            f'exec "{runtime_python}" -I -m dk_installer "$@"\n'
        )
        launcher.chmod(0o755)
        commands = {
            "python3 -c pass": ([python, "-c", "pass"], env),
            "python3 dk_installer.py --help": ([python, str(INSTALLER), "--help"], env),
            "python3 dk_installer.py --version": ([python, str(INSTALLER), "--version"], env),
            "dk-installer --help (launcher)": ([str(launcher), "--help"], env),
            "python3 dk_installer.py status": ([python, str(INSTALLER), "status"], env),
            "--help, no runtime": ([python, str(INSTALLER), "--help"], fresh_env),
            "--version, no runtime": ([python, str(INSTALLER), "--version"], fresh_env),
            "runtime python -I -c pass": ([runtime_python, "-I", "-c", "pass"], env),
        }
        for cmd, cmd_env in commands.values():  # warm-up: page cache, the runtime's .pyc
            run_measured(cmd, cmd_env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        codes: dict[str, set[int]] = {name: set() for name in commands}
        names = list(commands)
        for i in range(args.runs):
            for name in names[i % len(names) :] + names[: i % len(names)]:
                run = run_measured(*commands[name])
                times[name].append(run.wall)
                codes[name].add(run.code)
        wrote = (root / "never-built").exists()

        print(machine_line())
        print(
            f"python3 = {python}; {args.runs} interleaved rounds (rotating order), wall time spawn to exit."
        )
        print()
        bare = median_ms(times["python3 -c pass"])
        print(f"{'command':<36} {'median ms':>9} {'vs bare':>8} {'exit':>5}")
        print("-" * 62)
        for name in names:
            ms = median_ms(times[name])
            print(f"{name:<36} {ms:9.0f} {ms / bare:7.2f}x {','.join(map(str, sorted(codes[name]))):>5}")
        print()
        help_ratio = median_ms(times["python3 dk_installer.py --help"]) / bare
        launcher_ratio = median_ms(times["dk-installer --help (launcher)"]) / bare
        no_runtime_s = (
            max(median_ms(times["--help, no runtime"]), median_ms(times["--version, no runtime"])) / 1000
        )
        met = (
            help_ratio <= TARGET_RATIO
            and launcher_ratio <= TARGET_RATIO
            and no_runtime_s <= TARGET_NO_RUNTIME_S
            and not wrote
        )
        print(
            f"SUMMARY: startup targets {'MET' if met else 'MISSED'}: `python3 dk_installer.py --help` "
            f"{help_ratio:.2f}x bare, `dk-installer --help` {launcher_ratio:.2f}x "
            f"(targets <= {TARGET_RATIO}x); "
            f"--help/--version without a runtime {no_runtime_s * 1000:.0f} ms (target <= "
            f"{TARGET_NO_RUNTIME_S * 1000:.0f} ms), {'wrote files' if wrote else 'wrote nothing'}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
