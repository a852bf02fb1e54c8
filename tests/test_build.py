"""The single file users download: generated from the package by build.py, equal to a fresh
build, readable text, and able to answer --help and --version on a machine with nothing but Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import INSTALLER, ROOT, Sandbox, bare_python

PACKAGE = ROOT / "src" / "dk_installer"


def test_the_committed_file_and_checksum_are_a_fresh_build() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "build.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_check_fails_when_a_module_changes(tmp_path: Path) -> None:
    for name in ("build.py", "dk_installer.py", "dk_installer.py.sha256"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(PACKAGE, tmp_path / "src" / "dk_installer", ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, str(tmp_path / "build.py"), "--check"]
    assert subprocess.run(build, capture_output=True, timeout=120).returncode == 0
    module = tmp_path / "src" / "dk_installer" / "paths.py"
    module.write_text(module.read_text() + "\n# an edit that was not rebuilt\n")
    stale = subprocess.run(build, capture_output=True, text=True, timeout=120)
    assert stale.returncode == 1 and "dk_installer.py" in stale.stderr


def test_the_download_is_readable_source() -> None:
    """`curl … | less` shows the modules as they are in src/, not an encoded blob."""
    text = INSTALLER.read_text(encoding="utf-8")
    for path in sorted(PACKAGE.rglob("*.py")):
        assert path.read_text(encoding="utf-8") in text, path
    assert "\0" not in text
    assert max(len(line) for line in text.splitlines()) <= 120


def test_help_and_version_come_from_the_download_alone(sandbox: Sandbox) -> None:
    """A bare Python 3.9 on a machine that never built the runtime, no network: the answers are
    the CLI's own (at 80 columns), and nothing is written anywhere."""
    offline = {
        **sandbox.env,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    live_env = {**offline, "COLUMNS": "80", "DK_INSTALLER_LAUNCHED_BY": "direct"}
    for args in (["--help"], ["-h"], ["--version"], ["install", "--help"], ["analytics", "show", "-h"]):
        answer = subprocess.run(
            [bare_python(), str(INSTALLER), *args], env=offline, capture_output=True, text=True, timeout=30
        )
        assert answer.returncode == 0, answer.stderr
        assert answer.stderr == ""
        live = subprocess.run(
            [sys.executable, "-I", "-m", "dk_installer", *args],
            env=live_env,
            capture_output=True,
            text=True,
            cwd=sandbox.root,  # not the repo, whose dk_installer.py would shadow the package
        )
        assert answer.stdout == live.stdout.replace("Usage: python -m dk_installer", "Usage: dk_installer.py")
    assert not sandbox.home.exists() and not sandbox.config.exists()
    assert os.listdir(sandbox.user_home) == []
