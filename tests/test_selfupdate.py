"""self-update from a local HTTPS mirror (a trustme CA that only these tests trust): a newer
build, the same build, and every way a download can go wrong, each leaving the old installer."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme
from conftest import INSTALLER, ROOT, Sandbox, bare_python

from dk_installer import __version__
from dk_installer.bootstrap import RUNTIME_RECEIPT, RUNTIME_REQUIREMENTS
from dk_installer.config import INSTALLER_BASE_URL

pytestmark = pytest.mark.single_file  # end-to-end: the downloaded file, as users run it

NEWER = "9.9.9"
BUILD_ID = re.compile(r"^BUILD_ID = '([0-9a-f]+)'$", re.M)


def make_build(root: Path, version: str, edit: dict[str, tuple[str, str]] | None = None) -> Path:
    """A real dk_installer.py built by build.py from a copy of src/ with another __version__ (and
    any other edits: file -> (old, new)), as a release would be."""
    shutil.copytree(ROOT / "src", root / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copy(ROOT / "build.py", root)
    init = root / "src/dk_installer/__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"', f'__version__ = "{version}"'))
    for name, (old, new) in (edit or {}).items():
        path = root / "src/dk_installer" / name
        assert old in path.read_text()
        path.write_text(path.read_text().replace(old, new))
    subprocess.run([sys.executable, str(root / "build.py")], check=True, capture_output=True, cwd=root)
    return root / "dk_installer.py"


@pytest.fixture(scope="session")
def newer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_build(tmp_path_factory.mktemp("newer"), NEWER)


class Mirror:
    """An HTTPS server on 127.0.0.1 serving `files` (path -> bytes); `cut` paths send half the
    body they announce and close the connection."""

    def __init__(self, tmp_path: Path) -> None:
        ca = trustme.CA()
        # The system's CAs and the test CA, as a corporate bundle would be: pip still reaches the
        # real index when the new file's runtime is rebuilt.
        self.ca_file = tmp_path / "mirror-ca.pem"
        self.ca_file.write_bytes(
            Path(ssl.get_default_verify_paths().cafile or "").read_bytes() + ca.cert_pem.bytes()
        )
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self.files: dict[str, bytes] = {}
        self.cut: set[str] = set()
        self.requested: list[str] = []
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                mirror.requested.append(self.path)
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in mirror.cut:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/release"

    def publish(self, installer: Path, checksum: str | None = None) -> None:
        data = installer.read_bytes()
        self.files["/release/dk_installer.py"] = data
        self.files["/release/dk_installer.py.sha256"] = (
            checksum if checksum is not None else f"{hashlib.sha256(data).hexdigest()}  dk_installer.py\n"
        ).encode()

    def env(self) -> dict[str, str | None]:
        return {
            "DK_INSTALLER_BASE_URL": self.url,
            "REQUESTS_CA_BUNDLE": str(self.ca_file),
            "SSL_CERT_FILE": str(self.ca_file),
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    served = Mirror(tmp_path)
    yield served
    served.close()


def saved_copy(sandbox: Sandbox) -> Path:
    """The installer as install.sh leaves it: saved in DK_INSTALLER_HOME."""
    copy = sandbox.home / "dk_installer.py"
    sandbox.home.mkdir(parents=True, exist_ok=True)
    shutil.copy(INSTALLER, copy)
    return copy


def leftovers(sandbox: Sandbox) -> list[str]:
    return sorted(p.name for p in sandbox.home.glob("*") if ".new" in p.name or p.name.endswith(".keep"))


def test_the_default_mirror_is_install_sh_s() -> None:
    install_sh = (ROOT / "install.sh").read_text()
    assert f"printf '%s\\n' \"{INSTALLER_BASE_URL}\"" in install_sh


def test_check_says_a_newer_one_is_there_and_changes_nothing(
    sandbox: Sandbox, mirror: Mirror, newer: Path
) -> None:
    copy = saved_copy(sandbox)
    mirror.publish(newer)
    result = sandbox.run("self-update", "--check", env=mirror.env())
    assert result.returncode == 0, result.stderr
    assert f"A newer dk-installer is available: {NEWER} (this is {__version__})" in result.stdout
    assert copy.read_bytes() == INSTALLER.read_bytes()
    assert leftovers(sandbox) == []


def test_same_build_is_up_to_date(sandbox: Sandbox, mirror: Mirror) -> None:
    copy = saved_copy(sandbox)
    before = copy.stat().st_mtime_ns
    mirror.publish(INSTALLER)
    for args in (["self-update", "--check"], ["self-update"]):
        result = sandbox.run(*args, env=mirror.env())
        assert result.returncode == 0, result.stderr
        assert f"dk-installer {__version__} is up to date" in result.stdout
    assert copy.stat().st_mtime_ns == before
    assert mirror.requested == ["/release/dk_installer.py.sha256", "/release/dk_installer.py"] * 2


def test_newer_build_replaces_the_saved_copy(sandbox: Sandbox, mirror: Mirror, newer: Path) -> None:
    """Without a runtime (this Python has the runtime's packages), the launcher and the service
    run the saved copy: swapping it is the whole update."""
    copy = saved_copy(sandbox)
    mirror.publish(newer)
    result = sandbox.run("self-update", env=mirror.env())
    assert result.returncode == 0, result.stderr
    assert f"dk-installer {__version__} -> {NEWER}" in result.stdout
    assert copy.read_bytes() == newer.read_bytes()
    assert leftovers(sandbox) == []
    version = subprocess.run([sys.executable, str(copy), "--version"], capture_output=True, text=True)
    assert version.stdout == f"dk-installer {NEWER}\n"


def a_file_that_does_not_run(tmp_path: Path) -> Path:
    """Published with a matching checksum, but its --version fails."""
    broken = tmp_path / "broken" / "dk_installer.py"
    broken.parent.mkdir()
    text = INSTALLER.read_text().replace(
        'if __name__ == "__main__":\n', 'if __name__ == "__main__":\n    raise SystemExit(1)\n'
    )
    broken.write_text(text.replace(f'__version__ = "{__version__}"', f'__version__ = "{NEWER}"'))
    return broken


FAILURES = {
    "bad checksum": ("checksum_mismatch", "Checksum mismatch for"),
    "cut download": ("download_failed", "Could not download"),
    "installer 404": ("download_failed", "HTTP 404"),
    "checksum 404": ("download_failed", "HTTP 404"),
    "not a checksum": ("checksum_mismatch", "not a SHA-256 value"),
    "does not run": ("update_failed", "The new dk_installer.py's --version failed (exit code 1)"),
    "plain http": ("download_failed", "Refusing to download from http://example.com"),
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_every_failure_keeps_the_old_installer(
    sandbox: Sandbox, mirror: Mirror, newer: Path, tmp_path: Path, failure: str
) -> None:
    copy = saved_copy(sandbox)
    mirror.publish(newer)
    env = {**mirror.env(), "DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1"}
    if failure == "bad checksum":
        mirror.publish(newer, checksum=f"{hashlib.sha256(b'other').hexdigest()}  dk_installer.py\n")
    elif failure == "cut download":
        mirror.cut.add("/release/dk_installer.py")
    elif failure == "installer 404":
        del mirror.files["/release/dk_installer.py"]
    elif failure == "checksum 404":
        del mirror.files["/release/dk_installer.py.sha256"]
    elif failure == "not a checksum":
        mirror.publish(newer, checksum="<html>not found</html>\n")
    elif failure == "does not run":
        mirror.publish(a_file_that_does_not_run(tmp_path))
    elif failure == "plain http":
        env["DK_INSTALLER_BASE_URL"] = "http://example.com/release"
    result = sandbox.run("self-update", env=env)
    code, message = FAILURES[failure]
    assert result.returncode == 1, result.stdout + result.stderr
    assert message in result.stderr and "The installer was not changed." in result.stderr
    assert copy.read_bytes() == INSTALLER.read_bytes()
    assert leftovers(sandbox) == []
    [event] = [
        json.loads(line.split(": ", 1)[1]) for line in result.stderr.splitlines() if "analytics debug" in line
    ]
    assert (event["event"], event["properties"]["error_code"]) == ("self_update", code)


def runtime_package(sandbox: Sandbox) -> Path:
    [package] = (sandbox.home / "runtime").glob("lib/python3*/site-packages/dk_installer")
    return package


def test_launcher_runs_the_new_code_and_a_failed_runtime_keeps_the_old(
    sandbox: Sandbox, mirror: Mirror, newer: Path, tmp_path: Path
) -> None:
    """The real layout of a curl | sh user: a bare Python 3.9, the runtime venv, the launcher on
    PATH running the runtime's package. A new file whose pins cannot be installed fails and leaves
    everything as it was; a newer build with changed pins rebuilds the runtime, and the launcher
    then runs the new code."""
    python = bare_python()
    # The runtime from the index first (an install's --find-links would be its only source).
    status = subprocess.run(
        [python, str(INSTALLER), "status"], env=sandbox.env, capture_output=True, text=True, timeout=600
    )
    assert status.returncode == 0, status.stderr
    built = subprocess.run(
        [python, str(INSTALLER), *sandbox.install_args("--no-demo", "--no-start")],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    launcher = sandbox.user_home / ".local/bin/dk-installer"
    assert "-m dk_installer" in launcher.read_text()  # the runtime's package, not a file
    old_build = (runtime_package(sandbox) / "BUILD").read_text()
    old_package = {
        p.relative_to(runtime_package(sandbox)): p.read_bytes()
        for p in runtime_package(sandbox).rglob("*.py")
    }

    def launch(*args: str, **extra: str | None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(launcher), *args],
            env=sandbox.merged_env({**mirror.env(), **extra}),
            capture_output=True,
            text=True,
            timeout=600,
        )

    # Pins no index has: the runtime cannot be rebuilt, so nothing changes.
    unbuildable = make_build(
        tmp_path / "unbuildable",
        "9.9.8",
        {"bootstrap.py": ('    "click==8.1.8",\n', '    "click==0.0.1",\n')},
    )
    mirror.publish(unbuildable)
    failed = launch("self-update")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "The installer was not changed." in failed.stderr
    assert not (sandbox.home / "dk_installer.py").exists()
    assert (runtime_package(sandbox) / "BUILD").read_text() == old_build
    assert {
        p.relative_to(runtime_package(sandbox)): p.read_bytes()
        for p in runtime_package(sandbox).rglob("*.py")
    } == old_package
    assert launch("--version").stdout == f"dk-installer {__version__}\n"
    assert leftovers(sandbox) == [] and not (sandbox.home / "runtime.staging").exists()

    # A newer build, and a runtime whose pins differ from it (as when a release changes them).
    receipt = sandbox.home / "runtime" / RUNTIME_RECEIPT
    receipt.write_text("click==8.1.8\n")
    mirror.publish(newer)
    check = launch("self-update", "--check")
    assert f"A newer dk-installer is available: {NEWER}" in check.stdout, check.stderr
    updated = launch("self-update")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert receipt.read_text().splitlines() == list(RUNTIME_REQUIREMENTS)
    assert (sandbox.home / "dk_installer.py").read_bytes() == newer.read_bytes()
    new_build = BUILD_ID.search(newer.read_text())
    assert new_build and (runtime_package(sandbox) / "BUILD").read_text() == new_build.group(1)
    assert launch("--version").stdout == f"dk-installer {NEWER}\n"
    assert f"dk-installer {NEWER} is up to date" in launch("self-update", "--check").stdout
    # The service runs the same command as the launcher: the runtime's (now new) package.
    unit = launch("service", "enable", "--print")
    [exec_start] = [line for line in unit.stdout.splitlines() if line.startswith("ExecStart=")]
    runtime_python = str(sandbox.home / "runtime" / "bin" / "python")
    assert shlex.split(exec_start.removeprefix("ExecStart="))[-5:] == [
        runtime_python,
        "-I",
        "-m",
        "dk_installer",
        "run",
    ]
    assert leftovers(sandbox) == []
