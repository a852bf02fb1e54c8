"""TestGen, the installed product: its URLs, the environment every TestGen process gets, its CLI,
starting, waiting for and stopping the app, and its health. Made from the install receipt."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dk_installer.bootstrap import CHILD_CWD, EXIT_REQUIREMENTS, venv_bin
from dk_installer.certificates import (
    EXPIRY_WARNING_DAYS,
    HOW_TO_GET_HTTPS,
    SHARING_NEEDS_HTTPS,
    Certificate,
    chain_is_complete,
    read_certificate,
)
from dk_installer.config import ANALYTICS_BASE_URL, APP_LOG_KEPT, now_iso, write_file_atomically
from dk_installer.copies import installer_command
from dk_installer.defaults import ALL_ADDRESSES, LOOPBACK
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.logpump import pump_command
from dk_installer.net import http_status, is_loopback, process_description, shared_host_names
from dk_installer.runner import USER_PYTHON_VARIABLES, file_tail, run_command
from dk_installer.service import ServiceManager
from dk_installer.testgen.config import OWNER_VARIABLE, TestGenConfig
from dk_installer.testgen.login import oauth_login
from dk_installer.testgen.processes import alive, app_process, our_processes, postmaster, strangers_listening
from dk_installer.tls import tls_verifying_context

if TYPE_CHECKING:
    from dk_installer.config import InstallState, Settings
    from dk_installer.console import Progress
    from dk_installer.paths import Paths

log = logging.getLogger("dk_installer")


STOP_TIMEOUT_S = 60.0
STOP_SWEEPS = 3


class TestGen:
    """Everything the installer does with an installed TestGen: run its CLI, start, stop and
    probe the app, find its processes, read and write its config. Made from the install receipt
    (or, before there is one, from the install options)."""

    def __init__(
        self,
        paths: Paths,
        settings: Settings,
        ui_port: int,
        api_port: int,
        analytics_enabled: bool,
        listen: str = LOOPBACK,
        tls: bool = False,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.ui_port = ui_port
        self.api_port = api_port
        self.analytics_enabled = analytics_enabled
        self.listen = listen
        self.tls = tls
        self.config = TestGenConfig(paths.config_env)
        self.service = ServiceManager(paths)

    @classmethod
    def from_receipt(
        cls, paths: Paths, settings: Settings, state: InstallState, analytics_enabled: bool
    ) -> TestGen:
        return cls(paths, settings, state.ui_port, state.api_port, analytics_enabled, state.listen, state.tls)

    @property
    def shared(self) -> bool:
        return not is_loopback(self.listen)

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def host(self) -> str:
        """The host name in every URL the installer prints: this host's name when shared."""
        return shared_host_names(self.listen)[0] if self.shared else "localhost"

    def url(self, port: int) -> str:
        """How people reach a port: this host's name when shared, else localhost."""
        return f"{self.scheme}://{self.host}:{port}"

    @property
    def ui_url(self) -> str:
        return self.url(self.ui_port)

    @property
    def api_url(self) -> str:
        return self.url(self.api_port)

    @property
    def api_docs_url(self) -> str:
        return f"{self.api_url}/api/docs"

    @property
    def mcp_url(self) -> str:
        """TestGen's MCP server (streamable HTTP), served by its API."""
        return f"{self.api_url}/mcp"

    @property
    def probe_host(self) -> str:
        """The address the installer itself connects to: one the listen address serves."""
        return LOOPBACK if self.listen in (ALL_ADDRESSES, "localhost") else self.listen

    def probe_url(self, port: int) -> str:
        host = self.probe_host
        host = f"[{host}]" if ":" in host else host
        return f"{self.scheme}://{host}:{port}"

    def certificate(self) -> Certificate | None:
        """The installed certificate's facts, when TestGen serves HTTPS."""
        return read_certificate(self.paths.tls_cert) if self.tls else None

    def sharing_warnings(self, command: str) -> list[str]:
        """What is wrong with how TestGen is shared (nothing, when it is fine): plain HTTP on the
        network (kept working for installs made that way, never cut off), a certificate that does
        not name the host in the printed URLs, or one that expires soon. `command` is how the user
        runs the installer, for the remedy."""
        fix = f"`{command} configure --ssl-cert-file CERT --ssl-key-file KEY`"
        if self.shared and not self.tls:
            return [
                f"TestGen is shared over plain HTTP: browsers work, but {SHARING_NEEDS_HTTPS}. "
                f"To fix it, {HOW_TO_GET_HTTPS}: {fix}."
            ]
        certificate = self.certificate()
        if certificate is None:
            return []
        warnings = []
        if not certificate.covers(self.host):
            names = ", ".join(certificate.names) or "no names"
            warnings.append(
                f"The HTTPS certificate does not cover {self.host}, the host in TestGen's URLs (it "
                f"names {names}): browsers and clients that check it will refuse {self.ui_url}. Use a "
                f"certificate for {self.host}: {fix}."
            )
        if not chain_is_complete(self.paths.tls_cert, self.paths.tls_key):
            warnings.append(
                "Clients cannot verify the HTTPS certificate: its chain does not lead to a CA in this "
                "machine's trust store and the file holds no root CA certificate. Give clients the CA "
                f"that issued it, or put the full chain (root included) in the file: {fix}."
            )
        days = certificate.days_left()
        if days < 0:
            warnings.append(
                f"The HTTPS certificate expired on {certificate.not_after.date().isoformat()}: "
                f"clients refuse it. Renew it and install the new one with {fix}."
            )
        elif days <= EXPIRY_WARNING_DAYS:
            warnings.append(
                f"The HTTPS certificate expires on {certificate.not_after.date().isoformat()} "
                f"({days} days left). Renew it and install the new one with {fix}."
            )
        return warnings

    def tls_context(self) -> Any:
        return tls_verifying_context(self.paths.tls_cert) if self.tls else None

    def program(self, name: str) -> Path:
        return Path(venv_bin(self.paths.venv, name))

    def environment(self) -> dict[str, str]:
        """The environment of every TestGen process. HOME, XDG_RUNTIME_DIR and the log path point
        inside DK_INSTALLER_HOME so that TestGen, Streamlit and pgserver write nothing elsewhere."""
        env = dict(os.environ)
        home = self.paths.testgen_home
        # pgserver keeps its lock in $XDG_RUNTIME_DIR/python_PostgresServer if that exists, else in
        # /tmp; platformdirs accepts XDG_RUNTIME_DIR only when it is 0700 (mkdir's mode does not
        # change a folder that exists, hence the chmod).
        for private in (self.paths.run_dir, self.paths.run_dir / "python_PostgresServer", self.paths.tmp):
            private.mkdir(parents=True, exist_ok=True, mode=0o700)
            private.chmod(0o700)
        env.update(
            TG_TESTGEN_HOME=str(home),
            TG_UI_PORT=str(self.ui_port),
            TG_API_PORT=str(self.api_port),
            TESTGEN_LOG_FILE_PATH=str(self.paths.testgen_logs),
            HOME=str(home),
            XDG_RUNTIME_DIR=str(self.paths.run_dir),
            TMPDIR=str(self.paths.tmp),
            PATH=f"{self.program('')}{os.pathsep}{env.get('PATH', '')}",
            VIRTUAL_ENV=str(self.paths.venv),
        )
        env[OWNER_VARIABLE] = str(self.paths.testgen)
        # Where the UI (Streamlit), the API and MCP listen; links, the OAuth flow and MCP clients
        # from other machines need the shared names.
        env["STREAMLIT_SERVER_ADDRESS"] = self.listen
        env["TG_API_HOST"] = self.listen
        if self.shared:
            env["TG_UI_BASE_URL"] = self.ui_url
            env["TG_BASE_URL"] = self.api_url
            env["TG_MCP_EXTRA_ALLOWED_HOSTS"] = ",".join(shared_host_names(self.listen))
        if not self.analytics_enabled:
            env["TG_ANALYTICS"] = "no"
        if self.settings.analytics_url != ANALYTICS_BASE_URL:
            # A self-hosted collector gets TestGen's events too: nothing goes around it.
            env["TG_MIXPANEL_URL"] = self.settings.analytics_url
        # setup copies SSL_CERT_FILE/SSL_KEY_FILE into config.env, where they would switch TestGen
        # to TLS; a CA bundle in the user's environment is not meant for that.
        for name in ("SSL_CERT_FILE", "SSL_KEY_FILE", *USER_PYTHON_VARIABLES):
            env.pop(name, None)
        return env

    @property
    def working_dir(self) -> Path:
        """Where TestGen's processes run: its home, never the user's current folder."""
        return self.paths.testgen_home

    def cli(
        self,
        subcommand: str,
        *arguments: str,
        progress: Progress | None = None,
        stdin_text: str | None = None,
        timeout: float | None = None,
        error_code: ErrorCode = ErrorCode.SUBPROCESS_FAILED,
        extra_env: Mapping[str, str] | None = None,
    ) -> str:
        """The one way to run a `testgen` command: TestGen's environment, logged, redacted."""
        return run_command(
            [str(self.program("testgen")), subcommand, *arguments],
            env={**self.environment(), **(extra_env or {})},
            cwd=self.working_dir,
            stdin_text=stdin_text,
            progress=progress,
            timeout=timeout,
            error_code=error_code,
            what=f"testgen {subcommand}",
        )

    def patch_streamlit(self, progress: Progress) -> None:
        """Versions that ship tg-patch-streamlit need it run after every package change."""
        patcher = self.program("tg-patch-streamlit")
        if patcher.exists():
            run_command(
                [str(patcher)],
                env=self.environment(),
                cwd=self.working_dir,
                progress=progress,
                error_code=ErrorCode.UPGRADE_FAILED,
                what="tg-patch-streamlit",
            )

    # Processes (testgen/processes.py decides which are ours)
    def app_process(self) -> Any:
        return app_process(self.paths)

    def postmaster(self) -> Any:
        return postmaster(self.paths)

    def processes(self) -> list[Any]:
        return our_processes(self.paths)

    def running(self) -> bool:
        """Is the app this installer started still running? (health() says whether it answers)"""
        return self.app_process() is not None

    def health(self) -> dict[str, bool]:
        context = self.tls_context()
        return {
            "ui": http_status(f"{self.probe_url(self.ui_port)}/_stcore/health", context) == 200,
            "api": http_status(f"{self.probe_url(self.api_port)}/api/v1/health", context) == 200,
        }

    def serving(self) -> bool:
        """Running, answering, and the answers come from TestGen itself: what `install` and `start`
        take as "nothing to do"."""
        return (
            self.running()
            and all(self.health().values())
            and all(self.strangers_on(port) == [] for port in (self.ui_port, self.api_port))
        )

    def strangers_on(self, port: int) -> list[int | None] | None:
        """Who other than this TestGen would receive the installer's connections to `port` ([] for
        nobody, None when nothing listens): the socket that receives them is the one to check, as
        a stranger may hold 127.0.0.1 itself where TestGen holds every address."""
        return strangers_listening(self.paths, self.probe_host, port)

    def refuse_strangers(self, ports: tuple[int, ...]) -> bool:
        """Raise port_in_use, naming the process, when anyone but TestGen itself would receive the
        installer's connections to one of `ports`: its health answers mean nothing, and it must
        never get a password. True when TestGen alone listens on all of them, False when one has
        no listener yet."""
        answered = True
        for port in ports:
            strangers = self.strangers_on(port)
            if strangers:
                part = "UI" if port == self.ui_port else "API"
                holders = "; ".join(process_description(pid) for pid in strangers)
                raise InstallerError(
                    f"Port {port} (TestGen's {part}) on {self.probe_host} is held by {holders}, not by "
                    "this TestGen; the installer sent it nothing secret. Stop what holds it and try again.",
                    code=ErrorCode.PORT_IN_USE,
                    exit_code=EXIT_REQUIREMENTS,
                )
            answered = answered and strangers is not None
        return answered

    def start(self, progress: Progress) -> None:
        """Start TestGen and return once the UI and the API answer: through the service manager
        when TestGen is a service (never beside it), else run-app detached in its own session."""
        if self.service.installed():
            progress.update("starting the service")
            self.service.start()
            self.wait_until_serving(None, progress)
        else:
            self.wait_until_serving(self.launch(), progress)

    def launch(self) -> subprocess.Popen[bytes]:
        """run-app in its own session, output appended to logs/testgen-app.log, pid recorded."""
        paths = self.paths
        paths.logs.mkdir(parents=True, exist_ok=True)
        environment = self.environment()
        # TestGen keeps its output open as long as it runs, so the log is rotated by the process
        # that writes it: a small pump of ours between run-app's output and the file.
        pump = subprocess.Popen(
            installer_command(*pump_command(paths.app_log, self.settings.app_log_max_bytes, APP_LOG_KEPT)),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, OWNER_VARIABLE: environment[OWNER_VARIABLE]},
            cwd=CHILD_CWD,
            start_new_session=True,
        )
        assert pump.stdin is not None
        with pump.stdin:
            pump.stdin.write(f"\n--- dk-installer starting TestGen at {now_iso()} ---\n".encode())
            pump.stdin.flush()
            process = subprocess.Popen(
                [str(self.program("testgen")), "run-app"],
                stdin=subprocess.DEVNULL,
                stdout=pump.stdin,
                stderr=subprocess.STDOUT,
                env=environment,
                cwd=self.working_dir,
                start_new_session=True,
            )
        import psutil

        with contextlib.suppress(psutil.Error):
            write_file_atomically(
                paths.app_pid, f"{process.pid} {psutil.Process(process.pid).create_time()}\n"
            )
        log.info("run-app started, pid %s", process.pid)
        return process

    def wait_until_serving(self, process: subprocess.Popen[bytes] | None, progress: Progress) -> None:
        paths = self.paths
        limit = self.settings.start_timeout_s
        deadline = time.monotonic() + limit
        ports = (self.ui_port, self.api_port)
        while True:
            health = self.health()
            # Answers count only from TestGen's own sockets: another local user may have bound the
            # ports between the port check and TestGen's start.
            if all(health.values()) and self.refuse_strangers(ports):
                return
            if process is not None and process.poll() is not None:
                self.refuse_strangers(ports)  # TestGen could not bind: name who holds the port
                raise InstallerError(
                    f"TestGen exited during start-up (exit code {process.returncode}).",
                    code=ErrorCode.START_FAILED,
                    details=file_tail(paths.app_log, 15),
                )
            if time.monotonic() > deadline:
                self.refuse_strangers(ports)
                raise InstallerError(
                    f"TestGen did not answer within {limit:.0f}s.",
                    code=ErrorCode.START_FAILED,
                    details=file_tail(paths.app_log, 15),
                )
            waiting = " and ".join(part.upper() for part, up in health.items() if not up)
            progress.update(f"waiting for the {waiting} to answer")
            time.sleep(0.1)  # two refused connections a try: asking often costs nothing

    def stop(self, progress: Progress | None = None, through_service: bool = True) -> bool:
        """Stop run-app, then whatever of ours it left behind, then the embedded PostgreSQL (its
        "fast" shutdown). Returns True if something was running. `run` itself, which may be what
        the service runs, passes through_service=False."""
        import psutil

        def say(text: str) -> None:
            if progress:
                progress.update(text)

        def end(processes: list[Any], sig: int, grace: float) -> list[Any]:
            """Signal them, then wait until each has exited. An exited process of ours is a zombie
            until its parent reaps it, often PID 1, which in a container may take seconds or never
            do it: waiting for that (psutil.wait_procs) made every stop there wait with it."""
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    process.send_signal(sig)
            deadline = time.monotonic() + grace
            left = [process for process in processes if alive(process)]
            while left and time.monotonic() < deadline:
                time.sleep(0.05)
                left = [process for process in left if alive(process)]
            return left

        was_running = False
        if through_service and self.service.active():
            # The service manager would start it again: it stops it (`run` then stops TestGen).
            was_running = True
            say("stopping the service")
            self.service.stop()
        app = self.app_process()
        if app is not None:
            was_running = True
            say("asking TestGen to shut down")
            end([app], signal.SIGTERM, STOP_TIMEOUT_S)
        # run-app's children run in sessions of their own and outlive a killed parent. An orphan
        # of a killed installer (a `standalone-setup`, say) may start another process while it is
        # being stopped, so the sweep repeats until it finds nothing.
        for _sweep in range(STOP_SWEEPS):
            postmaster = self.postmaster()
            database: set[int] = set()
            if postmaster is not None:
                with contextlib.suppress(psutil.Error):
                    database = {postmaster.pid, *(child.pid for child in postmaster.children(recursive=True))}
            leftovers = [process for process in self.processes() if process.pid not in database]
            if leftovers:
                was_running = True
                say(f"stopping {len(leftovers)} leftover TestGen process(es)")
                end(end(leftovers, signal.SIGTERM, 15), signal.SIGKILL, 5)
            postmaster = self.postmaster()
            if postmaster is not None:
                was_running = True
                say("stopping the embedded PostgreSQL")
                end(end([postmaster], signal.SIGINT, 30), signal.SIGQUIT, 10)
            if not leftovers and postmaster is None:
                break
        handles = self.paths.pgdata / ".handle_pids.json"
        if handles.exists():
            with contextlib.suppress(OSError):
                handles.write_text("[]")  # stale handles would stop later clean shutdowns from stopping PG
        with contextlib.suppress(OSError):
            self.paths.app_pid.unlink()
        remaining = self.processes()
        if remaining:
            raise InstallerError(
                f"Could not stop TestGen processes {[process.pid for process in remaining]}.",
                code=ErrorCode.STOP_FAILED,
                details="\n".join(process_description(process.pid) for process in remaining),
            )
        return was_running

    def login(self, username: str, password: str) -> bool | None:
        """A real login through TestGen's OAuth endpoints (testgen/login.py), only when TestGen's
        own process holds the API port: the password goes to nobody else."""
        if not self.refuse_strangers((self.api_port,)):
            raise InstallerError(
                f"Nothing listens on TestGen's API port {self.api_port} any more; no login was tried.",
                code=ErrorCode.START_FAILED,
                details=file_tail(self.paths.app_log, 15),
            )
        return oauth_login(self.probe_url(self.api_port), self.tls_context(), username, password)
