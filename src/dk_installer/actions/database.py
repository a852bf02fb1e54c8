"""TestGen's data and the user's PostgreSQL server: migrate-database (embedded to server), and what
uninstall leaves on a server or drops from it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dk_installer.actions.boundary import load_state
from dk_installer.bootstrap import EXIT_REQUIREMENTS, EXIT_USAGE
from dk_installer.database import connect
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.steps.base import Step, run_steps
from dk_installer.steps.database import (
    CheckDatabase,
    DumpEmbedded,
    LoadIntoServer,
    SwitchToServer,
    choose_database,
)
from dk_installer.steps.install import RestartApp, SaveState, StartApp, StopApp, VerifyLogin
from dk_installer.testgen.config import demo_database

if TYPE_CHECKING:
    from dk_installer.console import Progress
    from dk_installer.steps.base import ActionContext


class CheckDemoRoom(Step):
    """The demo's data moves to a database of its own on the server: the server must let the user
    make it, and none of that name may be there."""

    name = "check_demo_room"
    title = "Check room for the demo's database"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        target, facts = ctx.database, ctx.server
        assert target and facts and ctx.database_password is not None
        if not (ctx.state and ctx.state.demo_data):
            progress.result = "no demo data to move"
            return
        demo = demo_database(target.dbname)
        if not facts.can_create_database:
            raise InstallerError(
                f"The demo's data moves to its own database ({demo}), and {target.user} may not "
                f"create databases on {target.host}:{target.port}. Grant it CREATEDB "
                f"(ALTER ROLE {target.user} "
                "CREATEDB), or give --database-admin-user a role that may.",
                code=ErrorCode.DATABASE_PRIVILEGES,
                exit_code=EXIT_REQUIREMENTS,
            )
        session = connect(target, ctx.database_password, database="postgres")
        try:
            taken = session.run("SELECT 1 FROM pg_database WHERE datname = :name", name=demo)
        finally:
            session.close()
        if taken:
            raise InstallerError(
                f"{target.host}:{target.port} already has a database {demo}, where the demo's "
                "data would go; "
                "migrate-database never writes over it.",
                code=ErrorCode.DATABASE_IN_USE,
                exit_code=EXIT_REQUIREMENTS,
            )
        progress.result = f"{demo} can be made"


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
