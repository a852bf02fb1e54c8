"""Requirements, as preflight and doctor check them: Python for TestGen, a writable home, free disk,
free ports, a reachable package index; and how failed checks are reported."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from dk_installer.bootstrap import EXIT_REQUIREMENTS, home_path_problem
from dk_installer.config import mask_userinfo
from dk_installer.engine import (
    UV_PYTHON,
    _probe_python,
    child_environment,
    find_uv,
    index_url_of,
    unreachable_index_hint,
)
from dk_installer.errors import ErrorCode, InstallerError
from dk_installer.net import port_free, port_holder
from dk_installer.runner import probe, redact
from dk_installer.testgen.config import PACKAGE, TESTGEN_MIN_PYTHON
from dk_installer.tls import https_verify

if TYPE_CHECKING:
    from dk_installer.config import InstallOptions, Settings
    from dk_installer.console import Console
    from dk_installer.paths import Paths


@dataclasses.dataclass
class Requirement:
    """One preflight or doctor check; `code` is the error code it stands for when it fails."""

    code: ErrorCode
    title: str
    ok: bool
    detail: str
    blocking: bool = True


@dataclasses.dataclass
class PythonCheck(Requirement):
    """The Python check also says which interpreter it found (None: uv will download one)."""

    interpreter: str | None = None
    version: str | None = None


class RequirementsNotMet(InstallerError):
    def __init__(self, failed: list[Requirement]) -> None:
        lines = "\n".join(f"  - {r.title}: {r.detail}" for r in failed)
        super().__init__(f"Requirements not met:\n{lines}", code=failed[0].code, exit_code=EXIT_REQUIREMENTS)
        self.failed = failed


def find_testgen_python(explicit: str | None) -> PythonCheck:
    """--python if given, else the newest python3.1x on PATH, else uv's own interpreters."""
    needed = ".".join(map(str, TESTGEN_MIN_PYTHON))
    title = f"Python {needed}+ for TestGen"

    def found_ok(path: str, version: tuple[int, ...]) -> PythonCheck:
        shown = ".".join(map(str, version))
        return PythonCheck(
            ErrorCode.PYTHON_NOT_FOUND, title, True, f"{path} ({shown})", interpreter=path, version=shown
        )

    candidates = [explicit] if explicit else ["python3.13", "python3.12", "python3.11", "python3"]
    too_old: list[str] = []
    # Probed side by side: a pyenv shim takes a good part of a second to answer, and most users'
    # PATH has several (the first working one in this order still wins).
    from concurrent.futures import ThreadPoolExecutor

    # Names in one folder that lead to one interpreter (python3 -> python3.11) answer alike:
    # each interpreter is started once.
    resolved = [shutil.which(name) if os.sep not in name else name for name in candidates]
    keys = [(os.path.dirname(path), os.path.realpath(path)) if path else None for path in resolved]
    unique = {key: path for key, path in zip(keys, resolved) if key is not None}
    with ThreadPoolExecutor(max_workers=max(len(unique), 1)) as pool:
        answers = dict(zip(unique, pool.map(_probe_python, unique.values())))
    probes = [answers[key] if key is not None else None for key in keys]
    for candidate, found in zip(candidates, probes):
        if not found:
            continue
        if found[1][:2] >= TESTGEN_MIN_PYTHON:
            return found_ok(*found)
        too_old.append(f"{candidate} is {'.'.join(map(str, found[1]))}")
    if explicit:
        if too_old:
            return PythonCheck(
                ErrorCode.PYTHON_TOO_OLD, title, False, f"--python {too_old[0]}; TestGen needs {needed}+"
            )
        return PythonCheck(
            ErrorCode.PYTHON_NOT_FOUND, title, False, f"--python {explicit} is not a working interpreter"
        )
    uv = find_uv()
    if uv:
        try:
            out = probe([uv, "python", "find", f">={needed}"], timeout=30, env=child_environment())
            path = out.stdout.strip() if out.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            path = ""
        found = _probe_python(path) if path else None
        if found:
            return found_ok(*found)
        return PythonCheck(
            ErrorCode.PYTHON_NOT_FOUND, title, True, f"none found; uv will download Python {UV_PYTHON}"
        )
    detail = "; ".join(too_old) if too_old else "no python3.11, 3.12 or 3.13 on PATH"
    code = ErrorCode.PYTHON_TOO_OLD if too_old else ErrorCode.PYTHON_NOT_FOUND
    return PythonCheck(code, title, False, f"{detail}. Install Python {needed}+ or pass --python PATH")


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_disk(paths: Paths, settings: Settings) -> Requirement:
    existing = _nearest_existing(paths.home)
    free = shutil.disk_usage(existing).free
    needed = settings.min_free_bytes
    return Requirement(
        ErrorCode.DISK_FULL,
        "Free disk space",
        free >= needed,
        f"{free / 1024**3:.1f} GB free under {existing}, {needed / 1024**3:.1f} GB needed",
    )


def check_home_writable(paths: Paths) -> Requirement:
    """A home TestGen can use: a path its PostgreSQL takes (the bootstrap's rule, which a first
    run applies before building the runtime there), in a folder this user can write."""
    problem = home_path_problem(str(paths.home))
    if problem:
        return Requirement(ErrorCode.HOME_NOT_WRITABLE, "Installer home path", False, problem)
    existing = _nearest_existing(paths.home)
    ok = os.access(existing, os.W_OK | os.X_OK) and existing.is_dir()
    detail = f"{paths.home}" + (
        ""
        if ok
        else f" cannot be created or written ({existing} is not a writable folder). "
        "Set DK_INSTALLER_HOME to a folder you can write."
    )
    return Requirement(ErrorCode.HOME_NOT_WRITABLE, "Installer home writable", ok, detail)


def check_ports(
    ui_port: int, api_port: int, *, ours_running: bool = False, at_install: bool = True
) -> list[Requirement]:
    """The UI and API ports: free, or used by this TestGen (`ours_running`). A port someone else
    holds is named with its holder, and the remedy is the one this command offers: other ports
    at install (`at_install`), else stopping the holder."""
    checks = []
    for port, option, part in ((ui_port, "--port", "UI"), (api_port, "--api-port", "API")):
        title = f"{part} port {port}"
        if ours_running:
            checks.append(Requirement(ErrorCode.PORT_IN_USE, title, True, "used by this TestGen"))
            continue
        if port_free(port):
            checks.append(Requirement(ErrorCode.PORT_IN_USE, title, True, "free"))
            continue
        holder = port_holder(port)
        remedy = (
            f"pick another with {option}"
            if at_install
            else f"stop what holds it (TestGen was installed to use port {port})"
        )
        detail = f"already in use{f' by {holder}' if holder else ''}; {remedy}"
        checks.append(Requirement(ErrorCode.PORT_IN_USE, title, False, detail))
    return checks


def check_index(options: InstallOptions, settings: Settings) -> Requirement:
    title = "Package index reachable"
    if options.find_links and not options.index_url:
        return Requirement(
            ErrorCode.INDEX_UNREACHABLE,
            title,
            True,
            f"skipped: installing from {options.find_links}",
            blocking=False,
        )
    import requests

    index = index_url_of(options, settings)
    url = f"{index.rstrip('/')}/{PACKAGE}/"
    shown = redact(index)  # a token in the URL is never printed
    try:
        response = requests.get(
            url, timeout=(5, 10), headers={"Accept": "text/html"}, verify=https_verify(settings)
        )
    except requests.RequestException as exc:
        return Requirement(
            ErrorCode.INDEX_UNREACHABLE,
            title,
            False,
            f"Could not reach the package index {mask_userinfo(index)} ({type(exc).__name__}). "
            + unreachable_index_hint(index, settings),
            blocking=False,
        )
    if response.status_code == 404:
        return Requirement(
            ErrorCode.PACKAGE_NOT_FOUND,
            title,
            False,
            f"{shown} has no package '{PACKAGE}'. Pass --index-url with an index that has it.",
            blocking=False,
        )
    if response.status_code >= 400:
        return Requirement(
            ErrorCode.INDEX_UNREACHABLE,
            title,
            False,
            f"{mask_userinfo(index)} answered HTTP {response.status_code}. "
            + unreachable_index_hint(index, settings),
            blocking=False,
        )
    return Requirement(ErrorCode.INDEX_UNREACHABLE, title, True, shown, blocking=False)


def report_requirements(console: Console, checks: list[Requirement]) -> None:
    width = max(len(c.title) for c in checks)
    for check in checks:
        mark = console.style("ok  ", fg="green") if check.ok else console.style("FAIL", fg="red", bold=True)
        console.say(f"  {mark} {check.title:<{width}}  {check.detail}")
