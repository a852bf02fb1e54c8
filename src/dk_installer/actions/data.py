"""backup and restore."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.actions.boundary import load_state
from dk_installer.steps.backup import (
    SnapshotData,
    SwapHome,
    UnpackBackup,
    WriteBackup,
    open_backup,
    read_backup,
)
from dk_installer.steps.base import run_steps
from dk_installer.steps.database import BackupSchema, LoadSchemaDump, server_of
from dk_installer.steps.install import RestartApp, StopApp, UpgradeDatabase, VerifyLogin

if TYPE_CHECKING:
    from dk_installer.steps.base import ActionContext


def backup_action(ctx: ActionContext, output: Path | None) -> None:
    state = load_state(ctx, required=True)
    assert state
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    target = (output or ctx.paths.backups / f"testgen-{state.product_version}-{stamp}.tar.gz").absolute()
    started = time.monotonic()
    # A stopped PostgreSQL gives an exact copy with cp and tarfile (pg_dump would need the server
    # up and pgserver's socket); TestGen is down only for the copy, not for the compression.
    if server_of(ctx):
        # TestGen keeps running: pg_dump reads one consistent snapshot of its schema.
        run_steps(ctx, [SnapshotData(), BackupSchema(), WriteBackup(target)])
    else:
        run_steps(ctx, [StopApp(), SnapshotData(), RestartApp(), WriteBackup(target)])
    ctx.console.say(
        f"Backup written to {target} in {time.monotonic() - started:.1f}s (readable only by you)."
    )
    ctx.console.say("It holds TestGen's keys and credentials: keep it as safe as the machine itself.")


def restore_action(ctx: ActionContext, source: Path) -> None:
    state = load_state(ctx, required=True)
    assert state
    source = source.absolute()
    # Opened once: the checks and the unpacking read the same file, whatever happens at `source`.
    with open_backup(source) as handle:
        manifest = read_backup(handle, source, state.product_version, ctx.paths.testgen)
        made, version = manifest.get("created"), manifest.get("testgen_version")
        ctx.console.say(f"Restoring TestGen data from {made} (TestGen {version})\n")
        steps = [UnpackBackup(source, handle), StopApp(), SwapHome(), LoadSchemaDump(), UpgradeDatabase()]
        run_steps(ctx, [*steps, RestartApp(), VerifyLogin()])
    server = server_of(ctx)
    # The restored config.env says where the data is now (a backup of the other kind changes it).
    state.database = server[0].url() if server else ""
    state.save(ctx.paths.state)
    ctx.console.say(f"TestGen's data is restored from {source}.")
