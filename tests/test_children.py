"""Issue 15, item 1: the user's current folder and PYTHONPATH are not trusted. Every child the
installer starts runs in a folder of the installer's choosing, Python children run isolated, and uv
reads no configuration file: what the installer means, it passes explicitly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import INSTALLER, Sandbox, build_fake_wheel

# Each module writes a line to the marker when anything imports it, then nothing else: if one is
# ever imported, the marker says by which program, and the child may well fail afterwards.
HOSTILE_MODULES = ("csv", "sitecustomize", "venv", "pip")
HOSTILE_CODE = """import os, sys
with open({marker!r}, "a") as handle:
    handle.write(f"{name}: {{sys.executable}} {{sys.argv}} in {{os.getcwd()}}\\n")
"""


def hostile_folder(root: Path) -> tuple[Path, Path]:
    """A folder like a shared download folder another user filled: a uv.toml naming a dead index
    and wheels of its own (a newer "TestGen"), and Python modules that shadow the standard
    library's for any Python that puts the folder on sys.path."""
    folder = root / "downloads"
    wheels = folder / "wheels"
    wheels.mkdir(parents=True)
    build_fake_wheel("5.9.9", wheels)
    marker = root / "hostile-code-ran.txt"
    (folder / "uv.toml").write_text(f'index-url = "http://127.0.0.1:9/simple"\nfind-links = ["{wheels}"]\n')
    (folder / ".python-version").write_text("3.9\n")
    for name in HOSTILE_MODULES:
        (folder / f"{name}.py").write_text(HOSTILE_CODE.format(marker=str(marker), name=name))
    return folder, marker


def test_a_hostile_current_folder_and_pythonpath_are_never_used(sandbox: Sandbox, tmp_path: Path) -> None:
    """install, status and doctor run from that folder, with PYTHONPATH naming it. The installer
    itself runs with -I, as the runtime's `python -I -m dk_installer` does: what must not happen is
    that a child it starts (uv, a Python probe, TestGen, a copy of itself) loads the folder's code
    or follows its uv.toml."""
    folder, marker = hostile_folder(tmp_path)
    env = sandbox.merged_env({"PYTHONPATH": str(folder)})

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-I", str(INSTALLER), *args],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=300,
            stdin=subprocess.DEVNULL,
        )

    install = run(*sandbox.install_args("--no-demo"))
    status = run("status", "--json")
    doctor = run("doctor")
    assert not marker.exists(), marker.read_text()
    assert install.returncode == 0, install.stdout + install.stderr
    assert status.returncode == 0, status.stderr
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    # From the wheelhouse the installer was given, not from the folder's uv.toml.
    assert sandbox.state()["product_version"] == "5.1.0"
    assert "5.1.0" in status.stdout
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["wheels", "uv.toml", ".python-version", *(f"{n}.py" for n in HOSTILE_MODULES)]
    )  # nothing written there either


def test_relative_paths_still_mean_the_users_folder(sandbox: Sandbox, tmp_path: Path) -> None:
    """uv and the Python probes run elsewhere now: --find-links and --python relative to the folder
    the user runs from are made absolute first."""
    here = tmp_path / "here"
    here.mkdir()
    wheels = os.path.relpath(sandbox.wheelhouse, here)
    python = os.path.relpath(sys.executable, here)
    assert os.sep in python and not python.startswith(os.sep)
    ports = ["--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port)]
    result = sandbox.run(
        "install", "--find-links", wheels, "--python", python, "--no-demo", "--no-start", *ports, cwd=here
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert sandbox.state()["product_version"] == "5.1.0"
