"""TestGen's log pump: a copy of the installer that sits between run-app's output and
logs/testgen-app.log for as long as TestGen runs, and rotates the file as it grows (TestGen keeps its
output open, so only the writer can rotate it). Started at every start, it needs none of the CLI:
`python -m dk_installer log-pump ...` comes here before click and the actions are imported."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import BinaryIO

LOG_PUMP = "log-pump"  # the hidden command: log-pump PATH MAX_BYTES KEPT


def pump_command(path: Path, max_bytes: int, kept: int) -> list[str]:
    """The arguments after the installer's own command."""
    return [LOG_PUMP, str(path), str(max_bytes), str(kept)]


def pump_rotating_log(source: BinaryIO, path: Path, max_bytes: int, kept: int) -> None:
    """Copy lines from `source` to `path` until it ends; once the file reaches `max_bytes`, it
    becomes path.1 (path.1 becomes path.2, ...; `kept` old files stay) and a new one starts."""
    out = open(path, "ab")  # noqa: SIM115 (reopened on every rotation)
    try:
        for line in iter(source.readline, b""):
            out.write(line)
            out.flush()
            if out.tell() >= max_bytes:
                out.close()
                for index in range(kept - 1, 0, -1):
                    older = path.with_name(f"{path.name}.{index}")
                    if older.exists():
                        os.replace(older, path.with_name(f"{path.name}.{index + 1}"))
                os.replace(path, path.with_name(f"{path.name}.1"))
                out = open(path, "ab")  # noqa: SIM115
    finally:
        out.close()


def main(args: list[str]) -> None:
    from dk_installer.bootstrap import restrict_umask

    restrict_umask()  # the rotated files are the user's alone, whatever umask started us
    path, max_bytes, kept = args
    try:
        pump_rotating_log(sys.stdin.buffer, Path(path), int(max_bytes), int(kept))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
