"""The action boundary: perform() starts and ends every action, takes the lock, turns every outcome
into an exit code and one analytics event built from what the action learned."""

from __future__ import annotations

import dataclasses
import errno
import logging
import shutil
import time
from typing import Callable

from dk_installer.analytics import ActionResult, analytics_consent, record_event, show_notice_once
from dk_installer.bootstrap import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK
from dk_installer.checks import RequirementsNotMet, check_home_writable
from dk_installer.config import (
    InstallerLock,
    InstallOptions,
    InstallState,
    Settings,
    close_lock_files_to_others,
)
from dk_installer.console import Console, textwrap_indent
from dk_installer.errors import ErrorCode, InstallerError, StateCorrupt
from dk_installer.paths import Paths
from dk_installer.recovery import recover_interrupted_action, remove_temporary_files
from dk_installer.runner import current_log_path, redact, start_run_log
from dk_installer.steps.base import MUTATING_ACTIONS, ActionContext

log = logging.getLogger("dk_installer")


@dataclasses.dataclass
class Invocation:
    """What the command line said, for one run."""

    action: str
    options_set: list[str]
    no_analytics: bool
    verbose: bool
    settings: Settings = dataclasses.field(default_factory=Settings.from_environment)


def action_result(
    invocation: Invocation,
    ctx: ActionContext,
    outcome: str,
    error: BaseException | None,
    duration_s: float,
) -> ActionResult:
    """The analytics view of an action that ended, from its context and what ended it."""
    code: ErrorCode | None = None
    if isinstance(error, InstallerError):
        code = error.code
    elif isinstance(error, KeyboardInterrupt):
        code = ErrorCode.INTERRUPTED
    elif error is not None:
        code = ErrorCode.UNEXPECTED
    failed = [c for c in ctx.checks if not c.ok]
    if not failed and isinstance(error, RequirementsNotMet):
        failed = error.failed
    return ActionResult(
        action=invocation.action,
        options=list(invocation.options_set),
        outcome=outcome,
        duration_s=duration_s,
        failed_step=None if outcome == "success" else ctx.step,
        error_code=code.value if code else None,
        error_type=type(error).__name__ if outcome == "failure" and error is not None else None,
        missing_requirements=[c.code.value for c in failed],
        login_success=ctx.login_success,
        product_version=ctx.product_version,
        package_engine=ctx.package_engine,
    )


def perform(
    invocation: Invocation,
    body: Callable[[ActionContext], None],
    *,
    options: InstallOptions | None = None,
    quiet: bool = False,
    records_event: bool = True,
    writes_nothing: bool = False,
) -> int:
    """Run `body` as one action: lock, run log, repair of a killed command, analytics event and
    the exit code. `writes_nothing` (an action that only shows something) skips all that writes."""
    paths = Paths.from_environment()
    mutating = invocation.action in MUTATING_ACTIONS and not writes_nothing
    records_event = records_event and not writes_nothing
    settings = invocation.settings
    console = Console(quiet=quiet, no_color=settings.no_color)
    enabled, _rule = analytics_consent(paths, settings, invocation.no_analytics)
    if records_event:
        show_notice_once(paths, enabled)
    ctx = ActionContext(
        paths, settings, console, enabled, options or InstallOptions(), action=invocation.action
    )
    started = time.monotonic()
    lock = InstallerLock(paths.lock, invocation.action)
    exit_code = EXIT_OK
    outcome = "success"
    error: BaseException | None = None
    # A home that preflight refuses (a path TestGen cannot use, a folder that cannot be made) is
    # never created: the lock and the run log would otherwise make it before preflight says no.
    home_usable = paths.home.exists() or check_home_writable(paths).ok
    try:
        if mutating and home_usable:
            lock.acquire()
        if not writes_nothing and home_usable:
            start_run_log(paths, invocation.action, invocation.verbose)
        if mutating:
            recover_interrupted_action(ctx)
        body(ctx)
    except RequirementsNotMet as exc:
        outcome, error, exit_code = "aborted", exc, exc.exit_code
        console.error(exc.message)
    except InstallerError as exc:
        if exc.code is ErrorCode.DISK_FULL:
            exc.message += " " + free_space_note(paths, settings)
        outcome, error, exit_code = "failure", exc, exc.exit_code
        show_failure(console, exc)
    except KeyboardInterrupt as exc:
        outcome, error, exit_code = "interrupted", exc, EXIT_INTERRUPTED
        console.error("\nInterrupted. What this command had started was undone.")
    except OSError as exc:
        # A full disk under the installer's own writes: said as such, not as a bug.
        error = disk_full(exc, paths, settings)
        log.exception("disk full" if error is not exc else "unexpected error")
        outcome, exit_code = "failure", EXIT_FAILED
        if isinstance(error, InstallerError):
            show_failure(console, error)
        else:
            show_unexpected(console, ctx, exc)
    except Exception as exc:
        log.exception("unexpected error")
        outcome, error, exit_code = "failure", exc, EXIT_FAILED
        show_unexpected(console, ctx, exc)
    finally:
        if mutating and lock.held:
            remove_temporary_files(ctx)
            close_lock_files_to_others(paths.home)
        lock.release()
        result = action_result(invocation, ctx, outcome, error, time.monotonic() - started)
        log.info("%s ended: %s (exit %s)", invocation.action, outcome, exit_code)
        if records_event:
            record_event(result, paths, settings, invocation.no_analytics)
    return exit_code


def free_space_note(paths: Paths, settings: Settings) -> str:
    """Where the disk is full and by how much, for a disk-full headline."""
    folder = paths.home if paths.home.exists() else paths.home.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return ""
    return (
        f"{free / 1024**2:.0f} MB are free under {folder}; an install needs about "
        f"{settings.min_free_bytes / 1024**3:.0f} GB. What this command had written was removed."
    )


def disk_full(exc: OSError, paths: Paths, settings: Settings) -> BaseException:
    """An InstallerError for ENOSPC, else the error itself."""
    if exc.errno != errno.ENOSPC:
        return exc
    return InstallerError(
        f"The disk is full: {exc.strerror} ({exc.filename}). {free_space_note(paths, settings)}",
        code=ErrorCode.DISK_FULL,
    )


def show_unexpected(console: Console, ctx: ActionContext, exc: BaseException) -> None:
    console.error(
        f"Unexpected error: {type(exc).__name__}: {redact(str(exc))}\n"
        f"Full log: {current_log_path()}. Please report it with `{ctx.self_command()} logs`."
    )


def show_failure(console: Console, exc: InstallerError) -> None:
    console.error(f"Error: {exc.message}")
    if exc.details:
        console.error(textwrap_indent(exc.details))
    console.error(f"Full log: {current_log_path()}")


def load_state(ctx: ActionContext, *, required: bool) -> InstallState | None:
    try:
        state = InstallState.load(ctx.paths.state)
    except StateCorrupt as exc:
        raise InstallerError(
            f"The install receipt is damaged: {exc}. `{ctx.self_command()} doctor` explains; "
            f"`{ctx.self_command()} install` repairs it.",
            code=ErrorCode.STATE_CORRUPT,
        ) from None
    if state is None and required:
        raise InstallerError(
            f"TestGen is not installed. Install it with `{ctx.self_command()} install`.",
            code=ErrorCode.NOT_INSTALLED,
        )
    if state:
        ctx.use_receipt(state)
    return state
