"""Steps and what they share: the Step protocol (run, undo, commit), run_steps (undo every started
step on any failure, with signals deferred, then commit them all) and the ActionContext."""

from __future__ import annotations

import dataclasses
import logging
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from dk_installer.checks import RequirementsNotMet, report_requirements
from dk_installer.config import InstallOptions
from dk_installer.console import echo, textwrap_indent
from dk_installer.errors import InstallerError, StepSkipped
from dk_installer.journal import Journal, JournalRecord
from dk_installer.launcher import self_command
from dk_installer.runner import current_log_path, deferred_signals
from dk_installer.testgen.app import TestGen

if TYPE_CHECKING:
    from pathlib import Path

    from dk_installer.checks import Requirement
    from dk_installer.config import InstallState, Settings
    from dk_installer.console import Console, Progress
    from dk_installer.database import DatabaseTarget, ServerFacts
    from dk_installer.engine import PackageEngine
    from dk_installer.paths import Paths

log = logging.getLogger("dk_installer")


@dataclasses.dataclass
class ActionContext:
    """What one action's steps share. When the action ends, the action boundary reads the
    analytics facts from here (step, checks, versions, engine, login)."""

    paths: Paths
    settings: Settings
    console: Console
    analytics_enabled: bool
    options: InstallOptions = dataclasses.field(default_factory=InstallOptions)
    state: InstallState | None = None
    python: str | None = None
    python_version: str | None = None
    engine: PackageEngine | None = None
    password: str | None = None
    kept_data: bool = False
    was_running: bool = False
    started_app: bool = False
    action: str = ""
    step: str | None = None
    checks: list[Requirement] = dataclasses.field(default_factory=list)
    installed_version: str | None = None
    login_success: bool | None = None
    # TestGen's data on the user's PostgreSQL server: where, how to log in, what the check found
    database: DatabaseTarget | None = None
    database_password: str | None = None
    database_admin_password: str | None = None
    database_keys: dict[str, str] | None = None
    server: ServerFacts | None = None
    migration_dumps: tuple[Path, Path | None] | None = None
    _testgen: TestGen | None = dataclasses.field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.journal = Journal(self.paths)

    @property
    def testgen(self) -> TestGen:
        """The TestGen this action works on: from the receipt once there is one, else from the
        install options."""
        if self._testgen is None:
            if self.state:
                self._testgen = TestGen.from_receipt(
                    self.paths, self.settings, self.state, self.analytics_enabled
                )
            else:
                self._testgen = TestGen(
                    self.paths,
                    self.settings,
                    self.options.ui_port,
                    self.options.api_port,
                    self.analytics_enabled,
                    self.options.listen,
                    self.options.ssl_cert is not None,
                )
        return self._testgen

    def use_receipt(self, state: InstallState) -> None:
        self.state = state
        self._testgen = None

    @property
    def product_version(self) -> str | None:
        return self.installed_version or (self.state.product_version if self.state else None)

    @property
    def package_engine(self) -> str | None:
        return self.engine.name if self.engine else (self.state.package_engine if self.state else None)

    def self_command(self) -> str:
        return self_command(self.settings, self.paths)


def failpoint(settings: Settings, step: str) -> None:
    """A fault-injection hook for the tests (README "Fault injection"), like FreeBSD's fail
    points: with DK_INSTALLER_FAILPOINT=<step name>, the installer stops at the start of that step
    and waits for a signal, so that a test can kill it exactly there, or act while it waits (bind
    its ports, say) and let it go on with SIGUSR1. Unset, it does nothing."""
    if settings.failpoint != step:
        return
    resumed: list[int] = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: resumed.append(signum))
    try:
        echo(f"failpoint {step}: waiting for a signal (SIGUSR1 continues)", err=True)
        while not resumed:
            time.sleep(0.05)  # not signal.pause(): a SIGUSR1 just before it would be waited for forever
    finally:
        signal.signal(signal.SIGUSR1, previous)


class Step:
    """One visible unit of work. run() does it (raising StepSkipped when there is nothing to do);
    undo() reverses whatever part of it happened, in a live rollback; commit() drops what undo()
    would have needed, once the whole action has succeeded. After a kill, the next command has no
    step objects, only the journal: recover() and finish() are the same knowledge, read from it."""

    name = "step"
    title = "Step"
    required = True
    # Steps that change files or processes; the journal is written before each of them.
    side_effects = True
    by_name: ClassVar[dict[str, type[Step]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            Step.by_name.setdefault(cls.name, cls)  # the first is the real one, never a subclass

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        raise NotImplementedError

    def undo(self, ctx: ActionContext) -> None:
        """Reverse this step's effects; nothing by default."""

    def commit(self, ctx: ActionContext) -> None:
        """The action succeeded: drop what undo() would have needed; nothing by default."""

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        """undo() after a kill, from the journal (TestGen and its PostgreSQL are already stopped);
        nothing by default."""

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        """commit() after a kill in the commit phase, from the journal; nothing by default."""


class UpToDate(StepSkipped):
    """Raised by a step when the action's goal is already met: the steps so far are undone and
    the action ends successfully with this message."""


def run_steps(ctx: ActionContext, steps: Sequence[Step]) -> None:
    """Run `steps` and commit them all; on any failure undo every started one, newest first.
    A mutating action keeps its journal up to date on the way, so that a kill can be recovered."""
    started: list[Step] = []
    journal = ctx.journal
    try:
        for step in steps:
            started.append(step)
            ctx.step = step.name
            if step.side_effects and ctx.action in MUTATING_ACTIONS:
                if not journal.active:
                    journal.begin(ctx.action, running=ctx.testgen.running())
                journal.started(step.name)
            try:
                with ctx.console.step(step.title) as progress:
                    failpoint(ctx.settings, step.name)
                    step.run(ctx, progress)
            except UpToDate:
                raise
            except StepSkipped:
                pass
            except InstallerError as exc:
                if step.required:
                    raise
                ctx.console.warn(f"  {exc.message} The rest goes on without it.")
                if exc.details:
                    ctx.console.warn(textwrap_indent(exc.details))
        ctx.step = None
    except BaseException:
        with deferred_signals():
            for step in reversed(started):
                try:
                    step.undo(ctx)
                except Exception:
                    log.exception("undo of %s failed", step.name)
                    ctx.console.error(f"  Could not fully undo '{step.title}'; see {current_log_path()}")
            journal.clear()
        raise
    journal.record(phase="commit")
    for step in started:
        try:
            step.commit(ctx)
        except Exception:
            log.exception("commit of %s failed", step.name)
    journal.clear()


def require(ctx: ActionContext, checks: list[Requirement]) -> None:
    """Record the checks for the event; list every failure at once. Machine requirements
    (Python, disk, home, ports) exit 3; an unreachable index alone exits 1."""
    ctx.checks += checks
    failed = [c for c in checks if not c.ok]
    if not failed:
        return
    report_requirements(ctx.console, checks)
    if any(c.blocking for c in failed):
        raise RequirementsNotMet(failed)
    raise InstallerError(failed[0].detail, code=failed[0].code)


MUTATING_ACTIONS = (
    "install",
    "upgrade",
    "start",
    "stop",
    "uninstall",
    "service_enable",
    "service_disable",
    "backup",
    "restore",
    "configure",
    "self_update",
    "migrate_database",
)
