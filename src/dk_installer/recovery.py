"""After a kill: recognising an interrupted action, stopping what it left running, then asking
each step the killed action had started to put back what was there before it (Step.recover), or,
for a kill while the action was committing, to finish (Step.finish)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from dk_installer.config import InstallerLock, InstallState
from dk_installer.defaults import DEFAULT_API_PORT, DEFAULT_UI_PORT
from dk_installer.journal import Journal
from dk_installer.steps.base import Step

if TYPE_CHECKING:
    from dk_installer.paths import Paths
    from dk_installer.steps.base import ActionContext


def register_all_steps() -> None:
    """Each step module registers its steps in Step.by_name when imported. Only a recovery needs
    them all, so they are imported then: `status` and the commands that find no journal start
    faster. Plain imports, so that tests/test_layers.py sees them."""
    import dk_installer.steps.backup
    import dk_installer.steps.configure
    import dk_installer.steps.database
    import dk_installer.steps.install
    import dk_installer.steps.remove  # noqa: F401


def interrupted_action(paths: Paths, lock_is_ours: bool = False) -> str | None:
    """The action that a killed command left half done, or None. Homes left by installers
    before the journal existed count too: config.env with no receipt and no credentials is what
    a killed `standalone-setup` leaves. While another command holds the lock, its journal is
    work in progress, not an interruption."""
    if not lock_is_ours and InstallerLock.holder(paths.lock):
        return None
    journal = Journal.found(paths)
    if journal is not None:
        return journal.entry.action
    if paths.config_env.exists() and not paths.state.exists() and not paths.credentials.exists():
        return "install"
    return None


def steps_to_recover(entry_steps: list[str], readable: bool) -> list[type[Step]]:
    """The steps the killed action had started, newest first. When the journal could not be read,
    every step but the uninstall's: each one's recovery is safe with facts it does not know."""
    from dk_installer.steps.remove import RemoveFiles

    register_all_steps()
    if readable:
        return [Step.by_name[name] for name in reversed(entry_steps) if name in Step.by_name]
    return [step for name, step in Step.by_name.items() if step is not RemoveFiles]


def recover_interrupted_action(ctx: ActionContext) -> None:
    """Before a mutating command does what was asked (it holds the lock, so the command that
    left the journal is gone): stop what the killed command left running, then put back what was
    there before it, or finish an uninstall or a commit that was under way."""
    from dk_installer.steps.remove import remove_testgen_files
    from dk_installer.testgen.app import TestGen

    paths = ctx.paths
    action = interrupted_action(paths, lock_is_ours=True)
    if action is None:
        return
    journal = Journal.found(paths)
    entry = journal.entry if journal else None
    ctx.console.warn(
        f"An interrupted `{action}` was found"
        + (f" (it stopped in step '{entry.step}')" if entry and entry.step else "")
        + ": repairing that first."
    )
    with ctx.console.step(f"Recover from the interrupted {action}") as progress:
        progress.update("stopping what it left running")
        TestGen(paths, ctx.settings, DEFAULT_UI_PORT, DEFAULT_API_PORT, ctx.analytics_enabled).stop(progress)
        if journal is None or entry is None:
            remove_testgen_files(paths, keep_data=False, report=progress.update)
            progress.result = "removed the half-made TestGen home of an earlier installer"
            return
        for step in steps_to_recover(entry.steps, entry.readable):
            progress.update(f"{'finishing' if entry.phase == 'commit' else 'undoing'} '{step.title}'")
            if entry.phase == "commit":
                step.finish(paths, entry)
            else:
                step.recover(paths, entry)
        if entry.phase == "commit" or action == "uninstall":
            progress.result = f"finished the {action}"
        else:
            progress.result = f"put back what was there before the {action}"
        journal.clear()
    restarts = action in ("upgrade", "restore", "backup", "configure")
    if entry.was_running and restarts and ctx.action not in ("stop", "uninstall"):
        state = InstallState.load(paths.state)
        if state is not None:
            with ctx.console.step("Start TestGen again") as progress:
                TestGen.from_receipt(paths, ctx.settings, state, ctx.analytics_enabled).start(progress)


def remove_temporary_files(ctx: ActionContext) -> None:
    """uv's and TestGen's TMPDIR goes at the end of each mutating command, unless the app that
    may still use it runs."""
    if ctx.paths.tmp.exists() and not ctx.testgen.processes():
        shutil.rmtree(ctx.paths.tmp, ignore_errors=True)
