"""TestGen's venvs: testgen/venv is a symlink to one of testgen/venvs/*, swapped in one rename
(venvs embed their own path, so they never move)."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dk_installer.paths import Paths

log = logging.getLogger("dk_installer")


def active_venv(paths: Paths) -> Path | None:
    return paths.venv.resolve() if paths.venv.is_symlink() and paths.venv.exists() else None


def point_venv_at(paths: Paths, target: Path | None) -> None:
    """Atomically make testgen/venv point at `target` (or disappear)."""
    if target is None:
        if paths.venv.is_symlink():
            paths.venv.unlink()
        return
    tmp = paths.testgen / f".venv-link-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(Path("venvs") / target.name)
    os.replace(tmp, paths.venv)


def remove_stale_venvs(paths: Paths) -> None:
    """Staging venvs left by a killed run (never the active one)."""
    active = active_venv(paths)
    if paths.venvs.is_dir():
        for venv in paths.venvs.iterdir():
            if venv.resolve() != active:
                log.info("removing stale venv %s", venv)
                shutil.rmtree(venv, ignore_errors=True)
