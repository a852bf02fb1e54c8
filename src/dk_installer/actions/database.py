"""TestGen's data and the user's PostgreSQL server: migrate-database (embedded to server) and
configure --database (the same data, reached another way)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dk_installer.actions.boundary import load_state
from dk_installer.bootstrap import EXIT_USAGE
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.steps.base import run_steps
from dk_installer.steps.database import (
    CheckDatabase,
    CheckDemoRoom,
    DumpEmbedded,
    LoadIntoServer,
    SwitchToServer,
    choose_database,
)
from dk_installer.steps.install import RestartApp, SaveState, StartApp, StopApp, VerifyLogin

if TYPE_CHECKING:
    from dk_installer.steps.base import ActionContext


def migrate_database_action(ctx: ActionContext, url: str) -> None:
    state = load_state(ctx, required=True)
    assert state
    if state.database:
        raise InstallerError(
            f"TestGen's data is already on {state.database}; migrate-database moves an embedded "
            "install's data.",
            code=ErrorCode.VERSION_CONFLICT,
            exit_code=EXIT_USAGE,
        )
    choose_database(ctx, url)
    assert ctx.database
    ctx.console.say(f"Moving TestGen's data from its embedded PostgreSQL to {ctx.database.url()}\n")
    run_steps(
        ctx,
        [
            CheckDatabase(schema="absent"),
            CheckDemoRoom(),
            StopApp(),
            DumpEmbedded(),
            LoadIntoServer(),
            SwitchToServer(),
            StartApp(),
            VerifyLogin(),
            SaveState(previous=state),
        ],
    )
    ctx.console.say(
        f"TestGen's data is on {ctx.database.url()} now. The embedded copy stays in {ctx.paths.pgdata} "
        "until you remove it; TestGen no longer uses it."
    )


def configure_database_action(ctx: ActionContext, url: str) -> None:
    """configure --database: the same data on its server, reached another way (a moved server, a
    new password, another TLS mode): checked first, one restart, rolled back on failure."""
    state = load_state(ctx, required=True)
    assert state
    if not state.database:
        raise InstallerError(
            f"TestGen keeps its data in its embedded PostgreSQL; move it to a server with "
            f"`{ctx.self_command()} migrate-database --to {url}`.",
            code=ErrorCode.VERSION_CONFLICT,
            exit_code=EXIT_USAGE,
        )
    choose_database(ctx, url)
    assert ctx.database
    ctx.console.say(f"Changing how TestGen reaches its data: {ctx.database.url()}\n")
    run_steps(
        ctx,
        [
            CheckDatabase(schema="existing"),
            StopApp(),
            SwitchToServer(),
            RestartApp(),
            VerifyLogin(),
            SaveState(previous=state),
        ],
    )
    ctx.console.say(f"TestGen reaches its data on {ctx.database.url()}.")
