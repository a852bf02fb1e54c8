"""The install's life: install (and its idempotent re-run, with the summary at the end), upgrade
and uninstall."""

from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import click

from dk_installer.actions.boundary import load_state
from dk_installer.actions.bundle import use_bundle
from dk_installer.actions.lifecycle import start_action
from dk_installer.bootstrap import BUNDLE_DIR, EXIT_USAGE, venv_bin
from dk_installer.checks import find_testgen_python
from dk_installer.config import InstallState, now_iso, remove_tree
from dk_installer.database import DatabaseTarget
from dk_installer.defaults import DEFAULT_API_PORT, DEFAULT_UI_PORT
from dk_installer.engine import _probe_python, find_uv
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.steps.backup import BackupData, SwapHome, UnpackBackup, open_backup, read_backup
from dk_installer.steps.base import Step, UpToDate, require, run_steps
from dk_installer.steps.database import (
    CheckDatabase,
    ConfigureOnServer,
    DropSchema,
    DumpSchema,
    choose_database,
    server_of,
)
from dk_installer.steps.install import (
    CheckNewVersion,
    ChoosePackageEngine,
    Configure,
    DownloadPython,
    InstallCertificate,
    InstallLauncher,
    InstallPackage,
    LoadDemoData,
    Preflight,
    RestartApp,
    SaveState,
    StartApp,
    StopApp,
    SwapVenv,
    UpgradeDatabase,
    VerifyLogin,
    downgrade_refused,
)
from dk_installer.steps.remove import RemoveFiles, remove_installer_files
from dk_installer.testgen.config import TestGenConfig, installed_version, read_credentials
from dk_installer.testgen.venvs import active_venv
from dk_installer.versions import DEFAULT_VERSION_SPEC, is_newer, spec_allows

if TYPE_CHECKING:
    from dk_installer.config import Settings
    from dk_installer.steps.base import ActionContext


def repair_state(ctx: ActionContext) -> InstallState | None:
    """Rebuild a damaged state.json from what is installed, when enough of it is there."""
    venv = active_venv(ctx.paths)
    version = installed_version(ctx.paths.venv) if venv else None
    config = TestGenConfig(ctx.paths.config_env).read()
    if not (venv and version and config):
        return None
    python = os.path.realpath(venv_bin(ctx.paths.venv, "python"))
    found = _probe_python(python)
    stamp = now_iso()
    state = InstallState(
        product_version=version,
        version_spec=DEFAULT_VERSION_SPEC,
        ui_port=int(config.get("TG_UI_PORT", DEFAULT_UI_PORT)),
        api_port=int(config.get("TG_API_PORT", DEFAULT_API_PORT)),
        package_engine="uv" if find_uv() else "pip",
        python=python,
        python_version=".".join(map(str, found[1])) if found else "",
        venv=venv.name,
        installed_at=stamp,
        updated_at=stamp,
        demo_data=False,
        tls=bool(config.get("SSL_CERT_FILE")),
    )
    state.save(ctx.paths.state)
    return state


def install_action(ctx: ActionContext) -> None:
    if ctx.options.bundle is None:
        install_or_repair(ctx)
        return
    try:
        ctx.options = use_bundle(ctx)
        install_or_repair(ctx)
    finally:
        remove_tree(ctx.paths.home / BUNDLE_DIR)  # unpacked for this install only


def install_or_repair(ctx: ActionContext) -> None:
    try:
        state = load_state(ctx, required=False)
    except InstallerError:
        state = repair_state(ctx)
        if state is None:
            raise InstallerError(
                f"The install receipt {ctx.paths.state} is damaged and the install cannot be recovered "
                f"from it. Remove it with `{ctx.self_command()} uninstall --yes` (add --keep-data to keep "
                "TestGen's data), then install again.",
                code=ErrorCode.STATE_CORRUPT,
            ) from None
        ctx.console.warn(
            f"The install receipt was damaged; rebuilt it from the installed TestGen {state.venv}."
        )
        load_state(ctx, required=True)
    if state:
        finish_existing_install(ctx, state)
        return
    if ctx.options.database and not kept_data_is_on(ctx, ctx.options.database):
        choose_database(ctx, ctx.options.database)
    ctx.console.say(f"Installing DataOps TestGen into {ctx.paths.home}\n")
    on_server = ctx.database is not None
    run_steps(
        ctx,
        [
            Preflight(),
            *([CheckDatabase()] if on_server else []),
            ChoosePackageEngine(),
            DownloadPython(),
            InstallPackage(),
            *([ConfigureOnServer()] if on_server else [BackupData(), Configure()]),
            InstallCertificate(),
            LoadDemoData(),
            StartApp(),
            VerifyLogin(),
            SaveState(),
            InstallLauncher(),
        ],
    )
    print_summary(ctx)


def kept_data_is_on(ctx: ActionContext, url: str) -> bool:
    """install --database over data kept by `uninstall --keep-data`: fine when the kept settings
    name that same server (the kept data is used, as any install uses it), refused otherwise."""
    if not ctx.paths.config_env.exists():
        return False
    kept = DatabaseTarget.from_testgen_settings(TestGenConfig(ctx.paths.config_env).read())
    if kept is not None and kept.url() == DatabaseTarget.parse(url).url():
        return True
    raise InstallerError(
        f"TestGen's data from an earlier install is kept in {ctx.paths.testgen_home}, and "
        "install --database "
        f"would not use it. Install without --database (the kept data comes back), then move it with "
        f"`{ctx.self_command()} migrate-database --to URL`.",
        code=ErrorCode.VERSION_CONFLICT,
        exit_code=EXIT_USAGE,
    )


def finish_existing_install(ctx: ActionContext, state: InstallState) -> None:
    """The idempotent re-run: nothing to install, say what is there."""
    spec = ctx.options.version or DEFAULT_VERSION_SPEC
    if not spec_allows(spec, state.product_version):
        raise InstallerError(
            f"TestGen {state.product_version} is installed, which does not match {spec}. "
            f"Change versions with `{ctx.self_command()} upgrade --version VERSION`.",
            code=ErrorCode.VERSION_CONFLICT,
        )
    if ctx.testgen.serving():
        ctx.console.say(f"TestGen {state.product_version} is already installed and running.")
        print_summary(ctx, show_password=False)
        return
    ctx.console.say(f"TestGen {state.product_version} is already installed, but it is not running.")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    if (
        ctx.options.start
        and interactive
        and not ctx.options.assume_yes
        and click.confirm("Start it now?", default=True)
    ):
        start_action(ctx)
        return
    ctx.console.say(f"Start it with: {ctx.self_command()} start")


def print_summary(ctx: ActionContext, show_password: bool = True) -> None:
    options = ctx.options
    console = ctx.console
    testgen = ctx.testgen
    cmd = ctx.self_command()
    credentials = read_credentials(ctx.paths)
    console.say("")
    console.say(
        console.style(
            "DataOps TestGen is ready." if options.start else "DataOps TestGen is installed.",
            fg="green",
            bold=True,
        )
    )
    console.say(f"  UI:           {testgen.ui_url}")
    console.say(f"  API docs:     {testgen.api_docs_url}")
    console.say(f"  MCP server:   {testgen.mcp_url}   (for AI assistants)")
    if credentials:
        console.say(f"  Username:     {credentials[0]}")
        if show_password and sys.stdout.isatty():
            console.say(f"  Password:     {credentials[1]}   (shown once; also in the file below)")
        else:
            console.say("  Password:     in the credentials file")
    console.say(f"  Credentials:  {ctx.paths.credentials} (readable only by you)")
    console.say(f"  Logs:         {ctx.paths.app_log}")
    server = server_of(ctx)
    if server:
        console.say(f"  Data:         schema {server[0].schema} in {server[0].url()}")
    if testgen.shared:
        console.say(f"  Shared:       listening on {testgen.listen}: reachable from other machines")
        for warning in testgen.sharing_warnings(cmd):
            console.warn(f"  Warning: {warning}")
    else:
        console.say(
            "  Reachable from this machine only. To share it on your network, run "
            f"`{cmd} configure --listen 0.0.0.0 --ssl-cert-file CERT --ssl-key-file KEY` (HTTPS: "
            "other machines' API clients and MCP assistants need it to log in)."
        )
    console.say("")
    console.say(f"  Stop:       {cmd} stop")
    console.say(f"  Start:      {cmd} start")
    console.say(f"  Status:     {cmd} status")
    console.say(f"  Uninstall:  {cmd} uninstall")
    if options.start and options.browser:
        open_browser(testgen.ui_url, ctx.settings)


def open_browser(url: str, settings: Settings) -> None:
    if sys.stdin.isatty() and sys.stdout.isatty() and settings.has_display:
        import webbrowser

        with contextlib.suppress(Exception):
            webbrowser.open(url)


def upgrade_action(ctx: ActionContext, from_backup: Path | None = None) -> None:
    """Upgrade; or, with `from_backup`, go back to the older TestGen that made that backup, with
    its data (the current data is kept aside until the older TestGen runs)."""
    if from_backup is None:
        upgrade_with(ctx, None, None)
        return
    source = from_backup.absolute()
    # Opened once, as restore does: the checks and the unpacking read the same file.
    with open_backup(source) as handle:
        upgrade_with(ctx, source, handle)


def upgrade_with(ctx: ActionContext, from_backup: Path | None, handle: BinaryIO | None) -> None:
    state = load_state(ctx, required=True)
    assert state
    backup_version: str | None = None
    if from_backup is not None:
        assert handle is not None
        manifest = read_backup(handle, from_backup, state.product_version, ctx.paths.testgen)
        backup_version = str(manifest.get("testgen_version"))
        ctx.options.version = ctx.options.version or f"=={backup_version}"
    if ctx.options.version is None:
        major = re.match(r"\d+", state.product_version)
        number = int(major.group()) if major else 5
        ctx.options.version = f">={number},<{number + 1}"
    exact = re.fullmatch(r"==([^*,]+)", ctx.options.version)
    if from_backup is None and exact and is_newer(state.product_version, exact.group(1)):
        raise downgrade_refused(state.product_version, exact.group(1))  # before anything is built
    python = find_testgen_python(state.python or None)
    if not python.ok:
        python = find_testgen_python(None)  # the recorded interpreter is gone: find another
    require(ctx, [python])
    ctx.python, ctx.python_version = python.interpreter, python.version
    if from_backup is None:
        ctx.console.say(f"Upgrading TestGen {state.product_version} to the newest {ctx.options.version}\n")
    else:
        ctx.console.say(
            f"Going back from TestGen {state.product_version} to {backup_version} with {from_backup}\n"
        )
    # The new venv is built while the installed TestGen keeps running; it stops only for the swap.
    build = InstallPackage(swap=False)
    if from_backup is None:
        data: list[Step] = [StopApp(), BackupData(), DumpSchema(), SwapVenv(build)]
    else:
        # The backup's data takes the current data's place (kept aside by SwapHome until it runs).
        data = [UnpackBackup(from_backup, handle), StopApp(), SwapVenv(build), SwapHome()]
    try:
        run_steps(
            ctx,
            [
                ChoosePackageEngine(),
                DownloadPython(),
                build,
                CheckNewVersion(backup_version),
                *data,
                UpgradeDatabase(),
                RestartApp(),
                VerifyLogin(),
                SaveState(previous=state),
            ],
        )
    except UpToDate as done:
        ctx.console.say(str(done))
        return
    verb = "upgraded" if from_backup is None else "taken back"
    ctx.console.say(f"TestGen is {verb} from {state.product_version} to {ctx.installed_version}.")


def uninstall_action(ctx: ActionContext, keep_data: bool, drop_schema: bool = False) -> None:
    paths = ctx.paths
    bookkeeping = {paths.lock.name, paths.logs.name}
    if not paths.home.exists() or all(p.name in bookkeeping for p in paths.home.iterdir()):
        remove_installer_files(paths, keep_data=False)
        ctx.console.say(f"Nothing to uninstall: TestGen is not installed in {paths.home}.")
        return
    with contextlib.suppress(InstallerError):
        load_state(ctx, required=False)
    server = server_of(ctx)
    if drop_schema and server is None:
        raise InstallerError(
            "--drop-schema is for TestGen's data on a PostgreSQL server; this install keeps it embedded.",
            code=ErrorCode.VERSION_CONFLICT,
            exit_code=EXIT_USAGE,
        )
    drop = [DropSchema(*server)] if drop_schema and server else []
    run_steps(ctx, [StopApp(restart_on_undo=False), RemoveFiles(keep_data), *drop])
    if server and not drop_schema:
        target = server[0]
        ctx.console.say(
            f"TestGen's data on the server is left as it is: schema {target.schema} in {target.url()} "
            f"(`{ctx.self_command()} uninstall --drop-schema` removes it; nothing else there is touched)."
        )
    if keep_data:
        ctx.console.say(
            f"TestGen is uninstalled. Its data and credentials are kept in {paths.testgen_home}; "
            "a later install uses them again."
        )
    else:
        ctx.console.say("TestGen is uninstalled and its files are removed.")
    ctx.console.say(
        f"Your settings (analytics choice) stay in {paths.config}; delete that folder to forget them."
    )
