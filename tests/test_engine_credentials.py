"""The package engine (uv or pip). Issue 15, item 5: a package index's credentials are never in a
command line, a log, the support zip or a message; the index may come from a file or the
environment. Item 11: TestGen's venvs share no file with uv's cache or with each other."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import pytest
from conftest import (
    INSTALLER,
    Sandbox,
    build_fake_wheel,
    build_wheel,
    free_port,
    processes_mentioning,
    wait_for_line,
)
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from dk_installer.config import InstallOptions, Settings
from dk_installer.engine import PackageEngine
from dk_installer.paths import Paths

USER = "ci-reader"
TOKEN = "tok-" + hashlib.sha256(str(time.time()).encode()).hexdigest()[:20]


@pytest.mark.parametrize("engine", ["uv", "pip"])
def test_install_command_keeps_the_index_out_of_argv(tmp_path: Path, engine: str) -> None:
    """/proc/<pid>/cmdline is readable by every local user; the environment only by this one."""
    index = f"https://{USER}:{TOKEN}@mirror.example/simple"
    paths = Paths(home=tmp_path / "home", config=tmp_path / "config")
    packages = PackageEngine(engine, "/opt/uv" if engine == "uv" else None, paths, Settings())
    for options, settings in (
        (InstallOptions(index_url=index), Settings()),
        (InstallOptions(), Settings(index_url=index)),  # UV_INDEX_URL or PIP_INDEX_URL
        (InstallOptions(index_url=index, find_links="/wheels"), Settings()),
    ):
        cmd, env = packages.install_command(tmp_path / "venv", "dataops-testgen", options, settings)
        assert not any(TOKEN in part or "mirror.example" in part for part in cmd), cmd
        if engine == "uv":
            assert env["UV_DEFAULT_INDEX"] == index and "UV_INDEX_URL" not in env
            assert cmd[cmd.index("--link-mode") + 1] == "copy"  # item 11
        else:
            assert env["PIP_INDEX_URL"] == index
    cmd, env = packages.install_command(
        tmp_path / "venv", "dataops-testgen", InstallOptions(find_links="/wheels"), Settings(index_url=index)
    )
    assert "--no-index" in cmd and TOKEN not in " ".join(cmd)  # --find-links alone: no index at all


def simple_index(httpserver: HTTPServer, wheel: Path, delay: float = 0.0) -> str:
    """A PEP 503 index on 127.0.0.1 that serves `wheel` only with the right basic credentials;
    returns its URL with those credentials in it, as a private mirror's URL is often given."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    expected = "Basic " + base64.b64encode(f"{USER}:{TOKEN}".encode()).decode()

    def handler(request: Request) -> Response:
        if request.headers.get("Authorization") != expected:
            return Response("who are you?", status=401, headers={"WWW-Authenticate": 'Basic realm="mirror"'})
        if request.path.rstrip("/") == "/simple/dataops-testgen":
            time.sleep(delay)  # keeps uv alive long enough for its command line to be seen
            link = f'<a href="/files/{wheel.name}#sha256={digest}">{wheel.name}</a>'
            return Response(f"<html><body>{link}</body></html>", content_type="text/html")
        if request.path == f"/files/{wheel.name}":
            return Response(wheel.read_bytes(), content_type="application/octet-stream")
        return Response("not here", status=404)

    httpserver.expect_request(re.compile(".*")).respond_with_handler(handler)
    return httpserver.url_for("/simple/").replace("http://", f"http://{USER}:{TOKEN}@")


class CommandLines:
    """Every command line of a process of the sandbox, polled from /proc while it runs."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.root = str(sandbox.root)
        self.seen: dict[int, str] = {}
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._done.is_set():
            self.seen.update(processes_mentioning(self.root))
            time.sleep(0.005)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


def assert_nowhere(sandbox: Sandbox, support_zip: Path, *outputs: str) -> None:
    for text in outputs:
        assert TOKEN not in text
    for folder in (sandbox.home, sandbox.config):
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert TOKEN.encode() not in path.read_bytes(), path
    with zipfile.ZipFile(support_zip) as bundle:
        assert bundle.namelist()
        for name in bundle.namelist():
            assert TOKEN.encode() not in bundle.read(name), name


@pytest.mark.parametrize("source", ["--index-url", "--index-url-file", "PIP_INDEX_URL"])
def test_index_credentials_stay_secret(
    sandbox: Sandbox, httpserver: HTTPServer, wheelhouse: Path, tmp_path: Path, source: str
) -> None:
    """An install through a private index whose URL carries a token, given on the command line, in
    a file or in the environment (PIP_INDEX_URL, which uv does not read itself): the token is in no
    child's command line, no log, no output and not in the support zip."""
    index = simple_index(httpserver, wheelhouse / "dataops_testgen-5.1.0-py3-none-any.whl", delay=0.5)
    args = ["install", "--no-demo", "--no-start", "--no-browser"]
    args += ["--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port)]
    env = {}
    if source == "--index-url":
        args += ["--index-url", index]
    elif source == "--index-url-file":
        secret = tmp_path / "index-url"
        secret.write_text(index + "\n")
        secret.chmod(0o600)
        args += ["--index-url-file", str(secret)]
    else:
        env["PIP_INDEX_URL"] = index
    with CommandLines(sandbox) as command_lines:
        process = subprocess.Popen(
            [sys.executable, str(INSTALLER), *args],
            env=sandbox.merged_env(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stdout + stderr
    assert sandbox.state()["product_version"] == "5.1.0"
    children = {pid: line for pid, line in command_lines.seen.items() if pid != process.pid}
    assert any("pip install" in line for line in children.values()), children  # uv was seen
    leaked = [line for line in children.values() if TOKEN in line]
    assert not leaked
    support_zip = tmp_path / "support.zip"
    logs = sandbox.run("logs", "--output", str(support_zip))
    assert logs.returncode == 0, logs.stderr
    assert_nowhere(sandbox, support_zip, stdout, stderr, logs.stdout, logs.stderr)


def test_a_dead_index_with_credentials_is_named_masked(sandbox: Sandbox, tmp_path: Path) -> None:
    dead = f"http://{USER}:{TOKEN}@127.0.0.1:{free_port()}/simple"
    result = sandbox.run(
        "install", "--index-url", dead, "--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port)
    )
    assert result.returncode == 1
    masked = dead.replace(f"{USER}:{TOKEN}", "[REDACTED]")
    assert f"Could not reach the package index {masked}" in result.stderr
    support_zip = tmp_path / "support.zip"
    assert sandbox.run("logs", "--output", str(support_zip)).returncode == 0
    assert_nowhere(sandbox, support_zip, result.stdout, result.stderr)


def test_index_url_file_is_read_and_checked(sandbox: Sandbox, tmp_path: Path) -> None:
    shared = tmp_path / "shared-index-url"
    shared.write_text(f"https://{USER}:{TOKEN}@mirror.example/simple\n")
    shared.chmod(0o644)
    result = sandbox.run("upgrade", "--index-url-file", str(shared))
    assert "other users can read it" in result.stderr and f"chmod 600 {shared}" in result.stderr
    assert TOKEN not in result.stdout + result.stderr
    both = sandbox.run("upgrade", "--index-url", "https://x/simple", "--index-url-file", str(shared))
    assert both.returncode == 2 and "not both" in both.stderr
    missing = sandbox.run("upgrade", "--index-url-file", str(tmp_path / "nothing"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    (tmp_path / "empty").write_text("\n")
    empty = sandbox.run("upgrade", "--index-url-file", str(tmp_path / "empty"))
    assert empty.returncode == 2 and "is empty" in empty.stderr


def inodes(folder: Path) -> dict[tuple[int, int], Path]:
    found = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            stat = path.lstat()
            if not path.is_symlink():
                found[(stat.st_dev, stat.st_ino)] = path
    return found


def test_venvs_share_no_file_with_the_cache_or_each_other(
    sandbox: Sandbox, tmp_path: Path, uv_cache: Path
) -> None:
    """TestGen patches files of its venv in place (tg-patch-streamlit): a file hardlinked from uv's
    cache would change the cache, the venv kept for rollback and any other install using the same
    UV_CACHE_DIR. A shared dependency of both versions (as streamlit is) shows it."""
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    code = {f"shared_dep/part{i}.py": f"VALUE = {i}\n".encode() for i in range(5)}
    build_wheel("shared-dep", "1.0", code, wheels)
    for version in ("5.0.0", "5.1.0"):
        build_fake_wheel(version, wheels, requires=('shared-dep; extra == "standalone"',))
    ports = ["--port", str(sandbox.ui_port), "--api-port", str(sandbox.api_port)]
    install = sandbox.run(
        "install", "--find-links", str(wheels), "--version", "5.0.0", "--no-demo", "--no-start", *ports
    )
    assert install.returncode == 0, install.stdout + install.stderr
    cache = inodes(uv_cache)
    venv = inodes((sandbox.home / "testgen" / "venv").resolve())
    assert any(path.parent.name == "shared_dep" for path in venv.values())
    assert not set(venv) & set(cache), sorted(str(p) for k, p in venv.items() if k in cache)
    assert [p for p in venv.values() if p.lstat().st_nlink > 1] == []
    # An upgrade, held while both venvs exist (after the new one is built, before the swap).
    upgrade = sandbox.popen(
        "upgrade", "--find-links", str(wheels), env={"DK_INSTALLER_FAILPOINT": "check_version"}
    )
    try:
        wait_for_line(upgrade, "failpoint check_version")
        old, new = (inodes(v) for v in sorted((sandbox.home / "testgen" / "venvs").iterdir()))
        assert not set(old) & set(new)
        assert not (set(old) | set(new)) & set(inodes(uv_cache))
        assert [p for p in [*old.values(), *new.values()] if p.lstat().st_nlink > 1] == []
    finally:
        upgrade.terminate()
        upgrade.communicate(timeout=120)
    assert upgrade.returncode == 130
