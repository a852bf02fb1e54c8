"""The user's service manager (systemd's user instance, launchd), which starts TestGen at boot
through `dk_installer.py run`."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.config import write_file_atomically
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.runner import probe

if TYPE_CHECKING:
    from dk_installer.paths import Paths

log = logging.getLogger("dk_installer")


SERVICE_NAME = "dk-installer-testgen"
LAUNCHD_LABEL = "com.datakitchen.dk-installer-testgen"


def refuse_control_characters(value: str) -> None:
    """A newline would end the unit's line and start another (an attacker's `ExecStartPre=`); systemd
    rejects the other control characters, and XML (launchd's plist) cannot hold them."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise InstallerError(
            f"{value!r} holds a control character (a newline, a tab…), which a service definition cannot "
            "hold. Install to a folder without one (DK_INSTALLER_HOME) to run TestGen as a service.",
            code=ErrorCode.SERVICE_UNAVAILABLE,
        )


def systemd_quote(word: str, *, dollars: bool = False) -> str:
    """One word of a unit line in systemd's own syntax (systemd.syntax(7), not a shell's): in double
    quotes, with C-style escapes for `\\` and `"`. `%` starts a specifier wherever it is, so it is
    doubled; `$` starts a variable only in ExecStart's argv (`dollars`), and `$$` is a literal one."""
    word = word.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")
    if dollars:
        word = word.replace("$", "$$")
    return f'"{word}"'


class ServiceManager:
    """The user's service manager, which starts TestGen at boot through `dk_installer.py run`:
    systemd's user instance on Linux, launchd on macOS."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.launchd = sys.platform == "darwin"

    @property
    def unit_path(self) -> Path:
        return self.paths.launchd_plist if self.launchd else self.paths.systemd_unit

    def _command(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        tool = ["launchctl", *args] if self.launchd else ["systemctl", "--user", *args]
        log.info("$ %s", " ".join(tool))
        try:
            result = probe(tool, timeout=60)
        except (OSError, subprocess.SubprocessError) as exc:
            raise InstallerError(f"`{' '.join(tool)}` could not run ({type(exc).__name__}).") from None
        if check and result.returncode != 0:
            raise InstallerError(
                f"`{' '.join(tool)}` failed (exit code {result.returncode}).", details=result.stderr.strip()
            )
        return result

    def unusable_reason(self) -> str | None:
        """None when the service manager can be used, else why not (containers, WSL1, no bus)."""
        tool = "launchctl" if self.launchd else "systemctl"
        if not shutil.which(tool):
            return f"there is no `{tool}` on this machine"
        probe = ("print", f"gui/{os.getuid()}") if self.launchd else ("show-environment",)
        if self._command(*probe, check=False).returncode != 0:
            return (
                f"`{tool}` cannot reach your user's service manager here (a container, WSL1, or a "
                "session without one)"
            )
        return None

    def definition(self, command: list[str], paths: Paths) -> str:
        """The unit (or launchd agent) that runs `command` and restarts it when it fails. The
        service does not see the shell's environment: the saved analytics setting governs it."""
        environment = {"DK_INSTALLER_HOME": str(paths.home), "XDG_CONFIG_HOME": str(paths.config.parent)}
        for value in (*command, *environment.values()):
            refuse_control_characters(value)
        if self.launchd:
            import plistlib

            return plistlib.dumps(
                {
                    "Label": LAUNCHD_LABEL,
                    "ProgramArguments": command,
                    "EnvironmentVariables": environment,
                    "RunAtLoad": True,
                    "KeepAlive": {"SuccessfulExit": False},
                    # `run`'s own lines; TestGen's output has its rotating writer (testgen-app.log).
                    "StandardOutPath": str(paths.logs / "service.log"),
                    "StandardErrorPath": str(paths.logs / "service.log"),
                }
            ).decode()
        program, *arguments = command
        if any(char in program for char in "\"'\\"):
            raise InstallerError(
                f"systemd cannot run {program!r}: a program's path may not hold a quote or a backslash. "
                "Install with a Python, and to a folder (DK_INSTALLER_HOME), without one to run TestGen "
                "as a service.",
                code=ErrorCode.SERVICE_UNAVAILABLE,
            )
        # systemd runs the program's path as written but expands `$` in every argv word, argv[0]
        # included (Python finds its venv through argv[0]): "@" gives argv[0] separately.
        exec_start = " ".join(
            [
                systemd_quote("@" + program),
                *(systemd_quote(word, dollars=True) for word in [program, *arguments]),
            ]
        )
        lines = [
            "[Unit]",
            "Description=DataOps TestGen (installed by dk-installer)",
            "After=network-online.target",
            "Wants=network-online.target",
            "",
            "[Service]",
            "Type=simple",
            f"ExecStart={exec_start}",
            *(f"Environment={systemd_quote(f'{key}={value}')}" for key, value in environment.items()),
            "Restart=on-failure",
            "RestartSec=5",
            # `run` stops TestGen and its PostgreSQL in order on SIGTERM; the rest of the group is
            # killed only if that takes longer than TimeoutStopSec.
            "KillMode=mixed",
            "TimeoutStopSec=120",
            "",
            "[Install]",
            "WantedBy=default.target",
            "",
        ]
        return "\n".join(lines)

    def installed(self) -> bool:
        return self.unit_path.exists()

    def active(self) -> bool:
        if not self.installed():
            return False
        if self.launchd:
            return self._command("print", f"gui/{os.getuid()}/{LAUNCHD_LABEL}", check=False).returncode == 0
        return self._command("is-active", "--quiet", f"{SERVICE_NAME}.service", check=False).returncode == 0

    def enable(self, definition: str) -> None:
        write_file_atomically(self.unit_path, definition)
        if self.launchd:
            self._command("bootstrap", f"gui/{os.getuid()}", str(self.unit_path))
        else:
            self._command("daemon-reload")
            self._command("enable", "--now", f"{SERVICE_NAME}.service")

    def disable(self) -> None:
        if self.launchd:
            self._command("bootout", f"gui/{os.getuid()}/{LAUNCHD_LABEL}", check=False)
        else:
            self._command("disable", "--now", f"{SERVICE_NAME}.service", check=False)
        with contextlib.suppress(FileNotFoundError):
            self.unit_path.unlink()
        if not self.launchd:
            self._command("daemon-reload", check=False)

    def start(self) -> None:
        if self.launchd:
            self._command("kickstart", f"gui/{os.getuid()}/{LAUNCHD_LABEL}")
        else:
            self._command("start", f"{SERVICE_NAME}.service")

    def stop(self) -> None:
        if self.launchd:
            self._command("kill", "SIGTERM", f"gui/{os.getuid()}/{LAUNCHD_LABEL}", check=False)
        else:
            self._command("stop", f"{SERVICE_NAME}.service")

    def linger_hint(self) -> str | None:
        """systemd starts a user's services at boot only with lingering on."""
        if self.launchd or not shutil.which("loginctl"):
            return None
        import getpass

        user = getpass.getuser()
        try:
            out = probe(["loginctl", "show-user", user, "--property=Linger"], timeout=15).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if "Linger=yes" in out:
            return None
        return (
            "TestGen now starts when you log in. To start it at boot without a login, run once:\n"
            f"  sudo loginctl enable-linger {user}"
        )
