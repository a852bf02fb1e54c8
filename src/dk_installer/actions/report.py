"""What is there and what is wrong: status, doctor and the support bundle (`logs`)."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dk_installer import __version__
from dk_installer.checks import (
    Requirement,
    RequirementsNotMet,
    check_disk,
    check_home_writable,
    check_index,
    check_ports,
    find_testgen_python,
    report_requirements,
)
from dk_installer.config import InstallerLock, InstallOptions, InstallState
from dk_installer.console import Console, echo
from dk_installer.defaults import ALL_ADDRESSES
from dk_installer.errors import ErrorCode, InstallerError, StateCorrupt
from dk_installer.recovery import interrupted_action
from dk_installer.runner import SECRET_KEYS, file_tail, redact
from dk_installer.service import ServiceManager
from dk_installer.testgen.config import TestGenConfig, installed_version, read_credentials
from dk_installer.testgen.dumps import describe_server

if TYPE_CHECKING:
    from dk_installer.steps.base import ActionContext


def in_progress(action: str, pid: int | None) -> str:
    """What status and doctor say about the command that holds the lock (`install` is in progress
    (pid 42)): until it ends, what they see (no receipt yet, ports taken) is work in progress."""
    return f"`{action}` is in progress" + (f" (pid {pid})" if pid else "")


def collect_status(ctx: ActionContext) -> dict[str, Any]:
    paths = ctx.paths
    holder = InstallerLock.holder(paths.lock)
    status: dict[str, Any] = {
        "installed": False,
        "version": None,
        "running": False,
        "pid": None,
        "ui_url": None,
        "api_url": None,
        "health": None,
        "api_docs_url": None,
        "mcp_url": None,
        "listen": None,
        "https": None,
        "certificate_expires": None,
        "certificate_days_left": None,
        "database": None,
        "warnings": [],
        "service": ServiceManager(paths).installed(),
        "home": str(paths.home),
        "state": "missing",
        "interrupted_action": interrupted_action(paths),
        "in_progress": {"action": holder[0], "pid": holder[1]} if holder else None,
    }
    try:
        state = InstallState.load(paths.state)
    except StateCorrupt:
        status["state"] = "damaged"
        return status
    if state is None:
        return status
    ctx.use_receipt(state)
    testgen = ctx.testgen
    status.update(
        installed=True,
        version=state.product_version,
        state="ok",
        ui_url=testgen.ui_url,
        api_url=testgen.api_url,
        api_docs_url=testgen.api_docs_url,
        mcp_url=testgen.mcp_url,
        listen=testgen.listen,
        https=testgen.tls,
        warnings=testgen.sharing_warnings(ctx.self_command()),
    )
    certificate = testgen.certificate()
    if certificate is not None:
        status.update(
            certificate_expires=certificate.not_after.date().isoformat(),
            certificate_days_left=certificate.days_left(),
        )
    status["database"] = describe_server(testgen.config.read())
    app = testgen.app_process()
    if app is not None:
        status.update(running=True, pid=app.pid, health=testgen.health())
    return status


def status_action(ctx: ActionContext, as_json: bool) -> None:
    status = collect_status(ctx)
    command = status["in_progress"]  # another dk-installer command, running now
    if as_json:
        echo(json.dumps(status, indent=2))  # a reader that left (`| head -1`) is no error
    elif status["state"] == "damaged":
        ctx.console.say(
            f"The install receipt {ctx.paths.state} is damaged; run `{ctx.self_command()} doctor`."
        )
    elif not status["installed"]:
        ctx.console.say(
            f"TestGen is not installed yet: {in_progress(**command)} (home: {ctx.paths.home})."
            if command
            else f"TestGen is not installed (home: {ctx.paths.home})."
        )
    else:
        running = f"running (pid {status['pid']})" if status["running"] else "stopped"
        ctx.console.say(f"TestGen {status['version']}: installed, {running}")
        for part, url in (("ui", status["ui_url"]), ("api", status["api_url"])):
            health = (
                ""
                if not status["running"]
                else ("  healthy" if status["health"][part] else "  NOT answering")
            )
            ctx.console.say(f"  {part.upper():<4}{url}{health}")
        ctx.console.say(f"  API docs  {status['api_docs_url']}")
        ctx.console.say(f"  MCP       {status['mcp_url']}")
        shared = "every address" if status["listen"] == ALL_ADDRESSES else status["listen"]
        ctx.console.say(f"  Listening on {shared}")
        server = status["database"]
        if server is None:
            ctx.console.say("  Data      embedded PostgreSQL")
        elif server["answers"]:
            tls = "TLS" if server["tls"] else "no TLS"
            ctx.console.say(f"  Data      {server['url']} (PostgreSQL {server['version']}, {tls})")
        else:
            ctx.console.say(f"  Data      {server['url']}: NOT answering ({server['problem']})")
        if status["certificate_expires"]:
            ctx.console.say(
                f"  HTTPS certificate expires on {status['certificate_expires']} "
                f"({status['certificate_days_left']} days left)"
            )
        for warning in status["warnings"]:
            ctx.console.warn(f"Warning: {warning}")
    if status["installed"] and command and not as_json:
        ctx.console.warn(f"dk-installer {in_progress(**command)}: what is shown may change as it runs.")
    if status["interrupted_action"] and not as_json:
        action = status["interrupted_action"]
        ctx.console.warn(
            f"An interrupted `{action}` was found; `{ctx.self_command()} {action}` repairs it "
            "(any command that changes the install does)."
        )
    if status["state"] == "damaged":
        raise InstallerError("The install receipt is damaged.", code=ErrorCode.STATE_CORRUPT)


def doctor_checks(ctx: ActionContext) -> list[Requirement]:
    import platform

    paths = ctx.paths
    checks: list[Requirement] = [
        Requirement(
            ErrorCode.PYTHON_NOT_FOUND,
            "Python for this installer",
            True,
            f"{sys.executable} ({platform.python_version()})",
        ),
        find_testgen_python(None),
        check_home_writable(paths),
        check_disk(paths, ctx.settings),
    ]
    config_ok = (
        os.access(paths.config if paths.config.exists() else paths.config.parent, os.W_OK)
        or not paths.config.parent.exists()
    )
    checks.append(
        Requirement(
            ErrorCode.CONFIG_NOT_WRITABLE,
            "Settings folder writable",
            config_ok,
            str(paths.config),
            blocking=False,
        )
    )
    interrupted = interrupted_action(paths)
    checks.append(
        Requirement(
            ErrorCode.INTERRUPTED,
            "No interrupted command",
            interrupted is None,
            "none"
            if interrupted is None
            else f"an interrupted `{interrupted}` was found; `{ctx.self_command()} {interrupted}` repairs it",
        )
    )
    holder = InstallerLock.holder(paths.lock)
    checks.append(
        Requirement(
            ErrorCode.BUSY,
            "No command in progress",
            holder is None,
            "none" if holder is None else f"{in_progress(*holder)}; run doctor again once it has ended",
        )
    )
    state: InstallState | None = None
    try:
        state = InstallState.load(paths.state)
        checks.append(
            Requirement(
                ErrorCode.STATE_CORRUPT,
                "Install receipt",
                True,
                "not installed" if state is None else str(paths.state),
            )
        )
    except StateCorrupt as exc:
        checks.append(
            Requirement(
                ErrorCode.STATE_CORRUPT,
                "Install receipt",
                False,
                f"{exc}. `{ctx.self_command()} install` rebuilds it from the installed TestGen; "
                f"`{ctx.self_command()} uninstall --yes` removes the install",
            )
        )
    if state:
        ctx.use_receipt(state)
    testgen = ctx.testgen
    running = testgen.running()
    checks += [
        *check_ports(testgen.ui_port, testgen.api_port, ours_running=running, at_install=state is None),
    ]
    if state:
        version = installed_version(paths.venv)
        checks.append(
            Requirement(
                ErrorCode.VENV_BROKEN,
                "TestGen venv",
                version == state.product_version,
                f"{paths.venv}: {version or 'missing or broken'}"
                + (
                    ""
                    if version == state.product_version
                    else f", expected {state.product_version}; run `{ctx.self_command()} upgrade`"
                ),
            )
        )
        checks += https_checks(ctx)
        server = describe_server(testgen.config.read())
        if server is not None:
            checks.append(
                Requirement(
                    ErrorCode.DATABASE_UNREACHABLE,
                    "PostgreSQL server",
                    server["answers"],
                    f"{server['url']}: PostgreSQL {server['version']}, {'TLS' if server['tls'] else 'no TLS'}"
                    if server["answers"]
                    else f"{server['url']}: {server['problem']}",
                )
            )
        if running:
            health = testgen.health()
            checks.append(
                Requirement(
                    ErrorCode.START_FAILED,
                    "TestGen answering",
                    all(health.values()),
                    ", ".join(f"{k.upper()} {'ok' if v else 'not answering'}" for k, v in health.items()),
                )
            )
    checks.append(check_index(InstallOptions(), ctx.settings))
    return checks


def https_checks(ctx: ActionContext) -> list[Requirement]:
    """How TestGen is shared and its certificate: failing but not blocking, since TestGen runs
    (a team sharing over plain HTTP keeps its browsers; an expiring certificate still serves)."""
    testgen = ctx.testgen
    warnings = testgen.sharing_warnings(ctx.self_command())
    certificate = testgen.certificate()
    if testgen.shared or certificate is not None:
        if certificate is not None:
            fine = (
                f"{testgen.host} covered, expires {certificate.not_after.date().isoformat()} "
                f"({certificate.days_left()} days left)"
            )
        else:
            fine = "HTTPS"
        return [
            Requirement(
                ErrorCode.HTTPS_WARNING,
                "HTTPS",
                not warnings,
                " ".join(warnings) or fine,
                blocking=False,
            )
        ]
    return []


def doctor_action(ctx: ActionContext) -> None:
    checks = doctor_checks(ctx)
    ctx.checks = checks
    ctx.console.say("dk-installer doctor\n")
    report_requirements(ctx.console, checks)
    failed = [c for c in checks if not c.ok]
    if failed:
        raise RequirementsNotMet(failed)
    ctx.console.say("\nEverything looks fine.")


def logs_action(ctx: ActionContext, output: Path | None) -> None:
    """A support zip: installer logs, TestGen log tails, state, doctor output. Secrets redacted."""
    import io
    import tempfile

    paths = ctx.paths
    known = read_credentials(paths)
    if known:
        redact.add(known[1])
    for key, value in TestGenConfig(paths.config_env).read().items():
        if key in SECRET_KEYS:
            redact.add(value)
    paths.logs.mkdir(parents=True, exist_ok=True)
    target = output or paths.logs / f"support-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.zip"
    doctor_text = io.StringIO()
    with contextlib.redirect_stdout(doctor_text):
        report_requirements(Console(no_color=True), doctor_checks(ctx))
    # A new 0600 file beside the target, renamed over it: writing into an existing file would keep
    # its mode, perhaps readable by everyone.
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        write_support_zip(fd, ctx, doctor_text.getvalue())
        os.replace(partial, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise
    ctx.console.say(f"Support bundle written to {target}")
    ctx.console.say("Passwords and keys are redacted; look inside before you share it.")


def write_support_zip(fd: int, ctx: ActionContext, doctor_text: str) -> None:
    import platform
    import zipfile

    paths = ctx.paths

    def tail(path: Path, lines: int = 2000) -> str:
        return file_tail(path, lines, max_bytes=8 * 1024 * 1024) + "\n"

    with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as bundle:
        for log_file in sorted(paths.logs.glob("*.log")):
            bundle.writestr(f"logs/{log_file.name}", tail(log_file, 20000))
        if (paths.testgen_logs / "app.log").exists():
            bundle.writestr("testgen/app.log", tail(paths.testgen_logs / "app.log"))
        if paths.state.exists():
            bundle.writestr("state.json", tail(paths.state))
        if paths.config_env.exists():
            bundle.writestr("testgen/config.env", tail(paths.config_env))
        bundle.writestr("doctor.txt", redact(doctor_text))
        bundle.writestr(
            "environment.txt", f"dk-installer {__version__}\nPython {sys.version}\n{platform.platform()}\n"
        )
