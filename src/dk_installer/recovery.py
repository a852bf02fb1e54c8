"""recovery."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from dk_installer.config import InstallerLock, InstallState, remove_tree, write_file_atomically
from dk_installer.defaults import DEFAULT_API_PORT, DEFAULT_UI_PORT
from dk_installer.journal import Journal
from dk_installer.launcher import launcher_is_ours
from dk_installer.steps.base import Step
from dk_installer.testgen.app import TestGen
from dk_installer.testgen.venvs import point_venv_at, remove_stale_venvs

if TYPE_CHECKING:
    from dk_installer.console import Progress
    from dk_installer.paths import Paths
    from dk_installer.steps.base import ActionContext

log = logging.getLogger("dk_installer")


def interrupted_action(paths: Paths, lock_is_ours: bool = False) -> str | None:
    """The action that a killed command left half done, or None. Homes left by installers
    before the journal existed count too: config.env with no receipt and no credentials is what
    a killed `standalone-setup` leaves. While another command holds the lock, its journal is
    work in progress, not an interruption."""
    if not lock_is_ours and InstallerLock.held_elsewhere(paths.lock):
        return None
    journal = Journal.found(paths)
    if journal is not None:
        return str(journal.values.get("action") or "install")
    if paths.config_env.exists() and not paths.state.exists() and not paths.credentials.exists():
        return "install"
    return None


def recover_interrupted_action(ctx: ActionContext) -> None:
    """Before a mutating command does what was asked (it holds the lock, so the command that
    left the journal is gone): stop what the killed command left running, then put back what was
    there before it, or finish an uninstall or a commit that was under way."""
    paths = ctx.paths
    action = interrupted_action(paths, lock_is_ours=True)
    if action is None:
        return
    journal = Journal.found(paths) or Journal(paths)
    values = journal.values
    ctx.console.warn(
        f"An interrupted `{action}` was found"
        + (f" (it stopped in step '{values['step']}')" if values.get("step") else "")
        + ": repairing that first."
    )
    with ctx.console.step(f"Recover from the interrupted {action}") as progress:
        progress.update("stopping what it left running")
        TestGen(paths, ctx.settings, DEFAULT_UI_PORT, DEFAULT_API_PORT, ctx.analytics_enabled).stop(progress)
        if not values:
            remove_testgen_files(paths, keep_data=False, report=progress.update)
            progress.result = "removed the half-made TestGen home of an earlier installer"
        elif values.get("phase") == "commit":
            remove_stale_venvs(paths)
            remove_tree(paths.upgrade_backup)
            progress.result = f"finished the {action}"
        elif action == "uninstall":
            remove_testgen_files(paths, bool(values.get("keep_data")), report=progress.update)
            progress.result = "finished the uninstall"
        elif action in ("install", "upgrade", "restore"):
            roll_back_to_journal(paths, values, progress)
            progress.result = f"put back what was there before the {action}"
        else:
            if values.get("partial_file"):
                remove_tree(Path(values["partial_file"]))  # a backup cut short
            remove_tree(paths.backup_snapshot)
            progress.result = "stopped its leftovers"
        journal.clear()
    restarts = action in ("upgrade", "restore", "backup")
    if values.get("was_running") and restarts and ctx.action not in ("stop", "uninstall"):
        state = InstallState.load(paths.state)
        if state is not None:
            with ctx.console.step("Start TestGen again") as progress:
                TestGen.from_receipt(paths, ctx.settings, state, ctx.analytics_enabled).start(progress)


def roll_back_to_journal(paths: Paths, values: dict[str, Any], progress: Progress) -> None:
    """Undo a killed install or upgrade from what its journal says existed before it."""
    progress.update("restoring TestGen's data")
    remove_tree(paths.restore_staging)
    if values.get("safety_copy") and paths.upgrade_backup.exists():
        remove_tree(paths.testgen_home)
        os.rename(paths.upgrade_backup, paths.testgen_home)
    else:
        remove_tree(paths.upgrade_backup)  # half made: the data itself was not touched yet
        if values.get("home_existed", True) is False:
            remove_tree(paths.testgen_home)
    if values.get("credentials_existed", True) is False:
        remove_tree(paths.credentials)
    progress.update("restoring TestGen's venv")
    if "venv_before" in values:
        before = values["venv_before"]
        point_venv_at(paths, paths.venvs / before if before and (paths.venvs / before).is_dir() else None)
    remove_stale_venvs(paths)
    with contextlib.suppress(OSError):
        paths.venvs.rmdir()
    if "state_before" in values:
        if isinstance(values["state_before"], str):
            write_file_atomically(paths.state, values["state_before"])
        else:
            remove_tree(paths.state)


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


def remove_temporary_files(ctx: ActionContext) -> None:
    """uv's and TestGen's TMPDIR goes at the end of each mutating command, unless the app that
    may still use it runs."""
    if ctx.paths.tmp.exists() and not ctx.testgen.processes():
        shutil.rmtree(ctx.paths.tmp, ignore_errors=True)


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
