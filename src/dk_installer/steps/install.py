"""The steps of install and upgrade: preflight, the package engine and Python, the venv, TestGen's
configuration and certificate, demo data, start, login check, receipt, launcher, and the stop,
swap and restart of an upgrade."""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.checks import check_disk, check_home_writable, check_index, check_ports, find_testgen_python
from dk_installer.config import InstallState, now_iso, remove_tree, write_file_atomically
from dk_installer.database import DatabaseTarget
from dk_installer.engine import UV_PYTHON, PackageEngine, _probe_python
from dk_installer.errors import ErrorCode, InstallerError, StepSkipped
from dk_installer.launcher import launcher_is_ours, launcher_script
from dk_installer.runner import file_tail, redact
from dk_installer.steps.base import Step, UpToDate, require
from dk_installer.testgen.config import (
    ADMIN_USERNAME,
    PACKAGE,
    PACKAGE_EXTRA,
    demo_database,
    installed_version,
    read_credentials,
    write_credentials,
)
from dk_installer.testgen.venvs import active_venv, point_venv_at, remove_stale_venvs
from dk_installer.versions import DEFAULT_VERSION_SPEC, is_newer

if TYPE_CHECKING:
    from dk_installer.checks import Requirement
    from dk_installer.console import Progress
    from dk_installer.journal import JournalRecord
    from dk_installer.paths import Paths
    from dk_installer.steps.base import ActionContext


class Preflight(Step):
    name = "preflight"
    title = "Check requirements"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        options = ctx.options
        progress.update("looking for Python")
        python = find_testgen_python(options.python)
        checks: list[Requirement] = [
            python,
            check_home_writable(ctx.paths),
            check_disk(ctx.paths, ctx.settings),
            *check_ports(options.ui_port, options.api_port),
        ]
        progress.update("contacting the package index")
        checks.append(check_index(options, ctx.settings))
        require(ctx, checks)
        ctx.python, ctx.python_version = python.interpreter, python.version
        progress.result = (
            f"Python {ctx.python_version or 'to download'}, ports {options.ui_port}/{options.api_port}"
        )


class ChoosePackageEngine(Step):
    name = "package_engine"
    title = "Choose the package engine"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        ctx.engine = PackageEngine.choose(ctx.paths, ctx.settings)
        progress.result = ctx.engine.uv or "pip"


class DownloadPython(Step):
    """Only when the machine has no Python 3.11+ (preflight then found uv to download one)."""

    name = "download_python"
    title = f"Download Python {UV_PYTHON} with uv"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if ctx.python:
            raise StepSkipped(f"using {ctx.python}")
        assert ctx.engine
        ctx.python = ctx.engine.ensure_python(progress)
        found = _probe_python(ctx.python)
        ctx.python_version = ".".join(map(str, found[1])) if found else UV_PYTHON
        progress.result = f"Python {ctx.python_version} in {ctx.paths.pythons}"


class InstallPackage(Step):
    """Build a new venv beside the active one; with `swap`, switch the venv link to it in one
    rename (an upgrade swaps later, in SwapVenv, once TestGen is stopped)."""

    name = "install_package"
    title = "Install TestGen"

    def __init__(self, swap: bool = True) -> None:
        self.swap = swap
        self.staging: Path | None = None
        self.previous: Path | None = None
        self.swapped = False
        self.new_caches: list[Path] = []

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        import secrets

        assert ctx.engine and ctx.python
        remove_stale_venvs(ctx.paths)
        # A failed install (a full disk above all) must not leave a new cache behind on that disk.
        self.new_caches = [cache for cache in (ctx.paths.cache,) if not cache.exists()]
        ctx.paths.venvs.mkdir(parents=True, exist_ok=True)
        self.previous = active_venv(ctx.paths)
        self.staging = ctx.paths.venvs / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        spec = ctx.options.version if ctx.options.version else DEFAULT_VERSION_SPEC
        requirement = f"{PACKAGE}[{PACKAGE_EXTRA}]{spec}"
        progress.update("creating a venv")
        ctx.engine.create_venv(ctx.python, self.staging, progress)
        progress.update(f"installing {requirement}")
        ctx.engine.install(self.staging, requirement, ctx.options, ctx.settings, progress)
        version = installed_version(self.staging)
        if not version:
            raise InstallerError(
                f"{PACKAGE} did not install a readable version.", code=ErrorCode.PACKAGE_INSTALL_FAILED
            )
        ctx.installed_version = version
        if self.swap:
            point_venv_at(ctx.paths, self.staging)
            self.swapped = True
        progress.result = f"{PACKAGE} {version} with {ctx.engine.name}"

    def undo(self, ctx: ActionContext) -> None:
        if self.swapped:
            point_venv_at(ctx.paths, self.previous)
            self.swapped = False
        if self.staging and self.staging != self.previous:
            shutil.rmtree(self.staging, ignore_errors=True)
        if self.previous is None:
            # A first install that failed leaves nothing of TestGen's behind (its run folder too).
            with contextlib.suppress(OSError):
                ctx.paths.venvs.rmdir()
            if not ctx.paths.testgen_home.exists():
                remove_tree(ctx.paths.run_dir)
                with contextlib.suppress(OSError):
                    ctx.paths.testgen.rmdir()
        for cache in self.new_caches:
            remove_tree(cache)

    def commit(self, ctx: ActionContext) -> None:
        if self.previous and self.previous != self.staging:
            shutil.rmtree(self.previous, ignore_errors=True)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        if entry.venv_before is not None:
            before = paths.venvs / entry.venv_before if entry.venv_before else None
            point_venv_at(paths, before if before is not None and before.is_dir() else None)
        remove_stale_venvs(paths)
        with contextlib.suppress(OSError):
            paths.venvs.rmdir()

    @classmethod
    def finish(cls, paths: Paths, entry: JournalRecord) -> None:
        remove_stale_venvs(paths)  # the previous venv; the new one is active


class CheckNewVersion(Step):
    """An upgrade that found nothing newer ends here, and the new venv is dropped. An older
    version is refused, unless the action goes back with the data of that version (a backup):
    TestGen's database migrations only go forward."""

    name = "check_version"
    title = "Compare versions"
    side_effects = False

    def __init__(self, backup_version: str | None = None) -> None:
        self.backup_version = backup_version

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        assert ctx.state and ctx.installed_version
        installed, found = ctx.state.product_version, ctx.installed_version
        if self.backup_version is not None:
            if found != self.backup_version:
                raise InstallerError(
                    f"The backup holds TestGen {self.backup_version}'s data, but {ctx.options.version} "
                    f"gave TestGen {found}. Pass --version {self.backup_version}.",
                    code=ErrorCode.VERSION_CONFLICT,
                )
        elif found == installed:
            raise UpToDate(
                f"TestGen {installed} is already the newest version matching {ctx.options.version}."
            )
        elif is_newer(installed, found):
            raise downgrade_refused(installed, found)
        progress.result = f"{installed} -> {found}"


def downgrade_refused(installed: str, older: str) -> InstallerError:
    return InstallerError(
        f"TestGen {older} is older than the installed {installed}. TestGen's database migrations only "
        f"go forward, so {installed}'s data cannot run on {older}. To go back, use a backup made with "
        f"{older}: `upgrade --version {older} --from-backup FILE` (its data replaces the current data, "
        "which is kept until the older TestGen runs).",
        code=ErrorCode.VERSION_CONFLICT,
    )


class Configure(Step):
    """testgen standalone-setup with a generated password on stdin (never in argv); or, when
    TestGen's data was kept from an earlier install, upgrade that data to this version."""

    name = "configure"
    title = "Configure TestGen"

    def __init__(self) -> None:
        self.created_home = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        import secrets

        paths = ctx.paths
        testgen = ctx.testgen
        if paths.config_env.exists():
            ctx.kept_data = True
            known = read_credentials(paths)
            if known:
                ctx.password = known[1]
                redact.add(known[1])
            progress.update("upgrading the kept database to this TestGen version")
            testgen.cli(
                "upgrade-system-version", progress=progress, timeout=600, error_code=ErrorCode.SETUP_FAILED
            )
            testgen.config.set_analytics(ctx.analytics_enabled)
            progress.result = f"kept the existing TestGen data in {paths.testgen_home}"
            return
        self.created_home = True
        paths.testgen_home.mkdir(parents=True, exist_ok=True)
        password = secrets.token_urlsafe(15)
        redact.add(password)
        ctx.password = password
        # TestGen's own analytics id, random per install: without it TestGen derives one from the
        # MAC address. Setup gets it in its environment (config.env must not exist yet, or setup
        # asks "Overwrite?"); config.env keeps it for every later TestGen process.
        instance_id = secrets.token_hex(8)
        testgen.cli(
            "standalone-setup",
            stdin_text=f"{ADMIN_USERNAME}\n{password}\n{password}\n",
            progress=progress,
            timeout=900,
            error_code=ErrorCode.SETUP_FAILED,
            extra_env={"TG_INSTANCE_ID": instance_id},
        )
        testgen.config.update(TG_INSTANCE_ID=instance_id)
        testgen.config.set_analytics(ctx.analytics_enabled)
        write_credentials(paths, ADMIN_USERNAME, password, testgen.ui_url)
        progress.result = f"admin user '{ADMIN_USERNAME}', data in {paths.testgen_home}"

    def undo(self, ctx: ActionContext) -> None:
        if self.created_home:
            ctx.testgen.stop()
            shutil.rmtree(ctx.paths.testgen_home, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                ctx.paths.credentials.unlink()

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        if entry.home_existed is False:
            remove_tree(paths.testgen_home)
        if entry.credentials_existed is False:
            remove_tree(paths.credentials)


class InstallCertificate(Step):
    """HTTPS: the certificate and key given at install are copied into TestGen's home (the key
    0600) and named in config.env, where TestGen reads them."""

    name = "tls"
    title = "Install the HTTPS certificate"

    def __init__(self) -> None:
        self.installed = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        options = ctx.options
        if options.ssl_cert is None or options.ssl_key is None:
            raise StepSkipped("plain HTTP (--ssl-cert-file and --ssl-key-file turn on HTTPS)")
        paths = ctx.paths
        self.installed = True
        paths.tls_key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomically(paths.tls_cert, options.ssl_cert.read_text())
        write_file_atomically(paths.tls_key, options.ssl_key.read_text(), mode=0o600)
        ctx.testgen.config.update(
            SSL_CERT_FILE=str(paths.tls_cert),
            SSL_KEY_FILE=str(paths.tls_key),
            TG_UI_TLS_ENABLED="yes",
            TG_API_TLS_ENABLED="yes",
        )
        progress.result = f"{paths.tls_cert}"

    def undo(self, ctx: ActionContext) -> None:
        if self.installed:
            ctx.testgen.config.update(
                SSL_CERT_FILE=None, SSL_KEY_FILE=None, TG_UI_TLS_ENABLED=None, TG_API_TLS_ENABLED=None
            )
            remove_tree(ctx.paths.tls_cert.parent)


class InstallLauncher(Step):
    """`dk-installer` on PATH; never over a `dk-installer` that is not ours."""

    name = "launcher"
    title = "Put the dk-installer command on PATH"
    required = False

    def __init__(self) -> None:
        self.written = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        path = ctx.paths.launcher
        if (path.exists() or path.is_symlink()) and not launcher_is_ours(path):
            raise StepSkipped(f"{path} is not ours; left as it is")
        write_file_atomically(path, launcher_script(ctx.paths, ctx.settings), mode=0o755)
        self.written = True
        on_path = str(path.parent) in os.environ.get("PATH", "").split(os.pathsep)
        progress.result = str(path) + (
            "" if on_path else f"; {path.parent} is not on your PATH (add it there to type `dk-installer`)"
        )

    def undo(self, ctx: ActionContext) -> None:
        if self.written:
            remove_tree(ctx.paths.launcher)

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        if entry.launcher_existed is False and launcher_is_ours(paths.launcher, paths.home):
            remove_tree(paths.launcher)


def demo_refusal(ctx: ActionContext) -> str | None:
    """Why TestGen's demo cannot go on this server, or None. Its loader (quick-start) makes the
    demo database and drops and re-creates TestGen's own database: on a database that holds
    anything else, that would lose the user's data."""
    facts = ctx.server
    target = ctx.database
    if facts is None or target is None:
        return None
    if not facts.can_create_database:
        return (
            f"the demo needs CREATE DATABASE on the server ({demo_database(target.dbname)}), "
            f"which {target.user} lacks"
        )
    if facts.other_objects:
        return (
            f"TestGen's demo loader drops and re-creates the database {target.dbname}, which holds other data"
        )
    if facts.schema_exists:
        return "the existing TestGen schema is kept as it is"
    return None


class LoadDemoData(Step):
    name = "demo_data"
    title = "Load demo data"
    required = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.options.demo:
            raise StepSkipped("--no-demo")
        if ctx.kept_data:
            raise StepSkipped("kept data is left as it was")
        refusal = demo_refusal(ctx)
        if refusal:
            ctx.options.demo = False  # the receipt then says there is no demo
            raise StepSkipped(refusal)
        ctx.testgen.cli("quick-start", progress=progress, timeout=1800)


class StartApp(Step):
    name = "start"
    title = "Start TestGen"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.options.start:
            raise StepSkipped("--no-start")
        ctx.started_app = True
        ctx.testgen.start(progress)
        progress.result = f"UI {ctx.testgen.ui_url}"

    def undo(self, ctx: ActionContext) -> None:
        if ctx.started_app:
            ctx.testgen.stop()


class VerifyLogin(Step):
    name = "verify_login"
    title = "Verify the login"
    side_effects = False

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.started_app:
            raise StepSkipped("TestGen was not started")
        if ctx.password is None:
            known = read_credentials(ctx.paths)
            ctx.password = known[1] if known else None
        if not ctx.password:
            raise StepSkipped("the password of the kept data is unknown")
        progress.update("logging in through TestGen's OAuth endpoints")
        ctx.login_success = ctx.testgen.login(ADMIN_USERNAME, ctx.password)
        if ctx.login_success is None:
            raise StepSkipped("this TestGen version has no login endpoint to check")
        if not ctx.login_success:
            if ctx.kept_data or ctx.action in ("upgrade", "restore", "configure"):
                # TestGen asks people to change the generated password: expected, not a failure.
                raise StepSkipped(
                    f"the password saved in {ctx.paths.credentials} no longer works (expected after a "
                    "change in TestGen's UI); TestGen itself is up"
                )
            raise InstallerError(
                f"TestGen rejected the login of '{ADMIN_USERNAME}' with the generated password.",
                code=ErrorCode.LOGIN_FAILED,
                details=file_tail(ctx.paths.app_log, 15),
            )
        progress.result = f"'{ADMIN_USERNAME}' logged in"


class SaveState(Step):
    name = "save_state"
    title = "Record the install"

    def __init__(self, previous: InstallState | None = None) -> None:
        self.previous = previous

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        stamp = now_iso()
        venv = active_venv(ctx.paths)
        testgen = ctx.testgen
        previous = self.previous
        # An action that installs nothing (migrate-database) keeps what the receipt says.
        state = InstallState(
            product_version=ctx.product_version or "unknown",
            version_spec=ctx.options.version or (previous.version_spec if previous else DEFAULT_VERSION_SPEC),
            ui_port=testgen.ui_port,
            api_port=testgen.api_port,
            package_engine=ctx.package_engine or "unknown",
            python=ctx.python or (previous.python if previous else ""),
            python_version=ctx.python_version or (previous.python_version if previous else ""),
            venv=venv.name if venv else "",
            installed_at=self.previous.installed_at if self.previous else stamp,
            updated_at=stamp,
            demo_data=self.previous.demo_data if self.previous else ctx.options.demo and not ctx.kept_data,
            listen=testgen.listen,
            tls=testgen.tls,
            database=server.url()
            if (server := DatabaseTarget.from_testgen_settings(testgen.config.read()))
            else "",
        )
        state.save(ctx.paths.state)
        ctx.state = state
        progress.result = str(ctx.paths.state)

    def undo(self, ctx: ActionContext) -> None:
        if self.previous:
            self.previous.save(ctx.paths.state)
        else:
            with contextlib.suppress(FileNotFoundError):
                ctx.paths.state.unlink()

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        if entry.state_existed and entry.state_before is not None:
            write_file_atomically(paths.state, entry.state_before)
        elif entry.state_existed is False:
            remove_tree(paths.state)


class StopApp(Step):
    name = "stop"
    title = "Stop TestGen"

    def __init__(self, restart_on_undo: bool = True) -> None:
        self.restart_on_undo = restart_on_undo

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        ctx.was_running = ctx.testgen.stop(progress)
        if not ctx.was_running:
            raise StepSkipped("it was not running")

    def undo(self, ctx: ActionContext) -> None:
        """An upgrade that fails after stopping TestGen starts the previous one again."""
        testgen = ctx.testgen
        if self.restart_on_undo and ctx.was_running and active_venv(ctx.paths) and not testgen.running():
            with ctx.console.step("Start the previous TestGen again") as progress:
                testgen.start(progress)


class SwapVenv(Step):
    name = "swap_venv"
    title = "Switch to the new TestGen"

    def __init__(self, build: InstallPackage) -> None:
        self.build = build

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        assert self.build.staging
        point_venv_at(ctx.paths, self.build.staging)
        self.build.swapped = True

    def undo(self, ctx: ActionContext) -> None:
        if self.build.swapped:
            point_venv_at(ctx.paths, self.build.previous)
            self.build.swapped = False

    @classmethod
    def recover(cls, paths: Paths, entry: JournalRecord) -> None:
        InstallPackage.recover(paths, entry)


class RestartApp(Step):
    name = "restart"
    title = "Start TestGen again"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        if not ctx.was_running:
            raise StepSkipped("it was not running before")
        ctx.started_app = True
        ctx.testgen.start(progress)

    def undo(self, ctx: ActionContext) -> None:
        if ctx.started_app:
            ctx.testgen.stop()
            ctx.started_app = False


class UpgradeDatabase(Step):
    name = "upgrade_database"
    title = "Upgrade TestGen's database"

    def run(self, ctx: ActionContext, progress: Progress) -> None:
        testgen = ctx.testgen
        testgen.cli(
            "upgrade-system-version", progress=progress, timeout=900, error_code=ErrorCode.UPGRADE_FAILED
        )
        testgen.patch_streamlit(progress)
        testgen.config.set_analytics(ctx.analytics_enabled)
