"""Changing an install: `configure` (ports, listen address, HTTPS: checked first, applied with one
restart, rolled back on failure), and what `install` says when its options differ from the
receipt."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.actions.boundary import load_state
from dk_installer.certificates import HOW_TO_GET_HTTPS, SHARING_NEEDS_HTTPS
from dk_installer.checks import Requirement, check_ports
from dk_installer.errors import ErrorCode
from dk_installer.net import is_loopback
from dk_installer.steps.base import require, run_steps
from dk_installer.steps.configure import ApplySettings, Setup
from dk_installer.steps.install import RestartApp, StopApp, VerifyLogin

if TYPE_CHECKING:
    from dk_installer.config import InstallState
    from dk_installer.steps.base import ActionContext


@dataclasses.dataclass(frozen=True)
class Wanted:
    """What the command line asks to change; None keeps what the receipt says."""

    ui_port: int | None = None
    api_port: int | None = None
    listen: str | None = None
    ssl_cert: Path | None = None
    ssl_key: Path | None = None
    no_ssl: bool = False

    def target(self, state: InstallState) -> Setup:
        return Setup(
            ui_port=state.ui_port if self.ui_port is None else self.ui_port,
            api_port=state.api_port if self.api_port is None else self.api_port,
            listen=state.listen if self.listen is None else self.listen,
            tls=False if self.no_ssl else (self.ssl_cert is not None or state.tls),
        )


def usage_problem(state: InstallState, wanted: Wanted) -> str | None:
    """Why the configuration asked for cannot be, as a usage error, or None. A receipt that already
    shares over plain HTTP may keep doing so (a team is never cut off), but nothing new may."""
    target = wanted.target(state)
    if target.ui_port == target.api_port:
        return f"the UI and the API need different ports (both would be {target.ui_port})"
    now = Setup.of(state)
    if (
        not is_loopback(target.listen)
        and not target.tls
        and (target.listen, target.tls) != (now.listen, now.tls)
    ):
        return sharing_refusal(target.listen)
    return None


def sharing_refusal(listen: str) -> str:
    return (
        f"sharing TestGen on the network (--listen {listen}) needs HTTPS: {SHARING_NEEDS_HTTPS}. "
        f"To share it, {HOW_TO_GET_HTTPS}; or keep it on this machine with --listen 127.0.0.1"
    )


def same_certificate(installed: Path, given: Path) -> bool:
    try:
        return installed.read_bytes() == given.read_bytes()
    except OSError:
        return False


def receipt_differences(
    state: InstallState, installed_cert: Path, options_set: set[str], wanted: Wanted
) -> list[tuple[str, str]]:
    """What `install` was asked for that the install does not have, only among the options the
    user set: (what differs, the configure option that changes it)."""
    found: list[tuple[str, str]] = []
    if "port" in options_set and wanted.ui_port != state.ui_port:
        found.append((f"UI port {state.ui_port}, not {wanted.ui_port}", f"--port {wanted.ui_port}"))
    if "api_port" in options_set and wanted.api_port != state.api_port:
        found.append((f"API port {state.api_port}, not {wanted.api_port}", f"--api-port {wanted.api_port}"))
    if "listen" in options_set and wanted.listen != state.listen:
        found.append((f"listens on {state.listen}, not {wanted.listen}", f"--listen {wanted.listen}"))
    if wanted.ssl_cert is not None and wanted.ssl_key is not None:
        if not state.tls:
            found.append(
                ("serves plain HTTP", f"--ssl-cert-file {wanted.ssl_cert} --ssl-key-file {wanted.ssl_key}")
            )
        elif not same_certificate(installed_cert, wanted.ssl_cert):
            found.append(
                (
                    "has another HTTPS certificate",
                    f"--ssl-cert-file {wanted.ssl_cert} --ssl-key-file {wanted.ssl_key}",
                )
            )
    return found


def configure_action(ctx: ActionContext, wanted: Wanted) -> None:
    state = load_state(ctx, required=True)
    assert state
    target = wanted.target(state)
    if target == Setup.of(state) and wanted.ssl_cert is None:
        ctx.console.say(f"Nothing to change: TestGen is already set up that way ({ctx.testgen.ui_url}).")
        return
    testgen = ctx.testgen
    running = testgen.running()
    # Every check before anything stops: a port this TestGen holds now is free once it stops.
    ours = {state.ui_port, state.api_port} if running else set()
    checks: list[Requirement] = []
    for port, check in zip((target.ui_port, target.api_port), check_ports(target.ui_port, target.api_port)):
        if port in ours:
            check = Requirement(ErrorCode.PORT_IN_USE, check.title, True, "used by this TestGen")
        checks.append(check)
    require(ctx, checks)
    ctx.console.say("Changing how TestGen is reached\n")
    run_steps(
        ctx,
        [
            StopApp(),
            ApplySettings(state, target, wanted.ssl_cert, wanted.ssl_key),
            RestartApp(),
            VerifyLogin(),
        ],
    )
    testgen = ctx.testgen
    ctx.console.say("")
    ctx.console.say(f"  UI:           {testgen.ui_url}")
    ctx.console.say(f"  API docs:     {testgen.api_docs_url}")
    ctx.console.say(f"  MCP server:   {testgen.mcp_url}")
    where = (
        f"listening on {testgen.listen}: reachable from other machines"
        if testgen.shared
        else "this machine only"
    )
    ctx.console.say(f"  Reachable:    {where}")
    for warning in testgen.sharing_warnings(ctx.self_command()):
        ctx.console.warn(f"  Warning: {warning}")
    if ctx.was_running:
        ctx.console.say("TestGen runs with the new settings.")
    else:
        ctx.console.say(
            f"TestGen was not running; the new settings apply when it starts (`{ctx.self_command()} start`)."
        )
