"""The `dk-installer` command on PATH, and the one form every hint uses to name this installer
(`dk-installer stop` where the launcher is ours and on PATH, else the full command)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.copies import installer_command, single_file

if TYPE_CHECKING:
    from dk_installer.config import Settings
    from dk_installer.paths import Paths


LAUNCHER_MARK = "# dk-installer launcher:"


def launcher_is_ours(path: Path, home: Path | None = None) -> bool:
    """Written by dk-installer (and, given `home`, serving that install: a launcher of another
    install is left to that install)."""
    try:
        head = path.read_text(errors="replace")[:512]
    except OSError:
        return False
    if LAUNCHER_MARK not in head:
        return False
    import shlex

    return home is None or f"export DK_INSTALLER_HOME={shlex.quote(str(home))}\n" in head


def launcher_script(paths: Paths, settings: Settings) -> str:
    """The `dk-installer` launcher: the command that runs this installer now (the runtime's
    byte-compiled package: one interpreter start, nothing compiled), preferring the installer's
    saved copy in its home over a file that may go away."""
    import shlex

    command = " ".join(shlex.quote(part) for part in installer_command(saved_copy=paths.installer_copy))
    return (
        "#!/bin/sh\n"
        f"{LAUNCHER_MARK} written by dk-installer; `dk-installer uninstall` removes it.\n"
        f"export DK_INSTALLER_HOME={shlex.quote(str(paths.home))}\n"
        "export DK_INSTALLER_LAUNCHED_BY=launcher\n"
        f'exec {command} "$@"\n'
    )


def our_launcher_on_path(paths: Paths) -> bool:
    found = shutil.which("dk-installer")
    return (
        found is not None
        and Path(found).resolve() == paths.launcher.resolve()
        and launcher_is_ours(paths.launcher, paths.home)
    )


def self_command(settings: Settings, paths: Paths) -> str:
    """How the user runs this installer again, for the hints we print."""
    if settings.launched_by == "package" or our_launcher_on_path(paths):
        return "dk-installer"
    python = settings.user_python or sys.executable
    on_path = shutil.which("python3")
    if on_path and os.path.realpath(on_path) == os.path.realpath(python):
        python = "python3"
    script = settings.user_script or single_file()
    return f"{python} {script}" if script else f"{python} -m dk_installer"
