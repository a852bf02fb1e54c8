"""actions.lifecycle."""

from __future__ import annotations

import contextlib
import signal
from typing import TYPE_CHECKING

from dk_installer.actions.boundary import load_state
from dk_installer.checks import Requirement, check_port
from dk_installer.copies import installer_command
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.runner import deferred_signals, file_tail
from dk_installer.service import ServiceManager
from dk_installer.steps.base import require, run_steps
from dk_installer.steps.install import StartApp, StopApp

if TYPE_CHECKING:
    from dk_installer.steps.base import ActionContext


def start_action(ctx: ActionContext) -> None:
    state = load_state(ctx, required=True)
    assert state
    testgen = ctx.testgen
    if testgen.serving():
        ctx.console.say(f"TestGen is already running: {testgen.ui_url}")
        return
    testgen.stop()  # leftovers of a crashed run would hold the ports and the database
    require(
        ctx,
        [
            check_port(testgen.ui_port, "--port", False, installed=True),
            check_port(testgen.api_port, "--api-port", False, installed=True),
        ],
    )
    run_steps(ctx, [StartApp()])
    ctx.console.say(f"TestGen {state.product_version} is running: {testgen.ui_url}")


def stop_action(ctx: ActionContext) -> None:
    with contextlib.suppress(InstallerError):
        load_state(ctx, required=False)
    run_steps(ctx, [StopApp()])
    if ctx.was_running:
        ctx.console.say("TestGen and its PostgreSQL are stopped.")
    else:
        ctx.console.say("TestGen was not running.")


def run_action(ctx: ActionContext) -> None:
    """TestGen in the foreground, for a service manager or a terminal: SIGTERM (or Ctrl+C) stops
    it and its PostgreSQL and ends with exit 0; TestGen ending by itself ends with exit 1, so that
    Restart=on-failure starts it again. Holds no lock, records no event."""
    state = load_state(ctx, required=True)
    assert state
    testgen = ctx.testgen
    if testgen.running():
        raise InstallerError(
            f"TestGen is already running ({testgen.ui_url}); stop it first with `{ctx.self_command()} stop`.",
            code=ErrorCode.START_FAILED,
        )
    testgen.stop(through_service=False)  # leftovers of a crashed run would hold the ports and the database
    require(
        ctx,
        [
            check_port(testgen.ui_port, "--port", False, installed=True),
            check_port(testgen.api_port, "--api-port", False, installed=True),
        ],
    )
    interrupted = False
    try:
        process = testgen.launch()
        with ctx.console.step("Start TestGen") as progress:
            testgen.wait_until_serving(process, progress)
        ctx.console.say(
            f"TestGen {state.product_version} is running: {testgen.ui_url} (SIGTERM or Ctrl+C stops it)"
        )
        returncode = process.wait()
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Whatever ended it (a signal, TestGen dying, a failed start), nothing of it stays behind.
        with deferred_signals():
            testgen.stop(through_service=False)
    if interrupted:
        ctx.console.say("TestGen and its PostgreSQL are stopped.")
        return
    if returncode not in (0, -signal.SIGTERM):
        raise InstallerError(
            f"TestGen exited (exit code {returncode}).",
            code=ErrorCode.START_FAILED,
            details=file_tail(ctx.paths.app_log, 15),
        )
    ctx.console.say("TestGen was stopped.")


def service_command(ctx: ActionContext) -> list[str]:
    """What the service runs: `run`, the way this installer runs now."""
    return installer_command("run", saved_copy=ctx.paths.installer_copy)


def service_enable_action(ctx: ActionContext, print_only: bool) -> None:
    manager = ServiceManager(ctx.paths)
    definition = manager.definition(service_command(ctx), ctx.paths)
    if print_only:
        ctx.console.say(f"# {manager.unit_path}")
        ctx.console.say(definition)
        return
    state = load_state(ctx, required=True)
    assert state
    reason = manager.unusable_reason()
    require(
        ctx,
        [
            Requirement(
                ErrorCode.SERVICE_UNAVAILABLE,
                "Service manager",
                reason is None,
                "usable"
                if reason is None
                else f"{reason}. Nothing was written. Start TestGen with `{ctx.self_command()} start`, "
                f"or run `{ctx.self_command()} run` under a supervisor of your choice.",
            )
        ],
    )
    testgen = ctx.testgen
    with ctx.console.step("Start TestGen as a service") as progress:
        testgen.stop(progress)  # the service runs it from now on, not a `start` beside it
        manager.enable(definition)
        testgen.wait_until_serving(None, progress)
        progress.result = str(manager.unit_path)
    ctx.console.say(f"TestGen runs as a service and starts at boot: {testgen.ui_url}")
    hint = manager.linger_hint()
    if hint:
        ctx.console.say(hint)


def service_disable_action(ctx: ActionContext) -> None:
    manager = ServiceManager(ctx.paths)
    if not manager.installed():
        ctx.console.say("TestGen is not a service; nothing to do.")
        return
    with ctx.console.step("Remove the service") as progress:
        manager.disable()
        progress.result = f"removed {manager.unit_path}"
    ctx.console.say(
        f"TestGen no longer starts at boot and is stopped; `{ctx.self_command()} start` starts it."
    )


def service_status_action(ctx: ActionContext) -> None:
    manager = ServiceManager(ctx.paths)
    if not manager.installed():
        ctx.console.say(f"TestGen is not a service. `{ctx.self_command()} service enable` makes it one.")
        return
    active = manager.active()
    ctx.console.say(f"TestGen is a service ({manager.unit_path}): {'running' if active else 'not running'}.")
