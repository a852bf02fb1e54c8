"""Removing what the installer made: TestGen's files (its data too unless kept), then everything
else under DK_INSTALLER_HOME and the launcher; the step that uninstall runs."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, Callable

from dk_installer.config import remove_tree
from dk_installer.launcher import launcher_is_ours
from dk_installer.steps.base import Step

if TYPE_CHECKING:
    from pathlib import Path

    from dk_installer.console import Progress
    from dk_installer.journal import JournalRecord
    from dk_installer.paths import Paths
    from dk_installer.steps.base import ActionContext

log = logging.getLogger("dk_installer")


def _remove_all(targets: list[Path], report: Callable[[str], None]) -> None:
    for target in targets:
        if target.exists() or target.is_symlink():
            report(f"removing {target}")
            remove_tree(target)


def remove_testgen_files(paths: Paths, keep_data: bool, report: Callable[[str], None] = log.info) -> None:
    """TestGen's venvs, run files and receipt; its data, credentials and backups too unless kept."""
    data = [] if keep_data else [paths.testgen_home, paths.credentials, paths.backups]
    _remove_all(
        [
            paths.venv,
            paths.venvs,
            paths.run_dir,
            paths.app_pid,
            paths.upgrade_backup,
            paths.restore_staging,
            paths.backup_snapshot,
            *data,
            paths.state,
        ],
        report,
    )
    with contextlib.suppress(OSError):
        paths.testgen.rmdir()


def remove_installer_files(paths: Paths, keep_data: bool, report: Callable[[str], None] = log.info) -> None:
    """Everything the installer created under DK_INSTALLER_HOME, except TestGen's data if kept,
    and its launcher."""
    remove_testgen_files(paths, keep_data, report)
    if launcher_is_ours(paths.launcher, paths.home):
        _remove_all([paths.launcher], report)
    _remove_all(
        [
            paths.cache,
            paths.pythons,
            paths.tmp,
            paths.logs,
            paths.installer_copy,
            paths.runtime,
            paths.journal,
            paths.lock,
        ],
        report,
    )
    with contextlib.suppress(OSError):
        paths.home.rmdir()


class RemoveFiles(Step):
    name = "remove_files"
    title = "Remove TestGen and the installer's files"

    def __init__(self, keep_data: bool) -> None:
        self.keep_data = keep_data

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        ctx.journal.record(keep_data=self.keep_data)
        if ctx.testgen.service.installed():
            progress.update("removing the service")
            ctx.testgen.service.disable()
        remove_installer_files(ctx.paths, self.keep_data, progress.update)
        ctx.journal.clear()  # it went with the rest; writing it again would make the home anew
        progress.result = "data kept" if self.keep_data else str(ctx.paths.home)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        """An uninstall that was killed is finished, not undone: part of it is gone already."""
        remove_testgen_files(paths, entry.keep_data)
