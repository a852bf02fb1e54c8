"""The package engine when the index misbehaves (issue 15, item 9): an index that stops answering,
a download cut short and a dead proxy each end within about two minutes, exit 1, and say what
happened with uv's own cause in the headline; and a full disk (item 10) is said as such, with where
and how much, and the cache the failed install made is gone."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Sandbox

from dk_installer.config import InstallOptions, Settings
from dk_installer.engine import classify_install_failure, uv_causes
from dk_installer.errors import CommandFailed, ErrorCode

DEBUG = {"DK_INSTALLER_ANALYTICS": None, "DK_INSTALLER_ANALYTICS_DEBUG": "1", "NO_PROXY": "", "no_proxy": ""}


class Index(http.server.ThreadingHTTPServer):
    """A PEP 503 index on 127.0.0.1 for the stand-in's wheels that misbehaves on the wheel files:
    `hang` never answers them, `cut` sends part of one and closes."""

    daemon_threads = True

    def __init__(self, wheelhouse: Path, fault: str) -> None:
        self.wheelhouse, self.fault, self.stop_hanging = wheelhouse, fault, threading.Event()
        super().__init__(("127.0.0.1", 0), IndexHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/simple"


class IndexHandler(http.server.BaseHTTPRequestHandler):
    server: Index
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/simple/dataops-testgen":
            links = "".join(
                f'<a href="/files/{wheel.name}">{wheel.name}</a>\n'
                for wheel in self.server.wheelhouse.iterdir()
            )
            body = f"<html><body>{links}</body></html>".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.server.fault == "hang":
            self.server.stop_hanging.wait(300)
        else:
            data = (self.server.wheelhouse / Path(self.path).name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(data[: len(data) // 3])
            self.wfile.flush()
            self.close_connection = True


@contextlib.contextmanager
def index(wheelhouse: Path, fault: str) -> Iterator[Index]:
    server = Index(wheelhouse, fault)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop_hanging.set()
        server.shutdown()
        server.server_close()


def event(stderr: str) -> dict:
    return json.loads(stderr.split("analytics debug (not sent): ")[-1].splitlines()[0])["properties"]


@pytest.mark.parametrize("fault", ["hang", "cut"])
def test_an_index_that_fails_mid_install_is_named_with_uvs_cause(sandbox: Sandbox, fault: str) -> None:
    with index(sandbox.wheelhouse, fault) as server:
        started = time.monotonic()
        result = sandbox.run(
            "install", "--no-demo", "--no-browser", "--index-url", server.url,
            "--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port),
            env=DEBUG, timeout=240,
        )  # fmt: skip
        took = time.monotonic() - started
    headline = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert result.returncode == 1, result.stdout + result.stderr
    expected = "stopped answering (operation timed out" if fault == "hang" else "was cut short or damaged ("
    assert expected in headline, headline
    assert "/files/dataops_testgen-" in headline or "Failed to read from zip file" in headline, headline
    assert "not available" not in headline
    props = event(result.stderr)
    assert (props["error_code"], props["failed_step"]) == ("index_unreachable", "install_package")
    assert not (sandbox.home / "testgen").exists() and not (sandbox.home / "cache").exists()
    print(f"{fault}: gave up after {took:.0f}s")


def test_a_dead_proxy_is_named_and_setting_one_is_not_suggested(sandbox: Sandbox) -> None:
    with index(sandbox.wheelhouse, "cut") as server:
        proxy = {
            "HTTPS_PROXY": "http://user:secret@127.0.0.1:9",
            "HTTP_PROXY": "http://user:secret@127.0.0.1:9",
        }
        result = sandbox.run(*sandbox.install_args("--index-url", server.url), env={**DEBUG, **proxy})
    assert result.returncode == 1, result.stdout + result.stderr
    output = result.stdout + result.stderr
    assert "HTTPS_PROXY (http://[REDACTED]@127.0.0.1:9)" in output and "secret" not in output
    assert "Set HTTPS_PROXY" not in output


def test_uv_failures_are_told_apart() -> None:
    """uv's messages as it prints them (read off uv 0.13.9 against the servers above)."""
    timed_out = (
        "error: Request failed after 1 retry in 21.2s\n"
        "  cause: Failed to fetch: http://127.0.0.1:1/files/dataops_testgen-5.1.0-py3-none-any.whl\n"
        "  cause: error sending request for url (http://127.0.0.1:1/files/x.whl)\n"
        "  cause: operation timed out"
    )
    proxy = (
        "  cause: Failed to fetch: https://pypi.org/simple/dataops-testgen/\n"
        "  cause: client error (Connect)\n  cause: tunnel error: failed to create underlying connection\n"
        "  cause: Connection refused (os error 111)"
    )
    assert uv_causes(timed_out) == (
        "http://127.0.0.1:1/files/dataops_testgen-5.1.0-py3-none-any.whl",
        "operation timed out",
    )
    options = InstallOptions(index_url="http://127.0.0.1:1/simple")
    with_proxy = Settings(https_proxy="http://[REDACTED]@proxy:3128")

    def classify(details: str, settings: Settings | None = None) -> tuple[ErrorCode, str]:
        failure = CommandFailed("uv failed", details=details)
        error = classify_install_failure(failure, "x", options, settings or Settings())
        return error.code, error.message

    assert classify(timed_out)[0] is ErrorCode.INDEX_UNREACHABLE
    assert "stopped answering (operation timed out, fetching http://" in classify(timed_out)[1]
    assert "through the proxy http://[REDACTED]@proxy:3128" in classify(proxy, with_proxy)[1]
    assert "Set HTTPS_PROXY" in classify("cause: dns error")[1]
    assert "Set HTTPS_PROXY" not in classify("cause: dns error", with_proxy)[1]
    assert classify("No solution found when resolving")[0] is ErrorCode.PACKAGE_NOT_FOUND
    full = CommandFailed("uv failed: no space left on device.", code=ErrorCode.DISK_FULL)
    assert classify_install_failure(full, "x", options, Settings()) is full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MB file system: room for the stand-in's venv and cache, not for its database."""
    if os.getuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_said_with_where_and_how_much_and_the_disk_is_left_as_found(
    sandbox: Sandbox, small_disk: Path
) -> None:
    home = small_disk / "dk-home"
    env = {
        **DEBUG,
        "DK_INSTALLER_HOME": str(home),
        "DK_INSTALLER_MIN_FREE_BYTES": "0",
        "UV_CACHE_DIR": None,  # the installer's own cache, on the small disk
        "FAKE_TESTGEN_INITDB_MB": "8",
    }
    used_before = os.statvfs(small_disk)
    result = sandbox.run(*sandbox.install_args("--no-demo"), env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    headline = next(line for line in result.stderr.splitlines() if line.startswith("Error:"))
    assert "no space left on device" in headline and f"MB are free under {home}" in headline, headline
    props = event(result.stderr)
    assert (props["error_code"], props["failed_step"]) == ("disk_full", "configure")
    assert not (home / "cache").exists() and not (home / "testgen").exists()
    used_after = os.statvfs(small_disk)
    # What is left is the run's log and the installer's bookkeeping, a few KB.
    assert (used_before.f_bfree - used_after.f_bfree) * used_after.f_frsize < 200 * 1024
