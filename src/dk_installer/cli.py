"""The click command line. Each command turns its options into the action's inputs and calls
perform(); the modules behind a command are imported only when it runs, so `--help` stays fast."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dk_installer import __version__
from dk_installer.bootstrap import EXIT_INTERRUPTED, EXIT_OK, installer_home, restrict_umask
from dk_installer.cli_options import (
    CONTEXT_SETTINGS,
    PORT,
    absolute_path,
    check_certificate_pair,
    check_listen_address,
    chosen_index_url,
    common_flags,
    database_choices,
    database_options,
    invocation_of,
    perform_database_change,
    refuse_changes_to_an_install,
    version_option_value,
)
from dk_installer.defaults import ACTIONS, DEFAULT_API_PORT, DEFAULT_UI_PORT, LOOPBACK
from dk_installer.errors import raise_keyboard_interrupt

if TYPE_CHECKING:
    from dk_installer.config import Settings


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dk-installer", message="%(prog)s %(version)s")
@common_flags
def cli(no_analytics: bool, verbose: bool) -> None:
    """Install, run and manage DataKitchen's DataOps TestGen.

    Exit codes: 0 success, 1 the action failed, 2 usage error, 3 requirements not met, 130 interrupted.
    """


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--port", type=PORT, default=DEFAULT_UI_PORT, show_default=True, help="Port of TestGen's UI.")
@click.option(
    "--api-port", type=PORT, default=DEFAULT_API_PORT, show_default=True, help="Port of TestGen's API."
)
@click.option(
    "--version",
    "version",
    callback=version_option_value,
    metavar="VERSION",
    help="TestGen version (5.92.2) or specifier (>=5.90,<6). Default: newest 5.x.",
)
@click.option("--index-url", metavar="URL", help="Package index to install from (a mirror).")
@click.option(
    "--index-url-file",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Read the package index URL from the first line of this file (keeps a token off the command line).",
)
@click.option("--find-links", metavar="DIR|URL", help="Wheels to install from (air-gapped installs).")
@click.option("--python", "python", metavar="PATH", help="Python 3.11+ interpreter for TestGen.")
@click.option("--no-demo", is_flag=True, help="Do not load the demo data.")
@click.option("--no-start", is_flag=True, help="Install and configure, but do not start TestGen.")
@click.option("--no-browser", is_flag=True, help="Do not open the browser at the end.")
@click.option(
    "--listen",
    metavar="ADDRESS",
    default=LOOPBACK,
    show_default=True,
    help="Address TestGen listens on: 0.0.0.0 (or one address of this machine) shares it on your network.",
)
@click.option(
    "--ssl-cert-file", type=click.Path(path_type=Path), help="HTTPS certificate (PEM; with the key)."
)
@click.option("--ssl-key-file", type=click.Path(path_type=Path), help="HTTPS private key (PEM, unencrypted).")
@click.option(
    "--bundle",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Install from this bundle (made by `bundle`), with no network at all.",
)
@click.option(
    "--database",
    metavar="URL",
    help="Keep TestGen's data on your PostgreSQL server: postgresql://USER@HOST:PORT/DBNAME (no password).",
)
@database_options
@click.option(
    "--database-keys-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reuse the TestGen schema on the server: the config.env (keys) of the install that made it.",
)
@click.option("--yes", "-y", is_flag=True, help="Answer yes to every question.")
@common_flags
@click.pass_context
def install(
    ctx: click.Context,
    port: int,
    api_port: int,
    version: str | None,
    index_url: str | None,
    index_url_file: Path | None,
    find_links: str | None,
    python: str | None,
    no_demo: bool,
    no_start: bool,
    no_browser: bool,
    listen: str,
    ssl_cert_file: Path | None,
    ssl_key_file: Path | None,
    bundle: Path | None,
    database: str | None,
    database_keys_file: Path | None,
    yes: bool,
    **params: Any,
) -> int:
    """Check requirements, install TestGen, configure it, load demo data, start it and log in."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.configure import sharing_refusal
    from dk_installer.actions.install import install_action
    from dk_installer.config import InstallOptions
    from dk_installer.net import is_loopback

    if port == api_port:
        raise click.BadParameter("the UI and the API need different ports", param_hint="--api-port")
    check_listen_address(listen)
    check_certificate_pair(ssl_cert_file, ssl_key_file)
    if not is_loopback(listen) and ssl_cert_file is None:
        raise click.UsageError(sharing_refusal(listen))
    options = InstallOptions(
        ui_port=port,
        api_port=api_port,
        version=version,
        index_url=chosen_index_url(index_url, index_url_file),
        find_links=absolute_path(find_links),
        python=absolute_path(python) if python and os.sep in python else python,  # else a name on PATH
        demo=not no_demo,
        start=not no_start,
        browser=not no_browser,
        assume_yes=yes,
        listen=listen,
        ssl_cert=ssl_cert_file,
        ssl_key=ssl_key_file,
        bundle=bundle,
        database=database,
        database_keys_file=absolute_path(str(database_keys_file)) if database_keys_file else None,
        **database_choices(params),
    )
    if bundle and (index_url or find_links or version):
        raise click.UsageError(
            "--bundle installs what the bundle holds: no --index-url, --find-links or --version."
        )
    refuse_changes_to_an_install(ctx, options)
    return perform(invocation_of(ctx, "install"), install_action, options=options)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--port", type=PORT, help="New port of TestGen's UI.")
@click.option("--api-port", type=PORT, help="New port of TestGen's API.")
@click.option(
    "--listen",
    metavar="ADDRESS",
    help="New listen address: 127.0.0.1 (this machine only), 0.0.0.0 or one address of this machine "
    "(shared: needs HTTPS).",
)
@click.option(
    "--ssl-cert-file",
    type=click.Path(path_type=Path),
    help="HTTPS certificate (PEM; with the key): turns HTTPS on, or swaps a renewed certificate in.",
)
@click.option("--ssl-key-file", type=click.Path(path_type=Path), help="HTTPS private key (PEM, unencrypted).")
@click.option("--no-ssl", is_flag=True, help="Serve plain HTTP again (only on this machine).")
@click.option(
    "--database",
    metavar="URL",
    help="Reach TestGen's data on its PostgreSQL server another way (host, user, TLS).",
)
@database_options
@common_flags
@click.pass_context
def configure(
    ctx: click.Context,
    port: int | None,
    api_port: int | None,
    listen: str | None,
    ssl_cert_file: Path | None,
    ssl_key_file: Path | None,
    no_ssl: bool,
    database: str | None,
    **params: Any,
) -> int:
    """Change the ports, listen address or HTTPS of the installed TestGen: checked first, one restart,
    rolled back on failure."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.configure import Wanted, configure_action, usage_problem
    from dk_installer.config import InstallState
    from dk_installer.errors import StateCorrupt
    from dk_installer.paths import Paths

    others = not (
        port is None and api_port is None and listen is None and ssl_cert_file is None and not no_ssl
    )
    if database is not None:
        if others:
            raise click.UsageError("change the database connection on its own, without other options")
        return perform_database_change(ctx, "configure", database, params)
    if not others:
        raise click.UsageError(
            "say what to change: --port, --api-port, --listen, --ssl-cert-file/--ssl-key-file, --no-ssl "
            "or --database"
        )
    if no_ssl and ssl_cert_file is not None:
        raise click.UsageError("--no-ssl and --ssl-cert-file contradict each other; pass one of them")
    if listen is not None:
        check_listen_address(listen)
    check_certificate_pair(ssl_cert_file, ssl_key_file)
    wanted = Wanted(port, api_port, listen, ssl_cert_file, ssl_key_file, no_ssl)
    with contextlib.suppress(StateCorrupt):  # configure itself says the receipt is damaged
        state = InstallState.load(Paths.from_environment().state)
        problem = usage_problem(state, wanted) if state else None
        if problem:
            raise click.UsageError(problem)
    return perform(invocation_of(ctx, "configure"), lambda action_ctx: configure_action(action_ctx, wanted))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--version",
    "version",
    callback=version_option_value,
    metavar="VERSION",
    help="Target version or specifier. Default: newest of the installed major version.",
)
@click.option("--index-url", metavar="URL", help="Package index to install from (a mirror).")
@click.option(
    "--index-url-file",
    type=click.Path(path_type=Path),
    metavar="PATH",
    help="Read the package index URL from the first line of this file (keeps a token off the command line).",
)
@click.option("--find-links", metavar="DIR|URL", help="Wheels to install from (air-gapped installs).")
@click.option(
    "--from-backup",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Go back to the older TestGen that made this backup, with its data.",
)
@common_flags
@click.pass_context
def upgrade(
    ctx: click.Context,
    version: str | None,
    index_url: str | None,
    index_url_file: Path | None,
    find_links: str | None,
    from_backup: Path | None,
    **_: Any,
) -> int:
    """Upgrade TestGen and its database; restart it if it was running. Rolls back on failure.

    An older version needs the data of that version: --from-backup FILE."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.install import upgrade_action
    from dk_installer.config import InstallOptions

    options = InstallOptions(
        version=version,
        index_url=chosen_index_url(index_url, index_url_file),
        find_links=absolute_path(find_links),
    )
    return perform(
        invocation_of(ctx, "upgrade"),
        lambda action_ctx: upgrade_action(action_ctx, from_backup),
        options=options,
    )


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def start(ctx: click.Context, **_: Any) -> int:
    """Start TestGen in the background and wait until it answers."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.lifecycle import start_action

    return perform(invocation_of(ctx, "start"), start_action)


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def stop(ctx: click.Context, **_: Any) -> int:
    """Stop TestGen and its PostgreSQL."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.lifecycle import stop_action

    return perform(invocation_of(ctx, "stop"), stop_action)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@common_flags
@click.pass_context
def status(ctx: click.Context, as_json: bool, **_: Any) -> int:
    """Is TestGen installed and running? Version, URLs and health."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.report import status_action

    return perform(
        invocation_of(ctx, "status"), lambda action_ctx: status_action(action_ctx, as_json), quiet=as_json
    )


@cli.command("migrate-database", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--to", "url", required=True, metavar="URL", help="postgresql://USER@HOST:PORT/DBNAME (no password)."
)
@database_options
@common_flags
@click.pass_context
def migrate_database(ctx: click.Context, url: str, **params: Any) -> int:
    """Move TestGen's data from its embedded PostgreSQL to your PostgreSQL server."""
    return perform_database_change(ctx, "migrate_database", url, params)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option("--keep-data", is_flag=True, help="Keep TestGen's data and credentials for a later install.")
@click.option(
    "--drop-schema",
    is_flag=True,
    help="Also drop TestGen's schema on your PostgreSQL server (nothing else there).",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common_flags
@click.pass_context
def uninstall(ctx: click.Context, keep_data: bool, drop_schema: bool, yes: bool, **_: Any) -> int:
    """Stop TestGen and remove everything the installer created."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.install import uninstall_action

    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("uninstall asks for confirmation; pass --yes to run it without a terminal")
        what = "TestGen (keeping its data)" if keep_data else "TestGen and ALL its data"
        if drop_schema:
            what += ", and its schema on the PostgreSQL server"
        if not click.confirm(f"Remove {what} from {installer_home()}?", default=False):
            click.echo("Nothing was removed.")
            return EXIT_OK
    return perform(
        invocation_of(ctx, "uninstall"),
        lambda action_ctx: uninstall_action(action_ctx, keep_data, drop_schema),
    )


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def doctor(ctx: click.Context, **_: Any) -> int:
    """Check every requirement and print a table; exit 3 if any fails."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.report import doctor_action

    return perform(invocation_of(ctx, "doctor"), doctor_action)


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the zip. Default: a new file in the installer's logs folder.",
)
@common_flags
@click.pass_context
def logs(ctx: click.Context, output: Path | None, **_: Any) -> int:
    """Write a support zip (logs, state, doctor output) with secrets redacted."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.report import logs_action

    return perform(invocation_of(ctx, "logs"), lambda action_ctx: logs_action(action_ctx, output))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the backup. Default: a new file in the installer's backups folder.",
)
@common_flags
@click.pass_context
def backup(ctx: click.Context, output: Path | None, **_: Any) -> int:
    """Back up TestGen's data, keys and credentials (TestGen stops only for the copy)."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.data import backup_action

    return perform(invocation_of(ctx, "backup"), lambda action_ctx: backup_action(action_ctx, output))


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@common_flags
@click.pass_context
def restore(ctx: click.Context, file: Path, yes: bool, **_: Any) -> int:
    """Replace TestGen's data with a backup; the current data stays until the restored data runs."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.data import restore_action

    if not yes:
        if not sys.stdin.isatty():
            raise click.UsageError("restore asks for confirmation; pass --yes to run it without a terminal")
        if not click.confirm(f"Replace TestGen's current data with {file}?", default=False):
            click.echo("Nothing was changed.")
            return EXIT_OK
    return perform(invocation_of(ctx, "restore"), lambda action_ctx: restore_action(action_ctx, file))


@cli.command(context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def run(ctx: click.Context, **_: Any) -> int:
    """Run TestGen in the foreground until SIGTERM or Ctrl+C (what a service runs). Records no event."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.lifecycle import run_action

    return perform(invocation_of(ctx, "run"), run_action, records_event=False)


@cli.command("self-update", context_settings=CONTEXT_SETTINGS)
@click.option("--check", is_flag=True, help="Only say whether a newer installer is published.")
@common_flags
@click.pass_context
def self_update(ctx: click.Context, check: bool, **_: Any) -> int:
    """Replace this installer with the newest published one (checksum verified; kept on failure)."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.selfupdate import self_update_action

    return perform(
        invocation_of(ctx, "self_update"), lambda action_ctx: self_update_action(action_ctx, check)
    )


@cli.command(context_settings=CONTEXT_SETTINGS)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The archive to write.",
)
@click.option("--index-url", metavar="URL", help="Package index for TestGen's wheels (a mirror).")
@click.option("--find-links", metavar="DIR|URL", help="Wheels for TestGen's packages (no index then).")
@common_flags
@click.pass_context
def bundle(ctx: click.Context, output: Path, index_url: str | None, find_links: str | None, **_: Any) -> int:
    """Write one archive that installs this TestGen offline: `install --bundle FILE` on the target."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.bundle import bundle_action
    from dk_installer.config import InstallOptions

    options = InstallOptions(index_url=index_url, find_links=find_links)
    return perform(
        invocation_of(ctx, "bundle"), lambda action_ctx: bundle_action(action_ctx, output, options)
    )


@cli.group(context_settings=CONTEXT_SETTINGS)
def service() -> None:
    """Start TestGen at boot with the user's service manager (systemd, launchd)."""


@service.command("enable", context_settings=CONTEXT_SETTINGS)
@click.option("--print", "print_only", is_flag=True, help="Show the unit (or launchd agent); write nothing.")
@common_flags
@click.pass_context
def service_enable(ctx: click.Context, print_only: bool, **_: Any) -> int:
    """Install and start the service; TestGen then starts at boot and after a crash."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.lifecycle import service_enable_action

    return perform(
        invocation_of(ctx, "service_enable"),
        lambda action_ctx: service_enable_action(action_ctx, print_only),
        writes_nothing=print_only,
    )


@service.command("disable", context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def service_disable(ctx: click.Context, **_: Any) -> int:
    """Stop the service and remove it."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.lifecycle import service_disable_action

    return perform(invocation_of(ctx, "service_disable"), service_disable_action)


@service.command("status", context_settings=CONTEXT_SETTINGS)
@common_flags
@click.pass_context
def service_status(ctx: click.Context, **_: Any) -> int:
    """Is TestGen a service, and is it running?"""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.lifecycle import service_status_action

    return perform(invocation_of(ctx, "service_status"), service_status_action)


@cli.group(context_settings=CONTEXT_SETTINGS)
def analytics() -> None:
    """See and control the anonymous usage analytics (these commands send nothing)."""


@analytics.command("status")
@common_flags
@click.pass_obj
def analytics_status(settings: Settings, no_analytics: bool, **_: Any) -> None:
    """On or off, which rule decided, the anonymous id, unsent events, last send."""
    from dk_installer.analytics import PRIVACY_URL, SenderState, analytics_consent
    from dk_installer.config import SavedChoices
    from dk_installer.paths import Paths
    from dk_installer.testgen.config import TestGenConfig

    paths = Paths.from_environment()
    parent = click.get_current_context().find_root()
    enabled, rule = analytics_consent(
        paths, settings, no_analytics or bool(parent.params.get("no_analytics"))
    )
    saved = SavedChoices(paths.saved_choices)
    spool = paths.spool
    pending = len(spool.read_text().splitlines()) if spool.exists() else 0
    sender = SenderState(paths).values
    click.echo(f"Analytics:      {'on' if enabled else 'off'} (decided by: {rule})")
    click.echo(f"Anonymous id:   {saved.get('anonymous_id') or '(none yet)'}")
    click.echo(f"Unsent events:  {pending} ({spool.stat().st_size if spool.exists() else 0} bytes)")
    click.echo(
        f"Last send:      {sender.get('last_result', 'never')} {sender.get('last_attempt', '')}".rstrip()
    )
    if float(sender.get("paused_until", 0)) > time.time():
        click.echo("Sending paused for 24 h after repeated failures.")
    if paths.config_env.exists():
        saved_for_testgen = TestGenConfig(paths.config_env).read().get("TG_ANALYTICS")
        testgen_on = enabled and saved_for_testgen != "no"
        testgen_line = f"{'on' if testgen_on else 'off'} (config.env: TG_ANALYTICS={saved_for_testgen})"
    else:
        testgen_line = "TestGen is not installed"
    click.echo(f"TestGen's own:  {testgen_line}")
    click.echo(f"Details:        {PRIVACY_URL}")


@analytics.command("enable")
@click.pass_obj
def analytics_enable(settings: Settings) -> None:
    """Turn analytics on (environment opt-outs still win)."""
    from dk_installer.analytics import analytics_consent
    from dk_installer.config import SavedChoices
    from dk_installer.paths import Paths
    from dk_installer.testgen.config import TestGenConfig

    paths = Paths.from_environment()
    SavedChoices(paths.saved_choices).update(analytics="enabled")
    TestGenConfig(paths.config_env).set_analytics(True)
    enabled, rule = analytics_consent(paths, settings, False)
    click.echo("Analytics enabled." if enabled else f"Saved, but analytics stays off because of {rule}.")


@analytics.command("disable")
def analytics_disable() -> None:
    """Turn analytics off; delete the anonymous id and unsent events. Sends nothing."""
    from dk_installer.config import SavedChoices
    from dk_installer.paths import Paths
    from dk_installer.testgen.config import TestGenConfig

    paths = Paths.from_environment()
    SavedChoices(paths.saved_choices).update(
        analytics="disabled", anonymous_id=None, first_event_recorded=None
    )
    for path in (paths.spool, paths.history, paths.sender_state):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    TestGenConfig(paths.config_env).set_analytics(False)
    click.echo(
        "Analytics disabled. The anonymous id and unsent events are deleted; TestGen's own analytics "
        "are off too."
    )


@analytics.command("preview")
@click.argument("action", type=click.Choice(ACTIONS), default="install")
@click.pass_obj
def analytics_preview(settings: Settings, action: str) -> None:
    """Print the exact JSON the next event would carry. Sends nothing, writes nothing."""
    import uuid

    from dk_installer.analytics import ActionResult, build_event
    from dk_installer.config import SavedChoices
    from dk_installer.paths import Paths

    saved = SavedChoices(Paths.from_environment().saved_choices)
    distinct_id = saved.get("anonymous_id")
    if not distinct_id:
        distinct_id = str(uuid.uuid4())
        click.echo("(no anonymous id yet: the first event creates a random one like this)", err=True)
    result = ActionResult(action, [])
    event = build_event(result, distinct_id, not saved.get("first_event_recorded"), settings)
    click.echo(json.dumps([event], indent=2))


@analytics.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print the raw payloads instead of a table.")
def analytics_show(as_json: bool) -> None:
    """The last 20 events attempted and those waiting, with their delivery result."""
    from dk_installer.analytics import HISTORY_KEPT, Spool, read_history
    from dk_installer.paths import Paths

    paths = Paths.from_environment()
    history = read_history(paths)[-HISTORY_KEPT:]
    spool = Spool(paths)
    waiting = spool.pending() if spool.path.exists() else []
    rows = [(entry.get("result"), entry.get("event") or {}) for entry in history]
    rows += [("waiting", event) for event in waiting]
    if as_json:
        click.echo(json.dumps([{"delivery": result, "event": event} for result, event in rows], indent=2))
        return
    if not rows:
        click.echo("No event has been sent from this machine.")
        return
    click.echo(f"{'time (UTC)':<20} {'event':<10} {'outcome':<12} {'error code':<24} delivery")
    for result, event in rows:
        props = event.get("properties", {})
        stamp = props.get("time")
        when = (
            datetime.datetime.fromtimestamp(stamp / 1000, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            if isinstance(stamp, int)
            else "?"
        )
        click.echo(
            f"{when:<20} {event.get('event', '?'):<10} {props.get('outcome') or '-':<12} "
            f"{props.get('error_code') or '-':<24} {result}"
        )


@analytics.command("send-spool", hidden=True)
@click.pass_obj
def analytics_send_spool(settings: Settings) -> None:
    """The detached sender (started by record_event)."""
    from dk_installer.analytics import send_spool
    from dk_installer.paths import Paths

    send_spool(Paths.from_environment(), settings)


def main(argv: list[str] | None = None) -> None:
    from dk_installer.config import Settings

    # Again here: `pip install`ed, the launcher and the service come in without the bootstrap.
    restrict_umask()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_keyboard_interrupt)
    settings = Settings.from_environment()
    prog = "dk-installer" if settings.launched_by == "package" else "dk_installer.py"
    try:
        code = cli.main(args=argv, prog_name=prog, standalone_mode=False, obj=settings)
    except click.exceptions.Abort:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        code = EXIT_INTERRUPTED
    sys.exit(code if isinstance(code, int) else EXIT_OK)
