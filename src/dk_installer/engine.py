"""The package engine: uv when available (about 10x faster), else pip; which Python TestGen gets;
how a failed package install is explained (not found, unreachable index, other)."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.bootstrap import venv_bin
from dk_installer.config import DEFAULT_INDEX_URL
from dk_installer.errors import CommandFailed, ErrorCode, InstallerError
from dk_installer.runner import run_command

if TYPE_CHECKING:
    from dk_installer.config import InstallOptions, Settings
    from dk_installer.console import Progress
    from dk_installer.paths import Paths


UV_PYTHON = "3.12"  # what uv downloads when the machine has no Python 3.11+


def _probe_python(executable: str) -> tuple[str, tuple[int, ...]] | None:
    path = executable if os.sep in executable else shutil.which(executable)
    if not path:
        return None
    try:
        out = subprocess.run(
            [
                path,
                "-c",
                "import sys; print(sys.executable); print('.'.join(map(str, sys.version_info[:3])))",
            ],
            capture_output=True,
            text=True,
            timeout=15,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2:
        return None  # e.g. a pyenv shim for a version that is not selected
    return lines[0], tuple(int(part) for part in lines[1].split("."))


def find_uv() -> str | None:
    beside = Path(venv_bin(Path(sys.executable).parent.parent, "uv"))
    if beside.exists():
        return str(beside)
    return shutil.which("uv")


def index_url_of(options: InstallOptions, settings: Settings) -> str:
    return options.index_url or settings.index_url or DEFAULT_INDEX_URL


def unreachable_index_hint(index: str) -> str:
    return (
        f"Could not reach the package index {index}. Behind a proxy? Set HTTPS_PROXY (and HTTP_PROXY). "
        "Using a mirror? Pass --index-url URL. Offline? Pass --find-links DIR with the wheels."
    )


@dataclasses.dataclass
class PackageEngine:
    """uv when available (about 10x faster), else pip. Caches live under DK_INSTALLER_HOME."""

    name: str
    uv: str | None
    paths: Paths
    settings: Settings

    @classmethod
    def choose(cls, paths: Paths, settings: Settings) -> PackageEngine:
        uv = None if settings.force_pip else find_uv()
        return cls("uv" if uv else "pip", uv, paths, settings)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["UV_CACHE_DIR"] = env.get("UV_CACHE_DIR") or str(self.paths.uv_cache)
        env["PIP_CACHE_DIR"] = env.get("PIP_CACHE_DIR") or str(self.paths.pip_cache)
        env["UV_PYTHON_INSTALL_DIR"] = str(self.paths.pythons)
        # uv leaves lock files in TMPDIR; they stay in here and go with the command.
        self.paths.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        env["TMPDIR"] = str(self.paths.tmp)
        if not self.settings.ca_from_environment:
            env["UV_SYSTEM_CERTS"] = "1"  # a TLS-inspecting proxy's CA is in the system store
        env.pop("VIRTUAL_ENV", None)
        return env

    def ensure_python(self, progress: Progress) -> str:
        assert self.uv
        run_command(
            [self.uv, "python", "install", UV_PYTHON],
            env=self.env(),
            progress=progress,
            error_code=ErrorCode.PYTHON_NOT_FOUND,
            what="uv python install",
        )
        return run_command([self.uv, "python", "find", UV_PYTHON], env=self.env(), timeout=60).strip()

    def create_venv(self, python: str, target: Path, progress: Progress) -> None:
        if self.uv:
            cmd = [self.uv, "venv", "--quiet", "--python", python, str(target)]
        else:
            cmd = [python, "-m", "venv", str(target)]
        run_command(
            cmd,
            env=self.env(),
            progress=progress,
            error_code=ErrorCode.PACKAGE_INSTALL_FAILED,
            what="creating TestGen's venv",
        )

    def install(
        self, venv: Path, requirement: str, options: InstallOptions, settings: Settings, progress: Progress
    ) -> None:
        sources: list[str] = []
        if options.index_url:
            sources += ["--index-url", options.index_url]
        if options.find_links:
            sources += ["--find-links", options.find_links]
            if not options.index_url:
                sources.append("--no-index")
        python = venv_bin(venv, "python")
        if self.uv:
            cmd = [self.uv, "pip", "install", "--python", python, "--compile-bytecode", *sources, requirement]
        else:
            cmd = [python, "-m", "pip", "install", "--disable-pip-version-check", *sources, requirement]
        try:
            run_command(
                cmd,
                env=self.env(),
                progress=progress,
                error_code=ErrorCode.PACKAGE_INSTALL_FAILED,
                what=f"{self.name} install",
            )
        except CommandFailed as exc:
            raise classify_install_failure(exc, requirement, options, settings) from None


def classify_install_failure(
    exc: CommandFailed, requirement: str, options: InstallOptions, settings: Settings
) -> InstallerError:
    text = exc.details.lower()
    if options.find_links and not options.index_url:
        index = options.find_links
    else:
        index = index_url_of(options, settings)
    network = (
        "failed to fetch",
        "error sending request",
        "dns error",
        "connection refused",
        "failed to establish a new connection",
        "max retries exceeded",
        "timed out",
        "tls",
        "could not connect",
        "network",
    )
    not_found = (
        "not found in the package registry",
        "no solution found",
        "could not find a version",
        "no matching distribution",
        "was not found in the provided package locations",
    )
    if any(marker in text for marker in not_found):
        return InstallerError(
            f"{requirement} is not available from {index}. Check --version, or point --index-url / "
            "--find-links at a source that has it.",
            code=ErrorCode.PACKAGE_NOT_FOUND,
            details=exc.details,
        )
    if any(marker in text for marker in network):
        return InstallerError(
            unreachable_index_hint(index), code=ErrorCode.INDEX_UNREACHABLE, details=exc.details
        )
    return InstallerError(
        f"Installing {requirement} failed.", code=ErrorCode.PACKAGE_INSTALL_FAILED, details=exc.details
    )
