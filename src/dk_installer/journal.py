"""The journal: what a mutating action is doing, written before each step with side effects, so
that the next command can put things back after a kill. Each step knows how to undo itself both
ways: `undo()` in a live rollback, `recover()` from this record after a kill (recovery.py)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import stat
from typing import TYPE_CHECKING, Any

from dk_installer.config import json_value_fits, now_iso, write_file_atomically
from dk_installer.testgen.venvs import active_venv

if TYPE_CHECKING:
    from pathlib import Path

    from dk_installer.paths import Paths

log = logging.getLogger("dk_installer")


@dataclasses.dataclass
class JournalRecord:
    """What existed before the action and how far it got. A None "before" fact means unknown (an
    unreadable journal): recovery then takes the safe way and keeps what is there."""

    action: str
    pid: int = 0
    started: str = ""
    steps: list[str] = dataclasses.field(default_factory=list)  # started, in order
    phase: str = "steps"  # "commit" once every step succeeded: a kill then finishes the action
    was_running: bool = False
    home_existed: bool | None = None
    credentials_existed: bool | None = None
    launcher_existed: bool | None = None
    venv_before: str | None = None  # "" when there was none
    state_existed: bool | None = None
    state_before: str | None = None
    safety_copy: bool = False  # a complete copy of TestGen's home is in upgrade_backup
    keep_data: bool = False
    partial_file: str | None = None  # a backup being written (beside its target)
    schema_created: bool = False  # TestGen's schema on the user's server, made by this action
    demo_database_created: bool = False  # the demo's database on the user's server, made by this action
    readable: bool = True  # False: the journal was there but could not be read or trusted

    @property
    def step(self) -> str | None:
        return self.steps[-1] if self.steps else None

    @classmethod
    def from_json(cls, raw: object) -> JournalRecord | None:
        """The record, or None when `raw` is not one (every field is checked for its type)."""
        if not isinstance(raw, dict) or not isinstance(raw.get("action"), str):
            return None
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            if field.name in raw:
                value = raw[field.name]
                if not json_value_fits(str(field.type), value):
                    return None
                values[field.name] = value
        return cls(**values)


def trusted_file(path: Path) -> bool:
    """Ours alone: a regular file owned by this user that nobody else can write. A journal that
    another local user could have written or planted is never acted on."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


class Journal:
    """Written atomically (0600) before each step with side effects, removed once the action has
    succeeded or been rolled back. A journal that the next command finds means the action was
    killed (SIGKILL, power loss)."""

    def __init__(self, paths: Paths, record: JournalRecord | None = None) -> None:
        self.paths = paths
        self._entry: JournalRecord | None = record

    @classmethod
    def found(cls, paths: Paths) -> Journal | None:
        """The journal a killed action left, or None. One that cannot be read or trusted still
        means an interrupted action; what it does not say is taken the safe way (keep the data)."""
        if not os.path.lexists(paths.journal):
            return None
        record = None
        if trusted_file(paths.journal):
            with contextlib.suppress(OSError, ValueError):
                record = JournalRecord.from_json(json.loads(paths.journal.read_text()))
        else:
            log.warning("journal %s is not ours alone; only its presence is used", paths.journal)
        return cls(paths, record or JournalRecord(action="install", readable=False))

    @property
    def active(self) -> bool:
        return self._entry is not None

    @property
    def entry(self) -> JournalRecord:
        assert self._entry is not None
        return self._entry

    def begin(self, action: str, running: bool) -> None:
        """Remember what existed before the action changed anything, and whether TestGen ran."""
        paths = self.paths
        venv = active_venv(paths)
        try:
            state_before: str | None = paths.state.read_text()
        except OSError:
            state_before = None
        self._entry = JournalRecord(
            action=action,
            pid=os.getpid(),
            started=now_iso(),
            was_running=running,
            home_existed=paths.testgen_home.exists(),
            credentials_existed=paths.credentials.exists(),
            launcher_existed=os.path.lexists(paths.launcher),
            venv_before=venv.name if venv else "",
            state_existed=state_before is not None,
            state_before=state_before,
        )
        self._write()

    def started(self, step: str) -> None:
        self.entry.steps.append(step)
        self._write()

    def record(self, **changes: Any) -> None:
        if self.active:
            for key, value in changes.items():
                setattr(self.entry, key, value)
            self._write()

    def _write(self) -> None:
        text = json.dumps(dataclasses.asdict(self.entry), indent=2) + "\n"
        write_file_atomically(self.paths.journal, text, mode=0o600)

    def clear(self) -> None:
        if self.active:
            self._entry = None
            with contextlib.suppress(FileNotFoundError):
                self.paths.journal.unlink()
