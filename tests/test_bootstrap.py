"""Section 1, bootstrap: the stdlib-only preamble that builds the installer's runtime venv."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import INSTALLER, ROOT, Sandbox, bare_python

from dk_installer.bootstrap import (
    CA_VARIABLES,
    RUNTIME_RECEIPT,
    RUNTIME_REQUIREMENTS,
    _package_sources,
    _venv_unavailable_hint,
    python_too_old_message,
)

pytestmark = pytest.mark.single_file  # end-to-end: the downloaded file, as users run it


def test_python_too_old_message_names_both_versions() -> None:
    message = python_too_old_message((3, 8, 10), "/usr/bin/python3")
    assert message == "dk-installer needs Python 3.9 or newer; /usr/bin/python3 is Python 3.8.10."
    assert python_too_old_message((3, 9, 0), "x") is None
    assert python_too_old_message((3, 13, 1), "x") is None


def test_missing_venv_support_names_the_apt_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ensurepip", None)
    hint = _venv_unavailable_hint()
    minor = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    assert hint is not None
    assert "sudo apt-get install python3-venv" in hint and f"sudo apt-get install {minor}-venv" in hint
    monkeypatch.delitem(sys.modules, "ensurepip")
    assert _venv_unavailable_hint() is None


def test_package_sources_are_mirrored_for_the_runtime_with_the_index_outside_argv(tmp_path: Path) -> None:
    """pip's command line is readable by every local user: the index (it may carry a token) goes
    in PIP_INDEX_URL, from --index-url, --index-url-file or uv's variables, which pip ignores."""
    index = "https://user:t0ken-secret@mirror/simple"
    argv = ["install", "--index-url", index, "--find-links=/wheels", "--port", "1"]
    assert _package_sources(argv, {}) == (["--find-links", "/wheels"], {"PIP_INDEX_URL": index})
    url_file = tmp_path / "index-url"
    url_file.write_text(index + "\n")
    assert _package_sources(["install", "--index-url-file", str(url_file)], {}) == (
        [],
        {"PIP_INDEX_URL": index},
    )
    assert _package_sources(["status"], {"UV_INDEX_URL": index}) == ([], {"PIP_INDEX_URL": index})
    assert _package_sources(["status"], {}) == ([], {})
    # pip runs in "/", not the user's folder: a relative --find-links is made absolute first.
    assert _package_sources(["install", "--find-links", "w", "--index-url", index], {})[0] == [
        "--find-links",
        os.path.abspath("w"),
    ]
    # --find-links alone: no index at all, whatever the environment names.
    assert _package_sources(["install", "--find-links", "/w"], {"UV_INDEX_URL": index}) == (
        ["--find-links", "/w", "--no-index"],
        {},
    )


def test_first_run_builds_the_runtime_and_later_runs_reuse_it(sandbox: Sandbox) -> None:
    """From the real package index, as a corporate user meets it: no CA variable, and no pip
    config naming a CA bundle (this network inspects TLS with a CA only the system store has)."""
    python = bare_python()
    env = {k: v for k, v in sandbox.env.items() if k != "PIP_FIND_LINKS" and k not in CA_VARIABLES}
    env["PIP_CONFIG_FILE"] = os.devnull
    first = subprocess.run(
        [python, str(INSTALLER), "status"], env=env, capture_output=True, text=True, timeout=600
    )
    assert first.returncode == 0, first.stderr
    assert "not installed" in first.stdout
    assert "Preparing dk-installer's runtime" in first.stderr
    runtime = sandbox.home / "runtime"
    for module in ("click", "requests", "distro", "psutil", "packaging", "pg8000"):
        assert list(runtime.glob(f"lib/python3.9/site-packages/{module}")), module
    assert (runtime / "bin" / "uv").exists()
    # The package, byte-compiled, exactly the build in the single file.
    [package] = runtime.glob("lib/python3.9/site-packages/dk_installer")
    build_id = re.search(r"^BUILD_ID = '([0-9a-f]+)'$", INSTALLER.read_text(), re.M)
    assert build_id and (package / "BUILD").read_text() == build_id.group(1)
    source = (ROOT / "src" / "dk_installer" / "cli.py").read_text()
    assert (package / "cli.py").read_text() == source
    assert list(package.glob("__pycache__/cli.cpython-39.pyc"))  # runs without recompiling
    assert list(package.glob("testgen/__pycache__/app.cpython-39.pyc"))
    # The second run must not touch the network: a dead proxy and index would make pip fail.
    offline = {
        **env,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    started = time.monotonic()
    second = subprocess.run(
        [python, str(INSTALLER), "status"], env=offline, capture_output=True, text=True, timeout=60
    )
    assert second.returncode == 0, second.stderr
    assert "Preparing" not in second.stderr
    assert "not installed" in second.stdout
    assert time.monotonic() - started < 10
    hint = subprocess.run([python, str(INSTALLER), "start"], env=offline, capture_output=True, text=True)
    assert hint.returncode == 1
    assert f"{python} {INSTALLER} install" in hint.stderr  # how the user ran it, not the runtime's copy


def test_runtime_failure_is_clear_and_leaves_nothing(sandbox: Sandbox) -> None:
    python = bare_python()
    env = {k: v for k, v in sandbox.env.items() if not k.startswith("PIP_")}
    env.update(
        PIP_INDEX_URL="http://127.0.0.1:9/simple",
        PIP_NO_INDEX="",
        PIP_CONFIG_FILE=os.devnull,
        PIP_RETRIES="0",
        PIP_TIMEOUT="2",
    )
    result = subprocess.run(
        [python, str(INSTALLER), "status"], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 1
    assert "Could not prepare dk-installer's runtime" in result.stderr
    assert "--index-url" in result.stderr and "HTTPS_PROXY" in result.stderr
    assert not (sandbox.home / "runtime").exists()
    assert not (sandbox.home / "runtime.staging").exists()


@pytest.mark.parametrize("version", ["3.7", "3.8"])
def test_too_old_interpreter_gets_one_line(sandbox: Sandbox, version: str) -> None:
    found = sorted(Path("/root/.pyenv/versions").glob(f"{version}.*/bin/python{version}"))
    if not found:
        pytest.skip(f"no Python {version} here (the message itself is unit-tested above)")
    result = subprocess.run(
        [str(found[0]), str(INSTALLER), "install"],
        env=sandbox.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert (
        lines[0].startswith("dk-installer needs Python 3.9 or newer;") and f"is Python {version}." in lines[0]
    )
    assert not sandbox.home.exists()


@pytest.fixture(scope="session")
def runtime_wheels(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    """Every wheel an offline `install --find-links DIR` needs: the runtime's (for Python 3.9)
    and the stand-in TestGen's."""
    directory = tmp_path_factory.mktemp("runtime-wheels")
    requirements = list(RUNTIME_REQUIREMENTS)  # pip evaluates the markers for Python 3.9
    subprocess.run(
        [
            bare_python(),
            "-m",
            "pip",
            "download",
            "-q",
            "--only-binary=:all:",
            "-d",
            str(directory),
            *requirements,
        ],
        check=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"},
    )
    for wheel in wheelhouse.iterdir():
        shutil.copy(wheel, directory)
    return directory


def test_runtime_follows_its_pins_offline_and_a_failed_rebuild_keeps_it(
    sandbox: Sandbox, runtime_wheels: Path
) -> None:
    python = bare_python()
    offline = {
        **{k: v for k, v in sandbox.env.items() if not k.startswith("PIP_")},
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
        "HTTPS_PROXY": "http://127.0.0.1:9",
    }
    install = [python, str(INSTALLER), *sandbox.install_args("--no-demo", "--no-start")]
    install[install.index("--find-links") + 1] = str(runtime_wheels)
    first = subprocess.run(install, env=offline, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stdout + first.stderr
    runtime = sandbox.home / "runtime"
    receipt = runtime / RUNTIME_RECEIPT
    assert receipt.read_text().splitlines() == list(RUNTIME_REQUIREMENTS)

    # A runtime built by an older installer: other pins, and psutil missing.
    subprocess.run([str(runtime / "bin/python"), "-m", "pip", "uninstall", "-q", "-y", "psutil"], check=True)
    receipt.write_text("click==8.1.8\nrequests==2.32.4\ndistro==1.9.0\nuv==0.13.9\n")
    rebuilt = subprocess.run(install, env=offline, capture_output=True, text=True, timeout=600)
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert "Preparing dk-installer's runtime (its pinned packages changed)" in rebuilt.stderr
    assert receipt.read_text().splitlines() == list(RUNTIME_REQUIREMENTS)
    assert list(runtime.glob("lib/python3.9/site-packages/psutil"))
    assert not (sandbox.home / "runtime.staging").exists() and not (sandbox.home / "runtime.old").exists()

    # New pins that cannot be had offline: the command fails and the runtime is left as it was.
    receipt.write_text("click==0.0.1\n")
    empty = sandbox.root / "no-wheels"
    empty.mkdir()
    install[install.index("--find-links") + 1] = str(empty)
    failed = subprocess.run(install, env=offline, capture_output=True, text=True, timeout=600)
    assert failed.returncode == 1
    assert "Could not prepare dk-installer's runtime" in failed.stderr
    assert f"The previous runtime in {runtime} is kept." in failed.stderr
    assert receipt.read_text() == "click==0.0.1\n"
    assert list(runtime.glob("lib/python3.9/site-packages/psutil"))
    assert not (sandbox.home / "runtime.staging").exists() and not (sandbox.home / "runtime.old").exists()


def test_unusable_home_on_a_first_run_is_a_requirement_failure(sandbox: Sandbox) -> None:
    blocker = sandbox.root / "a-file"
    blocker.write_text("")
    env = {**sandbox.env, "DK_INSTALLER_HOME": str(blocker / "dk-home")}
    result = subprocess.run(
        [bare_python(), str(INSTALLER), "install"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert f"Installer home writable: {blocker / 'dk-home'} cannot be created or written" in result.stderr
    assert "Set DK_INSTALLER_HOME" in result.stderr


def test_a_home_path_postgresql_cannot_take_is_refused_on_a_first_run_writing_nothing(
    sandbox: Sandbox,
) -> None:
    """Issue 15 item 8, on a first run: the runtime would be built inside the home, so the bootstrap
    refuses the path before making any folder."""
    parent = sandbox.root / "my hömé"
    env = {**sandbox.env, "DK_INSTALLER_HOME": str(parent / "dk")}
    result = subprocess.run(
        [bare_python(), str(INSTALLER), "install"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 3, result.stderr
    assert f"Installer home path: '{parent / 'dk'}' has a space and non-ASCII characters" in result.stderr
    assert f"DK_INSTALLER_HOME={sandbox.root}/dk-installer" in result.stderr
    assert "Preparing" not in result.stderr
    assert not parent.exists()


def test_two_first_runs_at_once_build_the_runtime_once_and_both_succeed(sandbox: Sandbox) -> None:
    """Issue 15 item 13: two first runs raced on runtime.staging (one failed with a missing file
    and a proxy hint). The second now waits for the first's build, then uses it. Under `umask 000`
    too: the runtime they build is writable by nobody else (item 6)."""
    python = bare_python()
    env = {k: v for k, v in sandbox.env.items() if k != "PIP_FIND_LINKS" and k not in CA_VARIABLES}
    env["PIP_CONFIG_FILE"] = os.devnull
    runs = [
        subprocess.Popen(
            [python, str(INSTALLER), "status"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            umask=0,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=600) for run in runs]
    for run, (stdout, stderr) in zip(runs, outputs):
        assert run.returncode == 0, stderr
        assert "not installed" in stdout
    [built] = [stderr for _, stderr in outputs if "Preparing dk-installer's runtime" in stderr]
    [other] = [stderr for _, stderr in outputs if stderr != built]
    assert "Waiting for another dk-installer run" in other
    assert (sandbox.home / "runtime" / RUNTIME_RECEIPT).exists()
    assert not (sandbox.home / "runtime.staging").exists() and not (sandbox.home / "runtime.old").exists()
    assert not list(sandbox.home.glob("runtime/lib/python3.9/site-packages/dk_installer.*"))
    writable = []
    for folder, dirs, files in os.walk(sandbox.home):
        for path in [folder] + [os.path.join(folder, name) for name in dirs + files]:
            info = os.lstat(path)
            if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022:
                writable.append(path)
    assert writable == []
