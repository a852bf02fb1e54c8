"""What the command line shares and checks before an action runs: the click settings, the flags
every command takes, which option names the user set (for the event), and the checks of values
that make a usage error (exit 2) rather than a failed action."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:
    from dk_installer.actions.boundary import Invocation
    from dk_installer.config import InstallOptions


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


PORT = click.IntRange(1, 65535)


def common_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """--no-analytics and --verbose work after the command word too."""
    command = click.option("--verbose", "-v", is_flag=True, help="Print debug output.")(command)
    return click.option(
        "--no-analytics", is_flag=True, help="Send no analytics for this run (and turn TestGen's off)."
    )(command)


def invocation_of(ctx: click.Context, action: str) -> Invocation:
    from click.core import ParameterSource

    from dk_installer.actions.boundary import Invocation
    from dk_installer.config import Settings

    user_set = (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    def names_set(context: click.Context) -> set[str]:
        """The long flag names the user gave (--no-demo -> no_demo), never their values."""
        return {
            max(param.opts, key=len).lstrip("-").replace("-", "_")
            for param in context.command.params
            if param.name and context.get_parameter_source(param.name) in user_set
        }

    parent = ctx.parent
    names = names_set(ctx) | (names_set(parent) if parent is not None else set())
    no_analytics = bool(ctx.params.get("no_analytics") or (parent and parent.params.get("no_analytics")))
    verbose = bool(ctx.params.get("verbose") or (parent and parent.params.get("verbose")))
    return Invocation(action, sorted(names), no_analytics, verbose, ctx.find_object(Settings))


SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def database_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """How to reach and log in to the user's PostgreSQL server (install --database, migrate-database).
    Passwords come from a file, PGPASSWORD or a hidden prompt: never from the command line."""
    options = [
        click.option(
            "--database-sslmode",
            type=click.Choice(SSL_MODES),
            help="libpq sslmode for the server (default: prefer).",
        ),
        click.option(
            "--database-ca-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="CA (PEM) the server's certificate chains to.",
        ),
        click.option(
            "--database-admin-user",
            metavar="USER",
            help="A role that may create TestGen's schema, for setup.",
        ),
        click.option(
            "--database-password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the user's password from this file (0600), else PGPASSWORD, else a prompt.",
        ),
        click.option(
            "--database-admin-password-file",
            type=click.Path(dir_okay=False, path_type=Path),
            help="Read the admin user's password from this file (0600), else a prompt.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def database_choices(params: dict[str, Any]) -> dict[str, str | None]:
    """The server options as InstallOptions fields (paths made absolute: the installer runs elsewhere)."""
    return {
        "database_sslmode": params.get("database_sslmode"),
        "database_ca_file": absolute_path(str(params["database_ca_file"]))
        if params.get("database_ca_file")
        else None,
        "database_admin_user": params.get("database_admin_user"),
        "database_password_file": absolute_path(str(params["database_password_file"]))
        if params.get("database_password_file")
        else None,
        "database_admin_password_file": absolute_path(str(params["database_admin_password_file"]))
        if params.get("database_admin_password_file")
        else None,
    }


def perform_database_change(ctx: click.Context, action: str, url: str, params: dict[str, Any]) -> int:
    """migrate-database --to URL, configure --database URL: one action on the server at URL."""
    from dk_installer.actions.boundary import perform
    from dk_installer.actions.database import configure_database_action, migrate_database_action
    from dk_installer.config import InstallOptions

    body = migrate_database_action if action == "migrate_database" else configure_database_action
    return perform(
        invocation_of(ctx, action),
        lambda action_ctx: body(action_ctx, url),
        options=InstallOptions(database=url, **database_choices(params)),
    )


def version_option_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from dk_installer.versions import version_specifier

    if not value:
        return None
    try:
        return version_specifier(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def refuse_changes_to_an_install(ctx: click.Context, options: InstallOptions) -> None:
    """`install` on an existing install changes nothing: options the user set that differ from
    the receipt are a usage error pointing to `configure`, never a silent "already installed"."""
    from click.core import ParameterSource

    from dk_installer.actions.configure import Wanted, receipt_differences
    from dk_installer.config import InstallState, Settings
    from dk_installer.errors import StateCorrupt
    from dk_installer.launcher import self_command
    from dk_installer.paths import Paths
    from dk_installer.recovery import interrupted_action

    paths = Paths.from_environment()
    if interrupted_action(paths) is not None:
        return  # the receipt may be half-changed: install repairs first, then says what is there
    try:
        state = InstallState.load(paths.state)
    except StateCorrupt:
        return  # install rebuilds it
    if state is None:
        return
    if options.database is not None and options.database != state.database:
        settings = ctx.find_object(Settings)
        command = self_command(settings, paths) if settings else "dk_installer.py"
        raise click.UsageError(
            f"TestGen is already installed, with its data on {state.database or 'its embedded PostgreSQL'}. "
            + (
                f"Move that data to a server with: {command} migrate-database --to {options.database}"
                if not state.database
                else "Moving it between servers is not something install does: back it up and "
                "restore it on a new install."
            )
        )
    options_set = {
        name
        for name in ("port", "api_port", "listen")
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }
    wanted = Wanted(options.ui_port, options.api_port, options.listen, options.ssl_cert, options.ssl_key)
    differences = receipt_differences(state, paths.tls_cert, options_set, wanted)
    if differences:
        settings = ctx.find_object(Settings)
        command = self_command(settings, paths) if settings else "dk_installer.py"
        raise click.UsageError(
            "TestGen is already installed, and install changes nothing: it "
            + "; it ".join(what for what, _ in differences)
            + f". Change it with: {command} configure "
            + " ".join(option for _, option in differences)
        )


def check_listen_address(listen: str) -> None:
    import ipaddress

    from dk_installer.net import address_of_this_machine

    try:
        ipaddress.ip_address(listen)
    except ValueError:
        raise click.BadParameter(f"'{listen}' is not an IP address.", param_hint="--listen") from None
    if not address_of_this_machine(listen):
        raise click.BadParameter(
            f"this machine has no address {listen}; use 0.0.0.0 for all its addresses.", param_hint="--listen"
        )


def check_certificate_pair(cert: Path | None, key: Path | None) -> None:
    """Both or neither, readable, a matching pair and not expired: TestGen would otherwise fail at
    start-up, or serve what every client refuses."""
    from dk_installer.certificates import pair_problem

    if (cert is None) != (key is None):
        raise click.UsageError("HTTPS needs both --ssl-cert-file and --ssl-key-file.")
    if cert is None or key is None:
        return
    for path, option in ((cert, "--ssl-cert-file"), (key, "--ssl-key-file")):
        try:
            path.read_bytes()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {path} ({exc.strerror}).", param_hint=option) from None
    problem = pair_problem(cert, key)
    if problem:
        raise click.BadParameter(f"{problem}.", param_hint="--ssl-cert-file / --ssl-key-file")


def absolute_path(value: str | None) -> str | None:
    """A path the user gave relative to their folder, made absolute: uv, pip and the Python
    probes run elsewhere (never in the user's folder). URLs are kept."""
    if value is None or "://" in value:
        return value
    return os.path.abspath(value)


def chosen_index_url(index_url: str | None, index_url_file: Path | None) -> str | None:
    """--index-url, or the first line of --index-url-file: a URL typed on a command line can be
    read by every local user while the command runs (in /proc), a file can be kept private."""
    if index_url_file is None:
        return index_url
    if index_url is not None:
        raise click.UsageError("Pass --index-url or --index-url-file, not both.")
    from urllib.parse import urlsplit

    from dk_installer.bootstrap import index_url_from_file
    from dk_installer.console import echo

    try:
        url = index_url_from_file(str(index_url_file))
        readable_by_others = index_url_file.stat().st_mode & 0o044
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.BadParameter(
            f"cannot read {index_url_file} ({reason}).", param_hint="--index-url-file"
        ) from None
    try:
        credentials = bool(urlsplit(url).username)
    except ValueError:
        credentials = False  # not a URL: uv says so
    if credentials and readable_by_others:
        echo(
            f"Warning: {index_url_file} holds the index's credentials and other users can read it; "
            f"`chmod 600 {index_url_file}` keeps them yours.",
            err=True,
        )
    return url
