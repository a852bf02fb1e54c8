"""journal."""

from __future__ import annotations

import contextlib
import json
import os
from typing import TYPE_CHECKING, Any

from dk_installer.config import now_iso, read_json_object, write_file_atomically
from dk_installer.testgen.venvs import active_venv

if TYPE_CHECKING:
    from dk_installer.paths import Paths


class Journal:
    """What a mutating action is doing: written atomically before each step with side effects and
    removed once the action has succeeded or been rolled back. A journal that the next command
    finds means the action was killed (SIGKILL, power loss): recover_interrupted_action() then puts
    back what was there before it, or, for uninstall and a commit in progress, finishes it."""

    def __init__(self, paths: Paths, values: dict[str, Any] | None = None) -> None:
        self.paths = paths
        self.values: dict[str, Any] = values or {}

    @classmethod
    def found(cls, paths: Paths) -> Journal | None:
        if not paths.journal.exists():
            return None
        # A journal that cannot be read still means an interrupted action; what it does not say is
        # taken the safe way in roll_back_to_journal (keep the data).
        return cls(paths, read_json_object(paths.journal) or {"action": "install"})

    @property
    def active(self) -> bool:
        return bool(self.values)

    def begin(self, action: str, running: bool) -> None:
        """Remember what existed before the action changed anything, and whether TestGen ran."""
        paths = self.paths
        venv = active_venv(paths)
        try:
            state_before: str | None = paths.state.read_text()
        except OSError:
            state_before = None
        self.values = {
            "action": action,
            "pid": os.getpid(),
            "started": now_iso(),
            "step": None,
            "phase": "steps",
            "home_existed": paths.testgen_home.exists(),
            "credentials_existed": paths.credentials.exists(),
            "venv_before": venv.name if venv else None,
            "state_before": state_before,
            "was_running": running,
            "safety_copy": False,
            "keep_data": False,
        }
        self.record()

    def record(self, **changes: Any) -> None:
        if self.active:
            self.values.update(changes)
            write_file_atomically(self.paths.journal, json.dumps(self.values, indent=2) + "\n", mode=0o600)

    def clear(self) -> None:
        if self.active:
            self.values = {}
            with contextlib.suppress(FileNotFoundError):
                self.paths.journal.unlink()
