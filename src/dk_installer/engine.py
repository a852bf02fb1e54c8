"""The package engine: uv when available (about 10x faster), else pip; which Python TestGen gets;
how a failed package install is explained (not found, unreachable index, other)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dk_installer.bootstrap import venv_bin
from dk_installer.config import DEFAULT_INDEX_URL
from dk_installer.errors import CommandFailed, ErrorCode, InstallerError
from dk_installer.runner import USER_PYTHON_VARIABLES, probe, redact, run_command

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
        # -I: neither the current folder nor PYTHONPATH can put code into the probed Python.
        out = probe(
            [
                path,
                "-I",
                "-c",
                "import sys; print(sys.executable); print('.'.join(map(str, sys.version_info[:3])))",
            ],
            timeout=15,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.split()
    if out.returncode != 0 or len(lines) != 2:
        return None  # e.g. a pyenv shim for a version that is not selected
    return lines[0], tuple(int(part) for part in lines[1].split("."))


def child_environment() -> dict[str, str]:
    """The environment of uv and pip: the user's, without the variables that would load the
    user's code into a Python that uv runs, and with uv's configuration files ignored (uv reads
    uv.toml and pyproject.toml from the folder it runs in and its parents, and from the user's and
    the system's config folders): the installer passes what it means explicitly."""
    env = {name: value for name, value in os.environ.items() if name not in USER_PYTHON_VARIABLES}
    env["UV_NO_CONFIG"] = "1"
    return env


def find_uv() -> str | None:
    beside = Path(venv_bin(Path(sys.executable).parent.parent, "uv"))
    if beside.exists():
        return str(beside)
    return shutil.which("uv")


def index_url_of(options: InstallOptions, settings: Settings) -> str:
    return options.index_url or settings.index_url or DEFAULT_INDEX_URL


def chosen_index(options: InstallOptions, settings: Settings) -> str | None:
    """The index the user chose (--index-url, --index-url-file, else UV_DEFAULT_INDEX /
    UV_INDEX_URL / PIP_INDEX_URL), or None: PyPI, or no index at all with --find-links alone.
    Its user and password are added to the redactor (also where they appear outside a URL)."""
    index = options.index_url or (None if options.find_links else settings.index_url)
    if index:
        with contextlib.suppress(ValueError):  # not a URL: nothing to add, uv will say so
            parts = urlsplit(index)
            redact.add(parts.password or parts.username)
    return index


def unreachable_index_hint(index: str, settings: Settings) -> str:
    """What to try when the index cannot be reached; never "set HTTPS_PROXY" to someone who has.
    (`index` is named by the caller, masked.)"""
    proxy = (
        f"The proxy in HTTPS_PROXY ({settings.https_proxy}) is used: check it."
        if settings.https_proxy
        else "Behind a proxy? Set HTTPS_PROXY (and HTTP_PROXY)."
    )
    return f"{proxy} Using a mirror? Pass --index-url URL. Offline? Pass --find-links DIR with the wheels."


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
        env = child_environment()
        env["UV_CACHE_DIR"] = env.get("UV_CACHE_DIR") or str(self.paths.uv_cache)
        env["PIP_CACHE_DIR"] = env.get("PIP_CACHE_DIR") or str(self.paths.pip_cache)
        env["UV_PYTHON_INSTALL_DIR"] = str(self.paths.pythons)
        # A Python uv installs stays in there: no python3.x link in ~/.local/bin, no registry entry.
        env["UV_PYTHON_INSTALL_BIN"] = "0"
        env["UV_PYTHON_INSTALL_REGISTRY"] = "0"
        # uv leaves lock files in TMPDIR; they stay in here and go with the command.
        self.paths.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        env["TMPDIR"] = str(self.paths.tmp)
        if not self.settings.ca_from_environment:
            env["UV_SYSTEM_CERTS"] = "1"  # a TLS-inspecting proxy's CA is in the system store
        # An index that stops answering costs at most about 2 x 20 s per request, not uv's 4 x 30 s
        # (unless the user chose otherwise): the first request that fails ends the install.
        env.setdefault("UV_HTTP_TIMEOUT", "20")
        env.setdefault("UV_HTTP_RETRIES", "1")
        env.pop("VIRTUAL_ENV", None)
        return env

    def ensure_python(
        self, progress: Progress, request: str = UV_PYTHON, downloads: Path | None = None
    ) -> str:
        """uv installs Python `request` in the installer's folder and says where it is: from uv's
        usual source, or from `downloads` (a list of Python archives in uv's format: a bundle's)."""
        assert self.uv
        env = self.env()
        if downloads is not None:
            env["UV_PYTHON_DOWNLOADS_JSON_URL"] = str(downloads)
            env.pop("UV_PYTHON_INSTALL_MIRROR", None)  # uv refuses a list whose URLs are not the mirror's
        run_command(
            [self.uv, "python", "install", request],
            env=env,
            progress=progress,
            error_code=ErrorCode.PYTHON_NOT_FOUND,
            what="uv python install",
        )
        # The one just installed, whatever else is on PATH or the user's UV_PYTHON_PREFERENCE says.
        env["UV_PYTHON_PREFERENCE"] = "only-managed"
        return run_command([self.uv, "python", "find", request], env=env, timeout=60).strip()

    def create_venv(self, python: str, target: Path, progress: Progress) -> None:
        if self.uv:
            cmd = [self.uv, "venv", "--quiet", "--python", python, str(target)]
        else:
            cmd = [python, "-I", "-m", "venv", str(target)]
        run_command(
            cmd,
            env=self.env(),
            progress=progress,
            error_code=ErrorCode.PACKAGE_INSTALL_FAILED,
            what="creating TestGen's venv",
        )

    def install_command(
        self, venv: Path, requirement: str, options: InstallOptions, settings: Settings
    ) -> tuple[list[str], dict[str, str]]:
        """The package install's argv and environment. The index goes in the environment, never in
        argv, which every local user can read in /proc (it may carry a token)."""
        env = self.env()
        sources: list[str] = []
        if options.find_links:
            sources += ["--find-links", options.find_links]
            if not options.index_url:
                sources.append("--no-index")
        index = chosen_index(options, settings)
        if index and self.uv:
            env.pop("UV_INDEX_URL", None)  # UV_DEFAULT_INDEX would win anyway; one name is clearer
            env["UV_DEFAULT_INDEX"] = index
        elif index:
            env["PIP_INDEX_URL"] = index
        python = venv_bin(venv, "python")
        if self.uv:
            # Copies, not hardlinks into uv's cache: TestGen patches files of its venv in place
            # (tg-patch-streamlit), which would change the cache and every venv sharing them.
            # -v: uv says nothing on a pipe until it is done; its debug lines show what it does.
            install = [
                "pip",
                "install",
                "-v",
                "--python",
                python,
                "--compile-bytecode",
                "--link-mode",
                "copy",
            ]
            return [self.uv, *install, *sources, requirement], env
        pip = ["-I", "-m", "pip", "install", "--disable-pip-version-check"]
        return [python, *pip, *sources, requirement], env

    def install(
        self, venv: Path, requirement: str, options: InstallOptions, settings: Settings, progress: Progress
    ) -> None:
        cmd, env = self.install_command(venv, requirement, options, settings)
        try:
            run_command(
                cmd,
                env=env,
                progress=progress,
                error_code=ErrorCode.PACKAGE_INSTALL_FAILED,
                what=f"{self.name} install",
                chatter="DEBUG " if self.uv else None,
            )
        except CommandFailed as exc:
            raise classify_install_failure(exc, requirement, options, settings) from None


CUT_SHORT = (
    "failed to read from zip file",  # a wheel cut short reads as a broken zip
    "connection closed before message completed",
    "unexpected end of file",
    "error decoding response body",
    "incomplete message",
    "end of file before message length reached",
    "connection reset",
)
NOT_FOUND = (
    "not found in the package registry",
    "no solution found",
    "could not find a version",
    "no matching distribution",
    "was not found in the provided package locations",
)
NETWORK = (
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


def uv_entries(details: str) -> list[str]:
    """uv's `error:`, `cause:` and `hint:` entries, each unwrapped onto one line (uv wraps long
    ones onto indented continuation lines)."""
    entries: list[str] = []
    for line in details.splitlines():
        text = line.strip()
        if text.startswith(("error:", "cause:", "hint:")) or not entries:
            entries.append(text)
        elif text and line[:1].isspace():
            entries[-1] += " " + text
    return entries


def uv_causes(details: str) -> tuple[str | None, str | None]:
    """(the URL uv failed to fetch, the innermost cause it gives), from its `cause:` entries."""
    url = cause = None
    for entry in uv_entries(details):
        if entry.startswith("cause: Failed to fetch:") and url is None:
            url = entry.split("Failed to fetch:", 1)[1].strip().strip("`")
        elif entry.startswith("cause:"):
            cause = entry.removeprefix("cause:").strip()
    return url, cause


def classify_install_failure(
    exc: CommandFailed, requirement: str, options: InstallOptions, settings: Settings
) -> InstallerError:
    """What went wrong, in words that say what to do, with the engine's own cause in the
    headline: a dead proxy, a download cut short, an index that stopped answering, a version
    that is not there, or an index that cannot be reached."""
    if exc.code is ErrorCode.DISK_FULL:
        return exc
    text = exc.details.lower()
    if options.find_links and not options.index_url:
        index = options.find_links
    else:
        index = index_url_of(options, settings)
    index = redact(index)  # an index URL may carry a user and token
    url, cause = uv_causes(exc.details)
    because = f" ({cause}{f', fetching {url}' if url else ''})" if cause else ""

    def failed(message: str, code: ErrorCode = ErrorCode.INDEX_UNREACHABLE) -> InstallerError:
        return InstallerError(message, code=code, details=exc.details)

    hint = unreachable_index_hint(index, settings)
    proxy = settings.https_proxy
    if "tunnel error" in text or (proxy and "proxy" in text):
        return failed(
            f"Could not reach the package index through the proxy {proxy or 'in HTTPS_PROXY'}{because}. "
            "Check that the proxy runs and lets the index through, or unset HTTPS_PROXY."
        )
    if any(marker in " ".join(uv_entries(text)) for marker in CUT_SHORT):
        hints = [
            entry.removeprefix("hint:").strip()
            for entry in uv_entries(exc.details)
            if entry.startswith("hint:")
        ]
        why = f" ({hints[-1]})" if hints else because
        return failed(f"A download from {index} was cut short or damaged{why}. Run the same command again.")
    if "timed out" in text:
        return failed(f"The package index {index} stopped answering{because}. {hint}")
    if any(marker in text for marker in NOT_FOUND):
        return failed(
            f"{requirement} is not available from {index}. Check --version, or point --index-url / "
            "--find-links at a source that has it.",
            ErrorCode.PACKAGE_NOT_FOUND,
        )
    if any(marker in text for marker in NETWORK):
        return failed(f"Could not reach the package index {index}{because}. {hint}")
    return failed(f"Installing {requirement} failed{because}.", ErrorCode.PACKAGE_INSTALL_FAILED)
