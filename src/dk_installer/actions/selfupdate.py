"""self-update: the newest dk_installer.py from where install.sh gets it (DK_INSTALLER_BASE_URL),
checked against its published SHA-256, run once before it counts (its runtime prepared, its
package in the runtime), then swapped in whole over the installer's saved copy. The old
installer stays on any failure."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer import __version__
from dk_installer.bootstrap import PACKAGE_STAMP, REFRESH_RUNTIME, venv_bin
from dk_installer.copies import single_file
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.runner import run_command
from dk_installer.tls import https_verify
from dk_installer.versions import is_newer

if TYPE_CHECKING:
    from dk_installer.config import Settings
    from dk_installer.steps.base import ActionContext

MAX_INSTALLER_BYTES = 16 * 1024**2  # today's file is about 0.3 MB
MAX_REDIRECTS = 5
BUILD_ID_LINE = re.compile(r"^BUILD_ID = '([0-9a-f]+)'$", re.M)
VERSION_LINE = re.compile(r'^__version__ = "([^"]+)"$', re.M)
NOT_CHANGED = "The installer was not changed."


def allowed_url(url: str) -> bool:
    """install.sh's rule: https anywhere; plain http only for 127.0.0.1, localhost and [::1]."""
    import urllib.parse

    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def refused_url(url: str) -> InstallerError:
    return InstallerError(
        f"Refusing to download from {url}: only https:// URLs are allowed (plain http only for "
        f"127.0.0.1 and localhost). {NOT_CHANGED}",
        code=ErrorCode.DOWNLOAD_FAILED,
    )


def fetch(url: str, settings: Settings) -> bytes:
    """The body of `url`, whole: redirects are followed only to allowed URLs, and a body cut
    short (fewer bytes than announced) is an error, not a shorter file."""
    import urllib.parse

    import requests

    session = requests.Session()
    verify = https_verify(settings)
    try:
        for _ in range(MAX_REDIRECTS + 1):
            if not allowed_url(url):
                raise refused_url(url)
            with session.get(
                url, stream=True, allow_redirects=False, timeout=(15, 60), verify=verify
            ) as reply:
                if reply.is_redirect:
                    url = urllib.parse.urljoin(url, reply.headers["location"])
                    continue
                if reply.status_code != 200:
                    raise InstallerError(
                        f"Could not download {url}: HTTP {reply.status_code}. {NOT_CHANGED}",
                        code=ErrorCode.DOWNLOAD_FAILED,
                    )
                body = bytearray()
                for chunk in reply.iter_content(64 * 1024):
                    body += chunk
                    if len(body) > MAX_INSTALLER_BYTES:
                        raise InstallerError(
                            f"{url} is larger than {MAX_INSTALLER_BYTES // 1024**2} MB: not an installer. "
                            + NOT_CHANGED,
                            code=ErrorCode.DOWNLOAD_FAILED,
                        )
                return bytes(body)
        raise InstallerError(f"Too many redirects from {url}. {NOT_CHANGED}", code=ErrorCode.DOWNLOAD_FAILED)
    except requests.RequestException as exc:
        raise InstallerError(
            f"Could not download {url} ({type(exc).__name__}). Behind a proxy? Set HTTPS_PROXY. "
            + NOT_CHANGED,
            code=ErrorCode.DOWNLOAD_FAILED,
            details=str(exc),
        ) from None
    finally:
        session.close()


def published_sha256(text: str) -> str:
    """The SHA-256 in a checksum file: sha256sum's `<hex>  dk_installer.py`, or a bare hex."""
    line = next((line for line in text.splitlines() if line.strip()), "")
    words = line.split()
    digest = words[0].lower() if words else ""
    named = words[1].lstrip("*") if len(words) > 1 else "dk_installer.py"
    if not re.fullmatch(r"[0-9a-f]{64}", digest) or named.removeprefix("./") != "dk_installer.py":
        raise InstallerError(
            f"The published checksum is not a SHA-256 value for dk_installer.py. {NOT_CHANGED}",
            code=ErrorCode.CHECKSUM_MISMATCH,
        )
    return digest


def current_build() -> str | None:
    """This installer's build id: from the single file it runs from, else the runtime's stamp."""
    source = single_file()
    if source is not None:
        with contextlib.suppress(OSError):
            found = BUILD_ID_LINE.search(Path(source).read_text(encoding="utf-8"))
            return found.group(1) if found else None
        return None
    package = Path(sys.modules["dk_installer"].__file__ or "").parent
    try:
        return (package / PACKAGE_STAMP).read_text().strip()
    except OSError:
        return None  # a package install (pip install dk-installer): no build id


def self_update_action(ctx: ActionContext, check_only: bool) -> None:
    paths, settings, console = ctx.paths, ctx.settings, ctx.console
    base = settings.installer_base_url
    if not allowed_url(base):
        raise refused_url(base)
    with console.step("Download dk_installer.py") as progress:
        expected = published_sha256(
            fetch(f"{base}/dk_installer.py.sha256", settings).decode(errors="replace")
        )
        data = fetch(f"{base}/dk_installer.py", settings)
        actual = hashlib.sha256(data).hexdigest()
        if actual != expected:
            raise InstallerError(
                f"Checksum mismatch for {base}/dk_installer.py (expected {expected}, got {actual}): the "
                f"download is incomplete or was tampered with. {NOT_CHANGED}",
                code=ErrorCode.CHECKSUM_MISMATCH,
            )
        text = data.decode("utf-8", errors="replace")
        found_build, found_version = BUILD_ID_LINE.search(text), VERSION_LINE.search(text)
        if not (found_build and found_version):
            raise InstallerError(
                f"{base}/dk_installer.py is not a dk-installer build. {NOT_CHANGED}",
                code=ErrorCode.UPDATE_FAILED,
            )
        new_build, new_version = found_build.group(1), found_version.group(1)
        progress.result = f"{new_version} (build {new_build}), {len(data) / 1024:.0f} KB, checksum OK"
    build = current_build()
    saved = paths.installer_copy
    saved_current = saved.exists() and hashlib.sha256(saved.read_bytes()).hexdigest() == actual
    if new_build == build and (check_only or saved_current):
        console.say(f"dk-installer {__version__} is up to date (build {build}, {base}).")
        return
    if check_only:
        if is_newer(new_version, __version__):
            console.say(
                f"A newer dk-installer is available: {new_version} (this is {__version__}). "
                f"Update with `{ctx.self_command()} self-update`."
            )
        else:
            console.say(
                f"The published dk-installer ({new_version}, build {new_build}) differs from this one "
                f"({__version__}, build {build or 'unknown'}); "
                f"`{ctx.self_command()} self-update` installs it."
            )
        return
    install_new_file(ctx, data, new_version)
    console.say(f"dk-installer {__version__} -> {new_version}: {saved} is the new installer.")
    if paths.systemd_unit.exists() or paths.launchd_plist.exists():
        console.say("TestGen's service runs the new installer from its next start.")


def install_new_file(ctx: ActionContext, data: bytes, new_version: str) -> None:
    """Stage the verified file beside the saved copy, run it (its --version, then its runtime),
    and only then rename it over the saved copy; the staged file goes on any failure."""
    paths = ctx.paths
    paths.home.mkdir(parents=True, exist_ok=True)
    staged = paths.home / f".dk_installer.py.{os.getpid()}.new"
    # Children run the new file as a user would: not as the old file's hand-over.
    handed_over = ("DK_INSTALLER_BOOTSTRAPPED", "DK_INSTALLER_PYTHON", "DK_INSTALLER_SCRIPT")
    env = {k: v for k, v in os.environ.items() if k not in handed_over}
    try:
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with ctx.console.step("Run the new installer") as progress:
            answer = run_command(
                [sys.executable, str(staged), "--version"],
                env=env,
                timeout=120,
                error_code=ErrorCode.UPDATE_FAILED,
                what="The new dk_installer.py's --version",
            )
            if answer.strip() != f"dk-installer {new_version}":
                raise InstallerError(
                    f"The new dk_installer.py answered {answer.strip()[:80]!r} to --version. {NOT_CHANGED}",
                    code=ErrorCode.UPDATE_FAILED,
                )
            progress.result = answer.strip()
        if (paths.runtime / "bin" / "python").exists():
            with ctx.console.step("Prepare the runtime for the new installer") as progress:
                # The runtime's own base interpreter (its venv's python links to it) runs the new
                # file's bootstrap, which rebuilds the runtime if its pins changed and puts its
                # package in: the launcher and the service run that package directly.
                python = os.path.realpath(venv_bin(paths.runtime, "python"))
                run_command(
                    [python, str(staged), REFRESH_RUNTIME],
                    env=env,
                    progress=progress,
                    error_code=ErrorCode.UPDATE_FAILED,
                    what="Preparing the runtime for the new dk_installer.py",
                )
        os.replace(staged, paths.installer_copy)
    except InstallerError as exc:
        if NOT_CHANGED not in exc.message:
            exc.message = f"{exc.message.rstrip('.')}. {NOT_CHANGED}"
        raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
