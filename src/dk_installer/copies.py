"""The one way the installer starts a copy of itself: the analytics sender, the log pump, the
service's `run` and the `dk-installer` launcher all run the command this module gives."""

from __future__ import annotations

import sys
from pathlib import Path


def single_file() -> str | None:
    """The dk_installer.py this package was loaded from (a Python that has the runtime's packages
    runs the file's embedded sources itself), or None when the package runs from its installed,
    byte-compiled modules (the runtime venv, a package install)."""
    package = sys.modules["dk_installer"]
    return getattr(getattr(package.__spec__, "loader", None), "single_file", None)


def installer_command(*args: str, saved_copy: Path | None = None) -> list[str]:
    """The argv that runs this installer again with `args`, by the Python running it now: the
    package's cached bytecode with -I (the current folder and PYTHONPATH cannot shadow it), or the
    single file it came from (`saved_copy`, the installer's own copy in its home, when given and
    present: a clone or a download folder may go away). A copy runs as isolated as this one:
    with -I here, PYTHONPATH is not imported by the copy either."""
    source = single_file()
    if source is None:
        return [sys.executable, "-I", "-m", "dk_installer", *args]
    script = saved_copy if saved_copy is not None and saved_copy.exists() else Path(source)
    isolated = ["-I"] if sys.flags.isolated else []
    return [sys.executable, *isolated, str(script.absolute()), *args]
